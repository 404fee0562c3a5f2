"""`df2infer bench [MODEL ...] [--images DIR | --synthetic] [--batch 1,4] [--warmup N] [--runs N]
[--size 1280x720] [--torch CHECKPOINT] [--accuracy DATA_DIR [--accuracy-images N]] [--out DIR]`

Times every artifact (default: the bundled FP32 and INT8 ONNX models, when present) per stage and
in total, p50/p90/p99/mean/min/max over all runs after warm-up, interleaved in one process; writes
DIR/bench.json, DIR/bench.md and DIR/bench.png and prints the Markdown. See runner.py for what is
timed and how.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from df2infer.apps.common import DEVICE_HELP, CliExit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models", nargs="*", metavar="MODEL", help="artifacts (.onnx, .engine); default: df2infer/models/default.onnx and default.int8.onnx"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="time on images from this folder (up to 16, cycled into batches)")
    src.add_argument("--synthetic", action="store_true", help="time on a fixed synthetic scene (the default)")
    p.add_argument("--size", default="1280x720", help="synthetic scene size WIDTHxHEIGHT (default: %(default)s)")
    p.add_argument("--batch", default="1,4", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up calls per artifact and batch size (default: %(default)s)")
    p.add_argument(
        "--block",
        type=int,
        default=10,
        help="timed calls in a row per artifact before switching to the next; each block starts with one "
        "untimed call (default: %(default)s)",
    )
    p.add_argument("--runs", type=int, default=50, help="timed calls per artifact and batch size, >= 30 for p99 (default: %(default)s)")
    p.add_argument("--conf", type=float, default=0.3, help="score threshold of the timed calls (default: %(default)s)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime (and torch) CPU threads; 0: library default")
    p.add_argument("--torch", metavar="CHECKPOINT", help="also time PyTorch eager on this checkpoint (needs torch)")
    p.add_argument("--accuracy", metavar="DATA_DIR", help="also score each artifact on this DeepFashion2 folder")
    p.add_argument("--accuracy-images", type=int, default=100, help="images scored for --accuracy (default: %(default)s)")
    p.add_argument("--out", default="bench_out", help="output folder (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")


def default_models() -> list[Path]:
    from df2infer.api import DEFAULT_MODEL

    return [p for p in (DEFAULT_MODEL, DEFAULT_MODEL.with_name("default.int8.onnx")) if p.is_file()]


def _names(paths: list[str]) -> list[str]:
    names = [Path(p).name for p in paths]
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}#{i + 1}")
    return out


def _subjects(args: argparse.Namespace, models: list[str]) -> list:
    """The runtime subjects of the MODEL paths, and --torch's; CliExit(2) naming what cannot be loaded."""
    from df2infer.bench.runner import runtime_subject
    from df2infer.errors import Df2inferError

    subjects = []
    try:
        for path, name in zip(models, _names(models)):
            subjects.append(runtime_subject(path, name, args.device, args.threads))
    except (FileNotFoundError, Df2inferError, ValueError) as e:
        raise CliExit(2, f"df2infer bench: {e}") from e
    if args.torch:
        try:
            # same device as the first artifact; same thread count as ONNX Runtime (0: each library's default)
            tdev = subjects[0].info.get("device", "cpu") if subjects else args.device
            # and the same top N detections as the first artifact, so all do the same work
            n = subjects[0].predictor.contract.max_detections if subjects else None
            subjects.append(torch_subject(args.torch, tdev, args.threads, n))
        except ModuleNotFoundError as e:
            raise CliExit(
                2, f"df2infer bench: --torch needs PyTorch ({e}); install the export extra: pip install 'df2infer[export]'"
            ) from e
        except (FileNotFoundError, Df2inferError, ValueError) as e:
            raise CliExit(2, f"df2infer bench: {e}") from e
    return subjects


def _bench_images(args: argparse.Namespace) -> tuple[list, str]:
    """(images, description): --images' files, or one synthetic scene of --size; CliExit(2) when unusable."""
    from df2infer.bench.runner import folder_images, parse_size, synthetic_scene

    try:
        if args.images:
            images = folder_images(args.images)
            return images, f"{len(images)} images from {args.images} (cycled into batches)"
        size = parse_size(args.size)
    except (FileNotFoundError, ValueError) as e:
        raise CliExit(2, f"df2infer bench: {e}") from e
    img, n_items = synthetic_scene(size)
    return [img], f"synthetic {size[0]}x{size[1]} scene with {n_items} garments (seed 0)"


def run(args: argparse.Namespace) -> int:
    import df2infer.api
    from df2infer.api import MAKE_DEFAULT_MODEL
    from df2infer.bench import report as rep
    from df2infer.bench.runner import machine_info, measure

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
        if not batches or min(batches) < 1:
            raise ValueError
    except ValueError:
        print(f"df2infer bench: --batch {args.batch!r}: expected positive integers like 1,4", file=sys.stderr)
        return 2
    if args.runs < 1 or args.warmup < 0 or args.block < 1:
        print("df2infer bench: --runs and --block must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    notes: list[str] = []
    if args.runs < 30:
        notes.append(f"only {args.runs} timed runs per batch size: p99 is not meaningful below ~30 (use --runs >= 30)")
    models = [str(m) for m in args.models] or [str(p) for p in default_models()]
    if not models and not args.torch:
        print(
            f"df2infer bench: no model given and no bundled model at {df2infer.api.DEFAULT_MODEL}; "
            f"make it with `{MAKE_DEFAULT_MODEL}`, or pass MODEL paths",
            file=sys.stderr,
        )
        return 2
    machine = machine_info()
    subjects = _subjects(args, models)
    images, desc = _bench_images(args)
    print(
        f"benchmarking {', '.join(s.name for s in subjects)} on {desc}; batches {batches}, {args.warmup} warm-up + {args.runs} runs each",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    rows = measure(
        subjects,
        images,
        batches,
        warmup=args.warmup,
        runs=args.runs,
        conf=args.conf,
        block=args.block,
        log=lambda s: print(s, file=sys.stderr),
    )
    machine["loadavg_1m_end"] = machine_info().get("loadavg_1m")
    inputs = {s.info.get("input") for s in subjects}
    if len(inputs) > 1:
        notes.append(
            f"the artifacts have different graph input sizes ({', '.join(sorted(map(str, inputs)))}): "
            "their latencies are not for the same work"
        )
    report = {
        "machine": machine,
        "config": {
            "images": desc,
            "batches": batches,
            "warmup": args.warmup,
            "runs": args.runs,
            "block": args.block,
            "conf": args.conf,
            "device": args.device,
            "threads": args.threads,
            "seconds": round(time.perf_counter() - t0, 2),
        },
        "subjects": [{"name": s.name, "kind": s.kind, "path": s.path, "precision": s.precision, "info": s.info} for s in subjects],
        "results": rows,
        "notes": notes,
    }
    if args.accuracy:
        report["accuracy"] = accuracy(subjects, args.accuracy, args.accuracy_images)
    paths = rep.write(report, args.out, with_plot=not args.no_plot)
    print(rep.format_markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def accuracy(subjects, data_dir: str, n_images: int, conf: float = 0.05) -> dict:
    """{data, images, conf, by_subject: {name: {box_AP, mask_AP, ..., retrieval_top1, ...}}}."""
    from df2infer.data.annotations import load_dataset
    from df2infer.eval import evaluate_predictions
    from df2infer.eval.predict import predict_results, summarize

    ds = load_dataset(data_dir)
    images = ds.images[:n_images] if n_images else ds.images
    out: dict = {"data": str(data_dir), "images": len(images), "conf": conf, "by_subject": {}}
    for s in subjects:
        print(f"accuracy: {s.name} on {len(images)} images", file=sys.stderr)
        try:
            res = predict_results(s.predictor, ds, conf=conf, max_images=n_images)
            rep = evaluate_predictions(images, res, breakdown=False)
            out["by_subject"][s.name] = summarize(rep)
        except Exception as e:  # one artifact failing to score must not lose the timings
            out["by_subject"][s.name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def torch_predictor(checkpoint: str, device: str = "cpu", threads: int = 0, max_detections: int | None = None):
    """The PyTorch eager model as a df2infer Predictor (df2infer_export.torch_backend.TorchBackend): the same
    read / preprocess / postprocess code as the artifacts, only backend.run differs.

    Imports torch (the export extra) lazily."""
    import df2infer
    from df2infer_export.torch_backend import TorchBackend

    return df2infer.load(TorchBackend(checkpoint, device=device, threads=threads or None, max_detections=max_detections))


def torch_subject(checkpoint: str, device: str = "cpu", threads: int = 0, max_detections: int | None = None):
    """max_detections: keep the same top N as the artifacts it is compared with (None: the checkpoint's)."""
    import torch

    from df2infer.bench.runner import Subject

    tp = torch_predictor(checkpoint, device, threads, max_detections)
    be = tp.backend
    info = {
        "backend": "torch eager",
        "device": be.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "input": f"{tp.contract.input_width}x{tp.contract.input_height}",
        "checkpoint_iteration": be.iteration,
        "sync": "torch.cuda.synchronize() before each clock read on a GPU; CPU forward is synchronous",
    }
    return Subject(
        name=f"torch:{Path(checkpoint).name}",
        kind="torch",
        path=checkpoint,
        precision="fp32",
        predictor=tp,
        info=info,
        max_batch=be.max_batch,
    )
