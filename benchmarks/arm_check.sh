#!/usr/bin/env bash
# The CPU path and the INT8 file on aarch64, without ARM hardware: an aarch64 Debian userland run by qemu-user
# (benchmarks/arm_rootfs.sh, cached in build/arm64-root), this checkout's wheel installed into it with its `cpu`
# extra (aarch64 wheels from the package index), then, against x86 runs of the same images on this host:
#   0. OpenCV's resizes of seeded images, INTER_LINEAR_EXACT (the letterbox's) and INTER_LINEAR, value by value;
#   1. FP32: df2infer.load().predict on the first ARM_FP32_IMAGES synthetic images: same labels, boxes within 1e-3 px;
#      and stage by stage on ARM_STAGE_IMAGES (decoded image, letterboxed input, the graph on both machines' inputs);
#   2. INT8 (the bundled file) on the first ARM_INT8_IMAGES images under each QEMU_CPU in ARM_INT8_CPUS
#      (max: dotprod + i8mm; cortex-a76: dotprod only; cortex-a57: neither): detections against x86 INT8 and
#      aarch64 FP32, AP against the synthetic ground truth, minus FP32, with a paired bootstrap's sd;
#   3. the INT8 refusal rule reading each emulated CPU's features (getauxval; /proc/cpuinfo shows the host);
#   4. `pip install --dry-run "df2infer[jetson]"` for aarch64 / Python 3.10 (pip's --platform / --python-version).
# Writes benchmarks/results/arm_check_aarch64.{json,md} and arm_jetson_dry_run_aarch64.txt. Needs root (chroot,
# binfmt_misc) and network to the package index. Everything emulated runs under `nice -n 19`.
# Cost measured on the shared 2-core x86 (docs/int8.md, "ARM, under emulation"): the userland 28 min at load ~10 (once;
# ~7 min on an idle machine), its venv + pip 7 min (once); then, at load 4-6, 19 min of checks (emulated: FP32 ~43 s/image,
# INT8 5-14 s/image) and 7.5 min of report (AP bootstraps). Not in CI (`make test`): `make arm-check`.
# Usage: benchmarks/arm_check.sh      (environment: ARM_FP32_IMAGES=10 ARM_INT8_IMAGES=16 ARM_STAGE_IMAGES=2 ARM_HOST_IMAGES=600
#        ARM_INT8_CPUS="max cortex-a57" ARM_FEATURE_CPUS="max cortex-a76 cortex-a57" ARM_BOOTSTRAP=20 ARM_HOST_BOOTSTRAP=10
#        ARM_OUT=benchmarks/results/arm_check_aarch64; emulated runs are reused when model, code, images and QEMU_CPU match)
# Exit status 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-.venv/bin/python}
ROOT=${ARM_ROOT:-build/arm64-root}
WORK=${ARM_WORK:-build/arm-check}
FP32_IMAGES=${ARM_FP32_IMAGES:-10}
INT8_IMAGES=${ARM_INT8_IMAGES:-16}
STAGE_IMAGES=${ARM_STAGE_IMAGES:-2}
HOST_IMAGES=${ARM_HOST_IMAGES:-600}  # x86 FP32 and INT8 on the host: the INT8-minus-FP32 AP on the 600-image held-out split
INT8_CPUS=${ARM_INT8_CPUS:-max cortex-a57}
FEATURE_CPUS=${ARM_FEATURE_CPUS:-max cortex-a76 cortex-a57}
BOOTSTRAP=${ARM_BOOTSTRAP:-20}            # paired bootstrap draws, the emulated set
HOST_BOOTSTRAP=${ARM_HOST_BOOTSTRAP:-10}  # and the host set (each draw scores 600 images twice: ~40 s here)
NICE=(nice -n 19)
t_start=$(date +%s)
say() { echo "arm_check [$(( $(date +%s) - t_start )) s]: $*"; }

benchmarks/arm_rootfs.sh "$ROOT"
mkdir -p "$WORK"

# The chroot's /proc and /dev, and the work folder (data in, results out) at /mnt/arm-check; undone on exit.
# Not /sys: with the host's /sys and the host's /proc/cpuinfo (qemu-user shows the x86 one) ONNX Runtime's bundled
# cpuinfo library crashes the import (SIGSEGV, onnxruntime 1.32); without /sys it fails to initialize and ONNX Runtime
# reads dotprod / i8mm / SVE from getauxval(AT_HWCAP / AT_HWCAP2), i.e. from the emulated CPU, as df2infer does.
MNT="$ROOT/mnt/arm-check"
mounts=()
cleanup() { for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}"; done; }
trap cleanup EXIT
bind() { mkdir -p "$2"; mount "${@:3}" "$1" "$2"; mounts+=("$2"); }
bind proc "$ROOT/proc" -t proc
bind /dev "$ROOT/dev" --bind
bind "$REPO/$WORK" "$MNT" --bind

# pip inside the root reaches the host's package index: the host's CA bundle and index settings (never its credentials
# in any log: they are passed through the environment, not printed).
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-bundle.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
pip_env=(PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
idx=$($PY -m pip config get global.index-url 2>/dev/null || true)
[ -n "${PIP_INDEX_URL:-$idx}" ] && pip_env+=(PIP_INDEX_URL="${PIP_INDEX_URL:-$idx}")
extra_env=()
in_root() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PYTHONFAULTHANDLER=1 "${pip_env[@]}" "${extra_env[@]}" "${NICE[@]}" chroot "$ROOT" "$@"; }

# 0. This checkout as a wheel; installed into the root's venv with the `cpu` extra (dependencies once, the wheel every time).
say "building the wheel from this checkout"
rm -rf "$WORK/wheel" && $PY -m pip wheel -q --no-deps -w "$WORK/wheel" . >/dev/null
whl=$(basename "$WORK"/wheel/df2infer-*.whl)
cp benchmarks/arm_check.py "$WORK/arm_check.py"
VENV=/opt/df2infer-venv
if [ ! -x "$ROOT$VENV/bin/python" ]; then say "creating $VENV in the root"; in_root python3 -m venv "$VENV"; fi
say "installing df2infer[cpu] into the aarch64 root"
in_root "$VENV/bin/python" -m pip install -q "/mnt/arm-check/wheel/$whl[cpu]"
in_root "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "/mnt/arm-check/wheel/$whl"
in_root "$VENV/bin/python" -m pip freeze > "$WORK/arm_pip_freeze.txt"

# The image set (host), and the x86 references (host; same script, same images).
$PY benchmarks/arm_check.py data --out "$WORK/data" --images "$HOST_IMAGES"
say "x86 FP32 and INT8 on $HOST_IMAGES images (host)"
$PY benchmarks/arm_check.py predict --model fp32 --data "$WORK/data" --images "$HOST_IMAGES" --out "$WORK/pred_x86_fp32.json" --warmup --reuse
$PY benchmarks/arm_check.py predict --model int8 --data "$WORK/data" --images "$HOST_IMAGES" --out "$WORK/pred_x86_int8.json" --warmup --reuse

run_arm() {  # QEMU_CPU (qemu-user reads it: the emulated CPU model), then arm_check.py's arguments
    extra_env=(QEMU_CPU="$1"); shift
    in_root "$VENV/bin/python" /mnt/arm-check/arm_check.py "$@"
    extra_env=()
}
rm -f "$WORK"/features_*.json "$WORK"/resize_*.npz  # the emulated predictions are reused when model, code, image count and QEMU_CPU match
say "0. OpenCV's resizes (INTER_LINEAR_EXACT, the letterbox's, and INTER_LINEAR) of seeded images, host and aarch64"
$PY benchmarks/arm_check.py resize --out "$WORK/resize_x86.npz"
for cpu in $INT8_CPUS; do run_arm "$cpu" resize --out "/mnt/arm-check/resize_arm_$cpu.npz"; done
for cpu in $FEATURE_CPUS; do
    say "3. features and the INT8 refusal under QEMU_CPU=$cpu"
    run_arm "$cpu" features --out "/mnt/arm-check/features_$cpu.json"
done
say "1. FP32 on $FP32_IMAGES images under QEMU_CPU=max"
run_arm max predict --model fp32 --data /mnt/arm-check/data --images "$FP32_IMAGES" --out /mnt/arm-check/pred_arm_fp32.json --progress --reuse
say "1b. FP32 and INT8 stage by stage (decoded image, input tensor, raw outputs on both inputs) on $STAGE_IMAGES images"
$PY benchmarks/arm_check.py stages --data "$WORK/data" --images "$STAGE_IMAGES" --out "$WORK/stages_x86.npz"
run_arm max stages --data /mnt/arm-check/data --images "$STAGE_IMAGES" --out /mnt/arm-check/stages_arm_max.npz \
    --inputs-from /mnt/arm-check/stages_x86.npz
$PY benchmarks/arm_check.py stages --model int8 --data "$WORK/data" --images "$STAGE_IMAGES" --out "$WORK/stages_int8_x86.npz"
run_arm max stages --model int8 --data /mnt/arm-check/data --images "$STAGE_IMAGES" --out /mnt/arm-check/stages_int8_arm_max.npz \
    --inputs-from /mnt/arm-check/stages_int8_x86.npz
for cpu in $INT8_CPUS; do
    say "2. INT8 on $INT8_IMAGES images under QEMU_CPU=$cpu"
    run_arm "$cpu" predict --model int8 --data /mnt/arm-check/data --images "$INT8_IMAGES" --out "/mnt/arm-check/pred_arm_int8_$cpu.json" --progress --reuse
done

say "4. pip install --dry-run df2infer[jetson] for aarch64, Python 3.10"
jet="benchmarks/results/arm_jetson_dry_run_aarch64.txt"
{
    echo "# pip install --dry-run \"df2infer[jetson]\" for linux aarch64 (glibc 2.35, JetPack 6 / Ubuntu 22.04), CPython 3.10"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $($PY -m pip --version | cut -d' ' -f1-2), wheels only (--only-binary=:all:)"
    $PY -m pip install --dry-run --ignore-installed --only-binary=:all: --python-version 3.10 --implementation cp \
        --platform manylinux_2_35_aarch64 --platform manylinux2014_aarch64 --platform linux_aarch64 \
        "$WORK/wheel/$whl[jetson]" 2>&1 | grep -E '^(Collecting|Would install|ERROR)' || echo "pip failed (exit status of the pipe: $?)"
} > "$jet"
tail -n 3 "$jet"

say "report"
rm -f $(ls "$WORK"/pred_arm_int8_*.json | grep -v -F -f <(for c in $INT8_CPUS; do echo "_$c.json"; done))  # other CPUs' runs
$PY benchmarks/arm_check.py report --work "$WORK" --data "$WORK/data" --out "${ARM_OUT:-benchmarks/results/arm_check_aarch64}" --bootstrap "$BOOTSTRAP" --host-bootstrap "$HOST_BOOTSTRAP" --load "$(uptime | sed 's/.*load average: //')" \
    --minutes "$(( ($(date +%s) - t_start + 59) / 60 ))"
