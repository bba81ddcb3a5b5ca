#!/usr/bin/env bash
# Step 3: one release of the system, VERSION: the squashfs root (with IMAGE_VERSION stamped into
# os-release), its dm-verity hash tree, a unified kernel image (systemd-stub + kernel + initrd +
# cmdline carrying the verity root hash + os-release) signed for secure boot, the predicted
# TPM PCR 11 for that UKI (systemd-measure), and a signed update bundle of all of it.
# EXTRA_CMDLINE is appended to the kernel command line (tests only).
# Output: OUT/VERSION/{root.img,root.verity,roothash,uki.efi,uki.unsigned.efi,pcr11.json,manifest.json,
#         sbom.tsv,dosegate-VERSION.bundle}
source "$(dirname "$0")/common.sh"
need mksquashfs veritysetup objcopy sbsign openssl /usr/lib/systemd/systemd-measure tar
T=$OUT/tree; B=$OUT/boot; K=$OUT/keys
[ -d "$T" ] || die "no tree (run 20-tree.sh)"
rm -rf "$REL"; mkdir -p "$REL"

# --- root file system: os-release names this release
sed -i '/^IMAGE_ID=/d; /^IMAGE_VERSION=/d' "$T/usr/lib/os-release"
printf 'IMAGE_ID=dosegate\nIMAGE_VERSION=%s\n' "$VERSION" >> "$T/usr/lib/os-release"
cp "$T/usr/lib/os-release" "$REL/os-release"
cp "$OUT/sbom.tsv" "$REL/sbom.tsv"
# Clamp every file date to SOURCE_DATE_EPOCH (the chroot steps leave today's dates behind).
find "$T" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
log "release $VERSION: squashfs"
mksquashfs "$T" "$REL/root.img" -comp zstd -Xcompression-level 15 -noappend -quiet -no-progress \
    -all-root -xattrs >/dev/null
# Fixed salt and UUID: the same tree gives the same root hash (reproducible builds).
salt=$(printf '%s' "dosegate-$VERSION" | sha256sum | cut -c1-64)
veritysetup format --salt="$salt" --uuid=00000000-0000-4000-8000-000000000000 \
    --root-hash-file="$REL/roothash" "$REL/root.img" "$REL/root.verity" >/dev/null
RH=$(cat "$REL/roothash")

# --- UKI (systemd 252 has no ukify: objcopy onto systemd-stub), signed
printf 'roothash=%s ro console=ttyS0,115200 systemd.verity_root_options=panic-on-corruption lockdown=integrity module.sig_enforce=1 quiet loglevel=4 systemd.show_status=error%s' \
    "$RH" "${EXTRA_CMDLINE:+ $EXTRA_CMDLINE}" > "$REL/cmdline"
STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
objcopy \
  --add-section .osrel="$REL/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$REL/cmdline"  --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$B/vmlinuz"      --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$B/initrd.img"  --change-section-vma .initrd=0x3000000 \
  "$STUB" "$REL/uki.unsigned.efi"
# objcopy stamps the PE header with the current time: set it to SOURCE_DATE_EPOCH (and clear the
# checksum computed over it), so the
# unsigned UKI is reproducible (sbsign's signature then adds its own signing time).
python3 - "$REL/uki.unsigned.efi" "$SOURCE_DATE_EPOCH" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0x3C); pe = struct.unpack("<I", f.read(4))[0]
    f.seek(pe); assert f.read(4) == b"PE\0\0", "not a PE image"
    f.seek(pe + 8); f.write(struct.pack("<I", int(sys.argv[2])))
    f.seek(pe + 24 + 64); f.write(b"\0\0\0\0")  # checksum (covered the old time; EFI ignores it)
PY
sbsign --key "$K/db.key" --cert "$K/db.crt" --output "$REL/uki.efi" "$REL/uki.unsigned.efi" 2>/dev/null
sbsign --key "$K/foreign-db.key" --cert "$K/foreign-db.crt" --output "$REL/uki.foreign.efi" "$REL/uki.unsigned.efi" 2>/dev/null

# --- measured boot: PCR 11 as the stub and systemd-pcrphase will leave it once the system is up
/usr/lib/systemd/systemd-measure calculate --json=short --bank=sha256 \
    --linux="$B/vmlinuz" --initrd="$B/initrd.img" --cmdline="$REL/cmdline" --osrel="$REL/os-release" \
    --phase=enter-initrd:leave-initrd:sysinit:ready > "$REL/pcr11.json"

# --- update bundle: a signed manifest over root, verity and UKI (tar, no compression: the
# squashfs is already compressed)
sha() { sha256sum "$1" | cut -d' ' -f1; }
# PCR 11 as one hex string: the first sha256 "hash" of systemd-measure's JSON (one phase path).
PCR11=$(python3 -c 'import json,sys
def walk(v):
    if isinstance(v, dict):
        if "hash" in v: yield v["hash"]
        for x in v.values(): yield from walk(x)
    elif isinstance(v, list):
        for x in v: yield from walk(x)
print(next(walk(json.load(open(sys.argv[1])))).lower())' "$REL/pcr11.json")
cat > "$REL/manifest.json" <<JSON
{"format":"dosegate-bundle-1","version":"$VERSION","roothash":"$RH","pcr11":"$PCR11",
 "files":{"root.img":{"sha256":"$(sha "$REL/root.img")","size":$(stat -c %s "$REL/root.img")},
          "root.verity":{"sha256":"$(sha "$REL/root.verity")","size":$(stat -c %s "$REL/root.verity")},
          "uki.efi":{"sha256":"$(sha "$REL/uki.efi")","size":$(stat -c %s "$REL/uki.efi")}}}
JSON
openssl dgst -sha256 -sign "$K/bundle.key" -out "$REL/manifest.sig" "$REL/manifest.json"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -C "$REL" \
    -cf "$REL/dosegate-$VERSION.bundle" manifest.json manifest.sig root.img root.verity uki.efi
log "release $VERSION: root $(( $(stat -c %s "$REL/root.img") / 1048576 )) MB, uki $(( $(stat -c %s "$REL/uki.efi") / 1048576 )) MB, roothash ${RH:0:16}…"
