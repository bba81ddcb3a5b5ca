#!/usr/bin/env bash
# Installs a signed update bundle into the inactive slot of a DoseGate disk image, offline:
#   os-image/install-update.sh DISK BUNDLE [TRIES]        (TRIES: boot attempts, default 3)
# It does what the gateway's updater does on a running box, on an image file:
#   1. verifies the manifest's signature (bundle certificate: BUNDLE_CERT, default the build's
#      keys/bundle.crt) and every file's size and SHA-256 against the manifest;
#   2. picks the inactive slot (the root/verity pair named "_empty", else the pair that is not
#      the newest installed) and checks the files fit;
#   3. writes root and verity there and names the partitions by the new root hash (UUIDs = its
#      halves, as systemd's verity discovery expects);
#   4. copies the UKI into the ESP as dosegate_<version>+<TRIES>.efi, so sd-boot boots it with
#      TRIES attempts and falls back to the previous blessed entry if the health check never
#      passes.
# Exit codes: 0 installed; 2 usage; 3 bad signature or digest [bundle-invalid]; 4 disk layout
# [disk-layout]; 5 does not fit [too-large].
set -euo pipefail
usage() { echo "usage: $0 DISK BUNDLE [TRIES]" >&2; exit 2; }
[ $# -ge 2 ] || usage
DISK=$1; BUNDLE=$2; TRIES=${3:-3}
[[ $TRIES =~ ^[1-9]$ ]] || { echo "TRIES must be 1..9" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
CERT=${BUNDLE_CERT:-$here/../build/image/keys/bundle.crt}
fail() { echo "install-update: [$1] $2" >&2; exit "$3"; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
tar -C "$W" -xf "$BUNDLE" manifest.json manifest.sig root.img root.verity uki.efi 2>/dev/null \
    || fail bundle-invalid "not a bundle (manifest.json, manifest.sig, root.img, root.verity, uki.efi)" 3
openssl x509 -in "$CERT" -pubkey -noout > "$W/bundle.pub"
openssl dgst -sha256 -verify "$W/bundle.pub" -signature "$W/manifest.sig" "$W/manifest.json" >/dev/null 2>&1 \
    || fail bundle-invalid "manifest signature does not verify against $(basename "$CERT")" 3
read -r version roothash < <(python3 - "$W" <<'PY'
import hashlib, json, os, re, sys
w = sys.argv[1]
m = json.load(open(os.path.join(w, "manifest.json")))
if m.get("format") != "dosegate-bundle-1": sys.exit("unknown bundle format")
if not re.fullmatch(r"[0-9A-Za-z.]{1,32}", m["version"]): sys.exit("bad version")
if not re.fullmatch(r"[0-9a-f]{64}", m["roothash"]): sys.exit("bad roothash")
for name, want in m["files"].items():
    p = os.path.join(w, name)
    if os.path.getsize(p) != want["size"]: sys.exit(f"{name}: size {os.path.getsize(p)} != {want['size']}")
    h = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if h != want["sha256"]: sys.exit(f"{name}: sha256 {h} != {want['sha256']}")
print(m["version"], m["roothash"])
PY
) || fail bundle-invalid "manifest content or file digests do not match" 3

dump=$(sfdisk --dump "$DISK") || fail disk-layout "cannot read the partition table" 4
field() { # partition-number key
    echo "$dump" | awk -v n="$DISK$1 " -v k="$2" 'index($0, n) == 1 {
        if (match($0, k "= *[^,]*")) { v = substr($0, RSTART, RLENGTH); sub(/^[^=]*= */, "", v); gsub(/"/, "", v); print v } }'
}
slot=
for p in 2 4; do [ "$(field $p name)" = _empty ] && { slot=$p; break; }; done
if [ -z "$slot" ]; then
    # both used: replace the older one (lower version in its name)
    a=$(field 2 name); b=$(field 4 name)
    slot=$( [ "$(printf '%s\n%s\n' "$a" "$b" | sort -V | head -n 1)" = "$a" ] && echo 2 || echo 4 )
fi
vslot=$((slot + 1))
[ "$(field $slot type)" = 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 ] || fail disk-layout "partition $slot is not a root partition" 4
fits() { [ "$(stat -c %s "$1")" -le $(( $(field "$2" size) * 512 )) ]; }
fits "$W/root.img" $slot || fail too-large "root.img does not fit partition $slot" 5
fits "$W/root.verity" $vslot || fail too-large "root.verity does not fit partition $vslot" 5
dd if="$W/root.img" of="$DISK" bs=512 seek="$(field $slot start)" conv=notrunc status=none
dd if="$W/root.verity" of="$DISK" bs=512 seek="$(field $vslot start)" conv=notrunc status=none
uuid() { echo "${1:0:8}-${1:8:4}-${1:12:4}-${1:16:4}-${1:20:12}"; }
sfdisk -q --no-reread --no-tell-kernel --part-uuid "$DISK" $slot "$(uuid "${roothash:0:32}")"
sfdisk -q --no-reread --no-tell-kernel --part-uuid "$DISK" $vslot "$(uuid "${roothash:32:32}")"
sfdisk -q --no-reread --no-tell-kernel --part-label "$DISK" $slot "dosegate_$version"
sfdisk -q --no-reread --no-tell-kernel --part-label "$DISK" $vslot "dosegate_${version}_verity"
export MTOOLS_SKIP_CHECK=1
esp="$DISK@@$(( $(field 1 start) * 512 ))"
mcopy -o -i "$esp" "$W/uki.efi" "::/EFI/Linux/dosegate_${version}+${TRIES}.efi"
echo "install-update: $version written to slot $([ $slot = 2 ] && echo A || echo B) (partitions $slot/$vslot), UKI dosegate_${version}+${TRIES}.efi"
