#!/usr/bin/env bash
# Builds the DoseGate appliance image from Debian packages: `make image` runs this.
#
#   os-image/build.sh                 the release image, its update bundle and the test fixtures
#   VERSION=0.2.0 os-image/build.sh   another version (its disk, bundle, UKI, PCR 11 prediction)
#
# Steps (each a script under steps/, runnable alone with the same environment):
#   05-keys     test signing keys (or SB_KEY/SB_CERT, BUNDLE_KEY/BUNDLE_CERT from outside)
#   10-rootfs   mmdebstrap of packages.txt (cached)
#   20-tree     gateway + overlay + systemd config, trimmed initrd, slimming, SBOM
#   30-release  squashfs root + dm-verity + signed UKI + PCR 11 prediction + signed bundle
#   40-disk     ESP (signed sd-boot, UKI +3 tries) + GPT with A/B slots and /var + OVMF vars
# With TEST_FIXTURES=1 (the default of `make image`), it also builds the release the rollback
# test installs into slot B: VERSION.1, whose dosegate.service is masked so its health check
# fails; and VERSION.2, a good release for the test where the gateway updates itself.
# Output in OUT (default build/image/): see docs/os-image.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export OUT=${OUT:-$(cd "$here/.." && pwd)/build/image}
export VERSION=${VERSION:-0.1.0}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
mkdir -p "$OUT"
t0=$(date +%s)
times=()
step() {
    local s; s=$(date +%s)
    "$here/steps/$1.sh"
    times+=("$1=$(( $(date +%s) - s ))s")
}
step 05-keys
step 10-rootfs
step 20-tree
step 30-release
step 40-disk
if [ "${TEST_FIXTURES:-0}" = 1 ]; then
    s=$(date +%s)
    VERSION="$VERSION.1" EXTRA_CMDLINE="systemd.mask=dosegate.service" "$here/steps/30-release.sh"
    # ... and VERSION.2, an ordinary newer release: the update the gateway installs itself.
    VERSION="$VERSION.2" "$here/steps/30-release.sh"
    times+=("test-fixtures=$(( $(date +%s) - s ))s")
fi
ln -sfn "$VERSION" "$OUT/current"
total=$(( $(date +%s) - t0 ))
echo "image: $OUT/$VERSION/dosegate-$VERSION.raw built in ${total}s (${times[*]})"
printf '{"version":"%s","seconds":%d,"steps":"%s"}\n' "$VERSION" "$total" "${times[*]}" > "$OUT/build-time.json"
