"""The `df2infer` command. Each subcommand lives in its own module, imported only when it runs,
so `df2infer detect` never pays for (or needs) what `df2infer train` imports.

A subcommand module defines `add_arguments(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules under export/ need the [export] extra (torch).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("df2infer.synth.cli", "generate a synthetic DeepFashion2-format data set (and video)"),
    "validate": ("df2infer.data.cli", "check a DeepFashion2 folder and report every problem"),
    "convert": ("df2infer.data.convert_cli", "convert a DeepFashion2 folder to COCO-style JSON and retrieval ground truth"),
    "eval": ("df2infer.eval.cli", "score predictions (or a model, through the runtime) on a DeepFashion2 folder"),
    "train": ("export.train", "train Match R-CNN on a DeepFashion2-format folder (needs torch)"),
    "predict-torch": ("export.infer", "PyTorch eager inference writing the official result files (needs torch)"),
    "export": ("export.cli", "export a checkpoint to ONNX (FP32/FP16/INT8) or a TensorRT engine"),
    "detect": ("df2infer.detect_cli", "detect clothing in images; writes annotated images and JSON"),
    "info": ("df2infer.info_cli", "print a model artifact's contract and metadata"),
    "bench": ("df2infer.bench.cli", "latency per stage (p50/p90/p99) and throughput, several artifacts side by side"),
    "index": ("df2infer.apps.index", "build a retrieval gallery: detect + embed catalog (shop) images (resumable)"),
    "search": ("df2infer.apps.search", "consumer photos -> top-k shop items from a gallery (JSON, pictures, DF2 result file)"),
    "demo": ("df2infer.demo", "synthetic data + bundled model: detect, draw and time (what `make demo` runs)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="df2infer", description="Match R-CNN clothing understanding: runtime, tools and export.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (modname, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported, so a missing optional extra
        # (torch for `train`) does not break the others.
        if argv is None:
            argv = sys.argv[1:]
        if argv and argv[0] == name:
            try:
                modules[name] = importlib.import_module(modname)
            except ModuleNotFoundError as e:
                if e.name and (e.name.startswith("torch") or e.name == "torchvision"):
                    print(f"df2infer {name}: needs PyTorch, which is not installed. "
                          f"Install the export extra: pip install 'df2infer[export]'", file=sys.stderr)
                    return 2
                raise
            modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
