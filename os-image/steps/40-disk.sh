#!/usr/bin/env bash
# Step 4: the disk image of release VERSION, as flashed onto a box: a GPT with
#   1 ESP (FAT, 128 MiB): signed systemd-boot, the release's signed UKI with boot counting (+3)
#   2 root A (squashfs) + 3 verity A  — partition UUIDs are the two halves of the root hash, so
#     systemd finds both from roothash= alone
#   4 root B + 5 verity B — empty, for the next update
#   6 state (/var, ext4 made on first boot)
# plus an OVMF variable store with our PK/KEK/db enrolled and secure boot on (for QEMU).
# No loop devices, no mounts: mtools writes the FAT, sfdisk the GPT, dd the partitions.
# Output: OUT/VERSION/dosegate-VERSION.raw, OUT/ovmf-vars.fd, OUT/VERSION/layout.env
source "$(dirname "$0")/common.sh"
need sfdisk mkfs.vfat mmd mcopy sbsign dd
K=$OUT/keys
[ -f "$REL/uki.efi" ] || die "no release $VERSION (run 30-release.sh)"
RH=$(cat "$REL/roothash")
uuid() { echo "${1:0:8}-${1:8:4}-${1:12:4}-${1:16:4}-${1:20:12}"; }

# --- ESP
sbsign --key "$K/db.key" --cert "$K/db.crt" --output "$OUT/systemd-bootx64.efi" \
    /usr/lib/systemd/boot/efi/systemd-bootx64.efi 2>/dev/null
ESP_MB=128
esp=$REL/esp.img; rm -f "$esp"
mkfs.vfat -n ESP -i 0d05e6a7 -C "$esp" $((ESP_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/EFI/Linux ::/loader
mcopy -i "$esp" "$OUT/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$OUT/systemd-bootx64.efi" ::/EFI/systemd/systemd-bootx64.efi
mcopy -i "$esp" "$REL/uki.efi" "::/EFI/Linux/dosegate_${VERSION}+3.efi"
printf 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n' > "$REL/loader.conf"
mcopy -i "$esp" "$REL/loader.conf" ::/loader/loader.conf

# --- GPT: slots sized for 1.5x today's root, so updates have room to grow
ROOT_MB=$(( $(stat -c %s "$REL/root.img") / 1048576 + 1 ))
SLOT_MB=${SLOT_MB:-$(( ROOT_MB * 3 / 2 + 8 ))}
VER_MB=$(( SLOT_MB / 64 + 2 ))
# /var holds a dropped update bundle (~105 MB) next to the ledger.
STATE_MB=${STATE_MB:-384}
DISK=$REL/dosegate-$VERSION.raw; rm -f "$DISK"
truncate -s $(( 1 + ESP_MB + 2 * SLOT_MB + 2 * VER_MB + STATE_MB + 1 ))M "$DISK"
ROOT_T=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709; VERITY_T=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5
sfdisk -q --no-reread --no-tell-kernel "$DISK" <<SF
label: gpt
label-id: 8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E0001
unit: sectors
size=${ESP_MB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E00E5, name="ESP"
size=${SLOT_MB}MiB, type=$ROOT_T, uuid=$(uuid "${RH:0:32}"), name="dosegate_$VERSION"
size=${VER_MB}MiB, type=$VERITY_T, uuid=$(uuid "${RH:32:32}"), name="dosegate_${VERSION}_verity"
size=${SLOT_MB}MiB, type=$ROOT_T, uuid=8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E00B2, name="_empty"
size=${VER_MB}MiB, type=$VERITY_T, uuid=8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E00B3, name="_empty"
size=${STATE_MB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E0005, name="dosegate-state"
SF
start() { sfdisk --dump "$DISK" | awk -v n="$DISK$1 " 'index($0, n) == 1 { sub(/.*start= */, ""); sub(/,.*/, ""); print }'; }
put() { dd if="$2" of="$DISK" bs=512 seek="$(start "$1")" conv=notrunc,sparse status=none; }
put 1 "$esp"; put 2 "$REL/root.img"; put 3 "$REL/root.verity"
{
    for n in 1 2 3 4 5 6; do echo "PART${n}_START=$(start "$n")"; done
    echo "ROOTHASH=$RH"
} > "$REL/layout.env"

# --- OVMF variables: our own PK/KEK/db, secure boot on, no Microsoft keys
if [ ! -s "$OUT/ovmf-vars.fd" ] || [ "$K/db.crt" -nt "$OUT/ovmf-vars.fd" ]; then
    VFV=${VIRT_FW_VARS:-$REPO_DIR/.venv-image/bin/virt-fw-vars}
    [ -x "$VFV" ] || die "no virt-fw-vars (run scripts/setup-deps.sh)"
    G=$(cat "$K/owner.guid")
    "$VFV" --input /usr/share/OVMF/OVMF_VARS_4M.fd --output "$OUT/ovmf-vars.fd" \
        --set-pk "$G" "$K/PK.crt" --add-kek "$G" "$K/KEK.crt" --add-db "$G" "$K/db.crt" \
        --secure-boot --no-microsoft >/dev/null 2>&1 || die "virt-fw-vars failed"
fi
log "disk $VERSION: $(( $(stat -c %s "$DISK") / 1048576 )) MiB apparent, $(( $(du -B1 "$DISK" | cut -f1) / 1048576 )) MiB used"
