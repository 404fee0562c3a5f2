#!/usr/bin/env bash
# NVIDIA Model Optimizer's ONNX PTQ (nvidia-modelopt[onnx], the TensorRT-oriented tool) on the bundled
# FP32 graph, INT8, max calibration on the same 64 images as the bundled INT8, scored by int8_study.py:
# once with its default placement, once with the 6 layers the bundled INT8 keeps float excluded.
# Model Optimizer pins onnxruntime-gpu and another onnx, so it gets its own venv (MO_VENV) on top of
# this one's packages; the tensorrt *type stubs* this repo installs make it believe TensorRT is
# present, so a module raising ImportError shadows them there. Usage: benchmarks/int8_modelopt.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MO_VENV=${MO_VENV:-bench_out/modelopt_venv}
W=bench_out/int8_study
if [ ! -x "$MO_VENV/bin/python" ]; then
    python3 -m venv "$MO_VENV"
    MO_SITE=$("$MO_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    $PY -c "import sys; [print(p) for p in sys.path if p.endswith('site-packages')]" > "$MO_SITE/base.pth"
    echo 'raise ImportError("TensorRT is not installed (type stubs only)")' > "$MO_SITE/tensorrt.py"
    "$MO_VENV/bin/python" -m pip install -q "nvidia-modelopt[onnx]"
fi
mkdir -p "$W"
$PY - <<'PY'
import sys, numpy as np
sys.path.insert(0, "benchmarks")
import int8_study as S
from df2infer.artifact import read_onnx_contract
from df2infer.engine.calibration import calibration_batch, list_calibration_images
c = read_onnx_contract(S.FP32)
files = list_calibration_images(S.calibration_dir(), 64)
np.save(S.WORK / "calib64.npy", calibration_batch(files, c))  # the images the INT8 calibration reads, same letterbox
PY
run() {  # run OUT [extra modelopt args]
    out=$1; shift
    "$MO_VENV/bin/python" -m modelopt.onnx.quantization --onnx_path df2infer/models/default.onnx --quantize_mode int8 \
        --calibration_method max --calibration_data_path "$W/calib64.npy" --calibration_shapes images:1x3x320x320 \
        --calibration_eps cpu --high_precision_dtype fp32 --output_path "$out" "$@"
}
run "$W/modelopt_default.onnx"
$PY benchmarks/int8_study.py modelopt "$W/modelopt_default.onnx" --name "nvidia-modelopt int8 max 64"
run "$W/modelopt_excl.onnx" --nodes_to_exclude /box_predictor/cls_score/Gemm /box_predictor/bbox_pred/Gemm \
    /box_head/fc6/Gemm /box_head/fc7/Gemm /keypoint_predictor/MatMul /keypoint_predictor/upsample/upsample.0/ConvTranspose
$PY benchmarks/int8_study.py modelopt "$W/modelopt_excl.onnx" --name "nvidia-modelopt int8 max 64, same 6 layers float"
