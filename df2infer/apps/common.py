"""What the CLI verbs share: the model and decode arguments, and the one "load the model or exit 2" path.

A verb declares `add_model_arguments(p)` (--model, --device) and `add_decode_arguments(p)` (--conf,
--landmark-method, --keep-duplicates, as it needs them), then in `run` calls
`options = decode_options(args)` and `model = load_model(args, "verb", options)`. A problem the user must
fix raises CliExit, which `df2infer` (apps.main) prints as "df2infer VERB: message" and turns into the exit status.
"""

from __future__ import annotations

import argparse
from typing import Any

from df2infer.api import BACKENDS
from df2infer.errors import Df2inferError
from df2infer.ops.landmarks import LANDMARK_METHODS
from df2infer.ops.options import DEFAULT_LANDMARK_METHOD, DUPLICATE_IOU, DecodeOptions

DEVICE_HELP = "auto, cpu, cuda or cuda:N (default: %(default)s)"


class CliExit(Exception):
    """Stop the verb with `code` after printing `message` (to stderr) -- a usage or model problem, not a bug."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def add_model_arguments(p: Any, *, model_help: str = "model artifact (.onnx, .engine); default: the bundled model") -> None:
    """--model, --device, --backend and --trust-engine-code (p: a parser or an argument group)."""
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_backend_argument(p)
    p.add_argument(
        "--trust-engine-code",
        action="store_true",
        help="let a VERSION_COMPATIBLE TensorRT engine run the host code it carries (only for engine files you trust)",
    )


def add_backend_argument(p: Any) -> None:
    """--backend: which library runs an ONNX file on the CPU (df2infer.load's `backend`)."""
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="CPU backend for .onnx files: auto (the measured rule that `df2infer info` prints), onnxruntime, or openvino "
        "(extra `openvino`) (default: %(default)s)",
    )


def add_decode_arguments(p: Any, *, conf: float = 0.3, duplicates: bool = True, landmark_method: bool = True) -> None:
    """--conf, and as asked --landmark-method and --keep-duplicates (the DecodeOptions a verb lets users set)."""
    p.add_argument("--conf", type=float, default=conf, help="minimum detection score kept (default: %(default)s)")
    if landmark_method:
        p.add_argument(
            "--landmark-method",
            choices=LANDMARK_METHODS,
            default=DEFAULT_LANDMARK_METHOD,
            help="landmark decoding (default: %(default)s; see df2infer.ops.options)",
        )
    if duplicates:
        p.add_argument(
            "--keep-duplicates",
            action="store_true",
            help=f"keep cross-category duplicates (default: one garment reported as two categories at IoU > {DUPLICATE_IOU} is shown once)",
        )


def decode_options(args: argparse.Namespace, prog: str, **fixed: Any) -> DecodeOptions:
    """The DecodeOptions of the parsed arguments (those add_decode_arguments declared) plus `fixed`;
    CliExit(2) naming the bad option."""
    kw: dict[str, Any] = {"conf": args.conf}
    if hasattr(args, "landmark_method") and args.landmark_method is not None:
        kw["landmark_method"] = args.landmark_method
    if hasattr(args, "keep_duplicates"):
        kw["suppress_iou"] = None if args.keep_duplicates else DUPLICATE_IOU
    kw.update(fixed)
    try:
        return DecodeOptions(**kw)
    except Df2inferError as e:
        raise CliExit(2, f"df2infer {prog}: {e}") from e


def load_model(args: argparse.Namespace, prog: str, options: DecodeOptions | None = None, *, threads: int = 0):
    """df2infer.load(args.model, args.device) or CliExit(2) with the reason (missing file, bad artifact,
    unusable device): the one load-or-exit path of the verbs."""
    import df2infer
    from df2infer.api import DEFAULT_MODEL, MAKE_DEFAULT_MODEL

    if args.model is None and not DEFAULT_MODEL.is_file():
        raise CliExit(
            2,
            f"df2infer {prog}: the bundled model {DEFAULT_MODEL} is missing.\n"
            f"Make it with:\n    {MAKE_DEFAULT_MODEL}\nor pass another artifact: df2infer {prog} --model MODEL.onnx",
        )
    try:
        trust = bool(getattr(args, "trust_engine_code", False))
        return df2infer.load(
            args.model,
            device=getattr(args, "device", "auto"),
            threads=threads,
            trust_engine_code=trust,
            backend=getattr(args, "backend", "auto"),
            options=options,
        )
    except (FileNotFoundError, Df2inferError, ValueError) as e:  # ValueError: e.g. a --device string that is no device
        raise CliExit(2, f"df2infer {prog}: {e}") from e


__all__ = ["CliExit", "add_backend_argument", "add_decode_arguments", "add_model_arguments", "decode_options", "load_model"]
