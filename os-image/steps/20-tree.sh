#!/usr/bin/env bash
# Step 2: the sealed tree. Copies OUT/rootfs, adds the gateway (binary, units, bundle key) and
# the overlay, configures systemd (no getty, root locked, firewall, networkd), builds a trimmed
# initrd with dracut in the chroot, then removes what the running box does not need: build-only
# packages, /boot, package caches, kernel modules outside an allowlist, SUID/SGID bits.
# Output: OUT/tree, OUT/boot/{vmlinuz,initrd.img}, OUT/sbom.tsv
source "$(dirname "$0")/common.sh"
need chroot zstd openssl
BIN=${DOSEGATE_BIN:-$REPO_DIR/target/release/dosegate}
[ -x "$BIN" ] || die "no gateway binary at $BIN (cargo build --release -p dosegate --locked)"
T=$OUT/tree
rm -rf "$T" "$OUT/boot"; mkdir -p "$OUT/boot"
cp -a "$ROOTFS" "$T"; rm -f "$T/.dosegate-stamp"
KVER=$(ls "$T/usr/lib/modules" | head -n 1)

# --- the gateway and the overlay
cp -a "$IMAGE_DIR/overlay/." "$T/"
chmod 700 "$T/etc/credstore"; chmod 600 "$T/etc/credstore/"* "$T/etc/usbguard/rules.conf"
install -m 755 "$BIN" "$T/usr/bin/dosegate"
install -m 644 "$REPO_DIR/gateway/dosegate.service" "$T/usr/lib/systemd/system/dosegate.service"
# The public half of the bundle key: `dosegate update` accepts only bundles it signed. It lives
# in the verity-protected root, so it cannot be swapped without breaking the root hash.
install -d -m 755 "$T/usr/share/dosegate"
openssl x509 -in "$OUT/keys/bundle.crt" -pubkey -noout > "$T/usr/share/dosegate/update-key.pem"
chmod 644 "$T/usr/share/dosegate/update-key.pem"
mkdir -p "$T/usr/share/doc/dosegate"
printf 'DoseGate appliance. Source and docs: docs/os-image.md in the DoseGate repository.\n' > "$T/usr/share/doc/dosegate/README"

# --- configure inside the chroot (bind mounts of the host's pseudo file systems only)
for d in proc sys dev; do mount --bind "/$d" "$T/$d"; done
trap 'for d in dev sys proc; do umount -l "$T/$d" 2>/dev/null || true; done' EXIT
chroot "$T" /bin/sh -ec '
  systemctl enable -q nftables.service systemd-networkd.service dosegate.service dosegate-health.service dosegate-update.path dosegate-test-report.service dosegate-test-update.service
  systemctl mask -q getty@.service serial-getty@.service console-getty.service container-getty@.service \
      getty.target systemd-networkd-wait-online.service debug-shell.service rescue.service emergency.service \
      apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service
  passwd -q -l root
  usermod -s /usr/sbin/nologin root
  sed -i -e "s/^UMASK.*/UMASK\t\t027/" -e "s/^PASS_MAX_DAYS.*/PASS_MAX_DAYS\t90/" -e "s/^PASS_MIN_DAYS.*/PASS_MIN_DAYS\t1/" /etc/login.defs
  printf "SHA_CRYPT_MIN_ROUNDS 65536\nSHA_CRYPT_MAX_ROUNDS 65536\n" >> /etc/login.defs
'
log "tree: dracut (kernel $KVER)"
chroot "$T" dracut --quiet --force --reproducible --no-hostonly --no-hostonly-cmdline --kver "$KVER" \
  --modules "systemd systemd-initrd systemd-veritysetup systemd-pcrphase dracut-systemd base rootfs-block kernel-modules udev-rules fs-lib dm" \
  --omit "plymouth resume crypt lvm mdraid multipath nss-softokn i18n" \
  --drivers "dm-verity squashfs ext4 vfat virtio_blk virtio_pci virtio_scsi ahci nvme sd_mod" \
  --filesystems "squashfs ext4 vfat" --no-compress --no-early-microcode /tmp/initrd.img
zstd -q -19 -T2 --rm "$T/tmp/initrd.img" -o "$OUT/boot/initrd.img"
for d in dev sys proc; do umount -l "$T/$d"; done; trap - EXIT
cp "$T/boot/vmlinuz-$KVER" "$OUT/boot/vmlinuz"

# --- slim: build-only packages, boot files, caches, modules outside the allowlist, SUID bits
chroot "$T" dpkg --purge --force-depends dracut-core dracut-install usrmerge perl perl-modules-5.36 libperl5.36 \
    libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl cpio initramfs-tools initramfs-tools-core klibc-utils libklibc busybox >/dev/null 2>&1 || true
# --- SBOM: the exact Debian packages left in the image (after the purge above)
chroot "$T" dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\t${source:Package}\n' \
    | LC_ALL=C sort > "$OUT/sbom.tsv"
rm -rf "$T"/boot/* "$T"/var/cache/* "$T"/var/lib/apt/lists/* "$T"/var/log/* "$T"/usr/share/bug \
       "$T"/usr/share/zsh "$T"/usr/share/lintian "$T"/tmp/* "$T"/etc/apt/apt.conf.d/99mmdebstrap
M=$T/usr/lib/modules/$KVER/kernel
keep='^(arch|crypto|lib|fs/(ext4|jbd2|mbcache.ko|squashfs|fat|nls|autofs)|net/(ipv4|ipv6|netfilter|core|packet|unix|802|llc|sched)|drivers/(char/tpm|tty|usb/(serial|host|core|common)|net/(virtio_net.ko|net_failover.ko|ethernet/intel|ethernet/realtek|usb|phy|mii.ko|mdio)|virtio|block|md|scsi/(sd_mod.ko|scsi_mod.ko|virtio_scsi.ko)|ata|nvme|pci|acpi|firmware|hid/(hid.ko|hid-generic.ko|usbhid)|i2c|input/(evdev.ko|serio)|platform|rtc|leds|hwmon/(coretemp.ko)|mfd|base|crypto|ptp|pps|clk|dma|gpio|iommu|nvmem|regulator|watchdog|cdrom))'
( cd "$M" && find . -name '*.ko*' | sed 's#^\./##' | grep -v -E "$keep" | xargs -r rm -f )
find "$M" -type d -empty -delete
chroot "$T" depmod "$KVER"
find "$T" -xdev -type f -perm /6000 -exec chmod ug-s {} +
: > "$T/etc/machine-id"
mkdir -p "$T/efi"
cat > "$T/etc/fstab" <<'FSTAB'
# The root is the verity device (read-only); state lives on its own partition.
PARTLABEL=dosegate-state /var ext4 defaults,x-systemd.makefs,x-systemd.growfs,nosuid,nodev,noexec 0 2
tmpfs /tmp tmpfs mode=1777,nosuid,nodev,noexec,size=64m 0 0
proc /proc proc defaults,nosuid,nodev,noexec,hidepid=invisible 0 0
FSTAB
log "tree: done ($(du -sm "$T" | cut -f1) MB, initrd $(( $(stat -c %s "$OUT/boot/initrd.img") / 1048576 )) MB, $(wc -l < "$OUT/sbom.tsv") packages)"
