# Shared settings of the image build steps (sourced, not run).
# Every step reads OUT (the build folder) and VERSION, and writes only under OUT.
set -euo pipefail
IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$IMAGE_DIR/.." && pwd)
OUT=${OUT:-$REPO_DIR/build/image}
VERSION=${VERSION:-0.1.0}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Fixed build time: file dates, squashfs and FAT timestamps all come from it.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
ROOTFS=$OUT/rootfs
REL=$OUT/$VERSION
log() { printf '[image %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }
need() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "missing tool '$c' (run scripts/setup-deps.sh)"; done; }
[ "$(id -u)" -eq 0 ] || die "the image build needs root (mmdebstrap --mode=root, chroot for dracut)"
