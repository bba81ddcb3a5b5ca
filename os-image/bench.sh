#!/usr/bin/env bash
# Measures the appliance image for BENCHMARKS.md: build time (of the last `make image`), disk and
# bundle sizes, the time `dosegate update` takes to install a bundle, boot time to dosegate.service active under TCG with its firmware/loader/kernel/
# initrd/userspace split, guest and QEMU memory, and the Lynis hardening index of the root tree.
#   os-image/bench.sh            (after `make image`; needs root for the Lynis chroot)
# Set BENCH_BOOT=0 to skip the boot, BENCH_LYNIS=0 to skip Lynis, BENCH_UPDATE=0 to skip the
# update install timing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/image}
REL=$OUT/current
[ -d "$REL" ] || { echo "no image: run make image" >&2; exit 1; }
V=$(sed -n 's/^IMAGE_VERSION=//p' "$REL/os-release")
echo "== image $V on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "build: $(cat "$OUT/build-time.json" 2>/dev/null)"
disk=$REL/dosegate-$V.raw
printf 'disk: apparent %d MiB, allocated %d MiB, zstd -19 %d MiB\n' \
    $(( $(stat -c %s "$disk") / 1048576 )) $(( $(du -B1 "$disk" | cut -f1) / 1048576 )) \
    $(( $(zstd -19 -T2 -q -c "$disk" | wc -c) / 1048576 ))
printf 'bundle: %d MiB (root %d MiB, verity %d KiB, uki %d MiB)\n' \
    $(( $(stat -c %s "$REL/dosegate-$V.bundle") / 1048576 )) $(( $(stat -c %s "$REL/root.img") / 1048576 )) \
    $(( $(stat -c %s "$REL/root.verity") / 1024 )) $(( $(stat -c %s "$REL/uki.efi") / 1048576 ))
# dosegate update installing the next release's bundle into slot B of a scratch copy of the disk
# (offline, the same code the box runs), best of 3, beside its floor: sha256sum of the bundle plus
# dd of root and verity into the same copy (no verification logic, no GPT, no ESP).
if [ "${BENCH_UPDATE:-1}" = 1 ]; then
    W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
    NB=$(ls "$OUT"/"$V".1/dosegate-"$V".1.bundle)
    printf 'roothash=%s\n' "$(cat "$REL/roothash")" > "$W/cmdline"
    best() { sort -n | head -n 1; }
    upd=$(for _ in 1 2 3; do
        cp --sparse=always "$disk" "$W/disk.raw"; rm -rf "$W/esp"; mkdir -p "$W/esp/EFI/Linux"; sync
        s=$(date +%s.%N)
        target/release/dosegate update --bundle "$NB" --key "$OUT/keys/bundle.pub.pem" --disk "$W/disk.raw" \
            --esp "$W/esp" --cmdline "$W/cmdline" --os-release "$REL/os-release" --tries 3 >/dev/null 2>&1
        echo "$(date +%s.%N) - $s" | bc
    done | best)
    floor=$(for _ in 1 2 3; do
        cp --sparse=always "$disk" "$W/disk.raw"; sync
        s=$(date +%s.%N)
        sha256sum "$NB" >/dev/null
        dd if="$OUT/$V.1/root.img" of="$W/disk.raw" bs=1M seek=$(( $(sed -n 's/^PART4_START=//p' "$REL/layout.env") * 512 )) oflag=seek_bytes conv=notrunc,fsync status=none
        dd if="$OUT/$V.1/root.verity" of="$W/disk.raw" bs=1M seek=$(( $(sed -n 's/^PART5_START=//p' "$REL/layout.env") * 512 )) oflag=seek_bytes conv=notrunc,fsync status=none
        echo "$(date +%s.%N) - $s" | bc
    done | best)
    printf 'update: dosegate update %.2fs, floor (sha256sum + dd) %.2fs, ratio %.2f (best of 3, %d MiB bundle)\n' \
        "$upd" "$floor" "$(echo "$upd / $floor" | bc -l)" $(( $(stat -c %s "$NB") / 1048576 ))
fi
if [ "${BENCH_BOOT:-1}" = 1 ]; then
    DOSEGATE_REQUIRE_REAL=1 cargo nextest run -p dosegate-qemu-tests --features real-qemu --release --locked \
        --no-capture -E 'test(image_boots_to_a_healthy_locked_down_gateway)' 2>&1 \
        | grep -E '^bench:|"mem"|"boot"|"uptime"' || true
fi
if [ "${BENCH_LYNIS:-1}" = 1 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "lynis: needs root (chroot)" >&2; exit 1; }
    L=$OUT/lynis-tree
    rm -rf "$L"; cp -a "$OUT/tree" "$L"
    mkdir -p "$L/usr/share/lynis" "$L/etc/lynis"
    cp -a /usr/share/lynis/. "$L/usr/share/lynis/"; cp -a /etc/lynis/. "$L/etc/lynis/"; cp /usr/sbin/lynis "$L/usr/sbin/lynis"
    # The box's mount layout, so Lynis judges what runs: /proc with hidepid, /tmp a tmpfs, /var its
    # own file system, all nosuid,nodev,noexec (as in the image's /etc/fstab).
    mount -t proc -o nosuid,nodev,noexec,hidepid=invisible proc "$L/proc"
    for d in sys dev; do mount --bind "/$d" "$L/$d"; done
    mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 tmpfs "$L/tmp"
    mount --bind "$L/var" "$L/var" && mount -o remount,bind,nosuid,nodev,noexec "$L/var"
    trap 'for d in var tmp dev sys proc; do umount -l "$L/$d" 2>/dev/null || true; done; rm -rf "$L"' EXIT
    start=$(date +%s)
    chroot "$L" /usr/sbin/lynis audit system --quick --no-colors --quiet \
        --logfile /tmp/lynis.log --report-file /tmp/lynis-report.dat >/dev/null 2>&1 || true
    cp "$L/tmp/lynis-report.dat" "$L/tmp/lynis.log" "$OUT/"
    idx=$(sed -n 's/^hardening_index=//p' "$OUT/lynis-report.dat")
    tests=$(sed -n 's/^lynis_tests_done=//p' "$OUT/lynis-report.dat")
    echo "lynis: hardening index ${idx:-?} (${tests:-?} tests, $(( $(date +%s) - start ))s)"
    grep -E '^suggestion\[\]=' "$OUT/lynis-report.dat" | cut -d'|' -f1,2 | sed 's/^suggestion\[\]=/  suggestion: /' | head -n 40
fi
