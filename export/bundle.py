"""Regenerate the runtime's bundled default model from the committed checkpoint.

    python -m df2infer_export.bundle            # or: make bundle

writes df2infer/models/default.onnx (FP32) and df2infer/models/default.int8.onnx (INT8 Q/DQ in
ONNX Runtime's CPU form: u8 activations, 7-bit weights; TensorRT INT8 comes from
`df2infer export --precision int8`, symmetric s8).
The runtime has no torch, so it cannot export at run time: these two files ship inside the
package. INT8 is calibrated on a synthetic calibration split made here from a fixed seed
(CALIBRATION_SEED, used neither for training, seed 1, nor for the held-out split, seed 777), so
the command needs no data beyond the repository and gives the same files every time.
Both are gated-head graphs (df2infer.contract: the heads run only on the detections the runtime's
`conf` keeps), the fastest form for ONNX Runtime on a CPU; TensorRT engines are built from a
static-head export (`df2infer export ... --engine`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .precision import INT8_SENSITIVE_FLOAT_LAYERS

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "match_rcnn_small_synth.pt"
MODELS = ROOT / "df2infer" / "models"
FP32_NAME, INT8_NAME = "default.onnx", "default.int8.onnx"
CALIBRATION_SEED = 4242
CALIBRATION_IMAGES = 64
CALIBRATION_METHOD = "minmax"
# The CPU INT8 recipe (docs/int8.md; measured in benchmarks/int8_study.py, results in
# benchmarks/results/int8_study.json): u8 activations (Relu folds, ONNX Runtime fuses INT8 chains),
# 7-bit symmetric per-channel weights (exact on x86 with or without VNNI and on ARM), and the layers
# the sensitivity analysis found most sensitive kept float (listed in the file's int8_float_layers).
INT8_ACTIVATIONS = "uint8"
INT8_WEIGHT_BITS = 7
# held-out effects: df2infer_export.precision, docs/int8.md. The landmark deconvolution is a 3x3 Conv in the deploy
# graph (deploy.SubpixelLandmarkPredictor), quantized like the others (ONNX Runtime's CPU has no INT8 ConvTranspose).
INT8_KEEP_FLOAT = INT8_SENSITIVE_FLOAT_LAYERS
MAX_DETECTIONS = 20  # DeepFashion2 scores at most 20 items per image; padded heads cost time per slot
MAX_BATCH = 8


def calibration_images(folder: Path) -> Path:
    """Generate the deterministic calibration split into folder/image and return that folder."""
    from df2infer.synth.generator import generate

    generate(folder, CALIBRATION_IMAGES, CALIBRATION_SEED, log=lambda *a, **k: None)
    return folder / "image"


def build(checkpoint: Path, out_dir: Path, *, work_dir: Path) -> tuple[Path, Path]:
    """Export checkpoint to out_dir/default.onnx and out_dir/default.int8.onnx."""
    from .onnx_export import export_onnx
    from .precision import to_int8_qdq

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / FP32_NAME
    int8 = out_dir / INT8_NAME
    export_onnx(
        checkpoint,
        fp32,
        max_detections=MAX_DETECTIONS,
        max_batch=MAX_BATCH,
        gate_heads=True,
        trained_on="df2infer synth (synthetic DeepFashion2-format)",
    )
    images = calibration_images(work_dir / "calibration")
    to_int8_qdq(
        fp32,
        int8,
        images,
        method=CALIBRATION_METHOD,
        num_images=CALIBRATION_IMAGES,
        cache=work_dir / "calibration_cache.json",
        activations=INT8_ACTIVATIONS,
        weight_bits=INT8_WEIGHT_BITS,
        keep_float_nodes=INT8_KEEP_FLOAT,
    )
    return fp32, int8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m df2infer_export.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--out", type=Path, default=MODELS, help=f"output folder (default {MODELS})")
    args = p.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"df2infer_export.bundle: checkpoint {args.checkpoint} not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = build(args.checkpoint, Path(tmp) / "out", work_dir=Path(tmp))
        args.out.mkdir(parents=True, exist_ok=True)
        for f in (fp32, int8):
            shutil.copyfile(f, args.out / f.name)
            print(f"{args.out / f.name}: {f.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
