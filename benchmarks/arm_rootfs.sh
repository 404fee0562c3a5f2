#!/usr/bin/env bash
# An aarch64 Debian userland under qemu-user, for benchmarks/arm_check.sh (cached: reused when ROOT/.complete exists).
# Needs root (debootstrap, chroot, binfmt_misc). Installs debootstrap and qemu-user-static with apt when missing.
# Usage: benchmarks/arm_rootfs.sh [ROOT]          (default build/arm64-root; ~7-8 min on a 2-core x86 the first time)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-build/arm64-root}
SUITE=${ARM_SUITE:-bookworm}
MIRROR=${ARM_MIRROR:-http://deb.debian.org/debian}
NICE=(nice -n 19)

if [ "$(id -u)" != 0 ]; then echo "arm_rootfs.sh: needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; fi
if ! command -v debootstrap >/dev/null || [ ! -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap qemu-user-static >/dev/null
fi

# Register qemu-aarch64 with the kernel (flag F: the interpreter is opened now, so the root needs no copy of it).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | head -n1 > /proc/sys/fs/binfmt_misc/register
fi

if [ -e "$ROOT/.complete" ]; then echo "arm_rootfs.sh: reusing $ROOT"; exit 0; fi
rm -rf "$ROOT"
mkdir -p "$(dirname "$ROOT")"
t0=$(date +%s)
"${NICE[@]}" debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR"
"${NICE[@]}" chroot "$ROOT" /debootstrap/debootstrap --second-stage
touch "$ROOT/.complete"
echo "arm_rootfs.sh: $ROOT built in $(( $(date +%s) - t0 )) s"
