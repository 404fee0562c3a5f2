"""The `df2infer` command (console script and `python -m df2infer`).

Every verb is a module of df2infer.apps, imported here statically so readers and tools can follow them.
Those modules import their heavy dependencies inside `run`, so `df2infer detect` never pays for (or
needs) what `df2infer train` imports; verbs marked NEEDS_EXPORT_EXTRA need PyTorch (the export extra)
and say so when it is missing.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from df2infer.apps import bench, convert, demo, detect, eval, export, index, info, predict_torch, search, synth, train, validate, video
from df2infer.apps.common import CliExit

# verb -> (module, one-line help), in the order `df2infer --help` lists them.
VERBS: dict[str, tuple[ModuleType, str]] = {
    "synth": (synth, "generate a synthetic DeepFashion2-format data set (and video)"),
    "validate": (validate, "check a DeepFashion2 folder and report every problem"),
    "convert": (convert, "convert a DeepFashion2 folder to COCO-style JSON and retrieval ground truth"),
    "eval": (eval, "score predictions (or a model, through the runtime) on a DeepFashion2 folder"),
    "train": (train, "train Match R-CNN on a DeepFashion2-format folder (needs the export extra: torch)"),
    "predict-torch": (predict_torch, "PyTorch eager inference writing the official result files (needs the export extra)"),
    "export": (export, "export a checkpoint to ONNX (FP32/FP16/INT8) or a TensorRT engine (needs the export extra)"),
    "detect": (detect, "detect clothing in images; writes annotated images and JSON"),
    "video": (video, "detect clothing in video files, cameras and streams (RTSP, HTTP, CSI), several at once"),
    "index": (index, "build a retrieval gallery: detect + embed catalog (shop) images (resumable)"),
    "search": (search, "consumer photos -> top-k shop items from a gallery (JSON, pictures, DF2 result file)"),
    "info": (info, "print a model artifact's contract and metadata"),
    "bench": (bench, "latency per stage (p50/p90/p99) and throughput, several artifacts side by side"),
    "demo": (demo, "synthetic data + bundled model: detect, draw and time (what `make demo` runs)"),
}

# Top-level modules of the export extra (pyproject [project.optional-dependencies] export).
EXPORT_EXTRA_MODULES = ("torch", "torchvision", "onnxslim", "onnxconverter_common", "yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="df2infer", description="Match R-CNN clothing understanding: runtime, tools and export.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in VERBS.items():
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = VERBS[args.command][0]
    try:
        return int(module.run(args) or 0)
    except CliExit as e:
        print(e.message, file=sys.stderr)
        return e.code
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if getattr(module, "NEEDS_EXPORT_EXTRA", False) and missing in EXPORT_EXTRA_MODULES:
            print(
                f"df2infer {args.command}: needs the export extra ({missing} is not installed): pip install 'df2infer[export]'",
                file=sys.stderr,
            )
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
