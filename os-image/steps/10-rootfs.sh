#!/usr/bin/env bash
# Step 1: the root file system tree, from Debian packages only (mmdebstrap, no recommends).
# bookworm, bookworm-updates and bookworm-security. Downloaded .debs are cached in OUT/debcache; the tree is reused while packages.txt and this
# script are unchanged (delete OUT/rootfs to force).
# Output: OUT/rootfs (a directory; no loop devices, no image mounts).
source "$(dirname "$0")/common.sh"
need mmdebstrap
stamp=$(cat "$IMAGE_DIR/packages.txt" "$0" | sha256sum | cut -c1-16)-$SUITE-$SOURCE_DATE_EPOCH
if [ -f "$ROOTFS/.dosegate-stamp" ] && [ "$(cat "$ROOTFS/.dosegate-stamp")" = "$stamp" ]; then
    log "rootfs: up to date"; exit 0
fi
mapfile -t pkgs < <(sed 's/#.*//' "$IMAGE_DIR/packages.txt" | tr -s ' \t' '\n' | sed '/^$/d')
include=$(IFS=,; echo "${pkgs[*]}")
mkdir -p "$OUT/debcache"
rm -rf "$ROOTFS"
log "rootfs: mmdebstrap $SUITE (${#pkgs[@]} packages)"
mmdebstrap --mode=root --variant=essential --format=directory --quiet \
  --include="$include" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --aptopt='Apt::Install-Recommends "false"' \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $OUT/debcache /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $OUT/debcache" \
  "$SUITE" "$ROOTFS" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main"
echo "$stamp" > "$ROOTFS/.dosegate-stamp"
log "rootfs: done ($(du -sm "$ROOTFS" | cut -f1) MB)"
