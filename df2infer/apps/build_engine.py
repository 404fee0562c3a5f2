"""`df2infer build-engine MODEL.onnx [--out MODEL.engine]`: a TensorRT engine from an exported ONNX file, without torch.

For the machine that runs the engine (a Jetson): TensorRT engines are specific to the GPU and the TensorRT version,
so export the ONNX anywhere (`df2infer export model.pt --out DIR --heads static`), copy the .onnx file, and build
here with the runtime's dependencies only (TensorRT, cuda-bindings). The precision is the ONNX file's own (FP32,
FP16, INT8 Q/DQ): the network is strongly typed. Writes MODEL.engine and its sidecar MODEL.engine.json (contract,
TensorRT version, GPU, profile), and keeps TensorRT's timing cache (--timing-cache, default beside the engine) so a
rebuild on the same GPU is faster. A gated-head ONNX file (the bundled default.onnx; ONNX Runtime only) is refused
with the export command that makes a static one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from df2infer.apps.common import CliExit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", help="an exported ONNX file with static heads (`df2infer export ... --heads static`)")
    p.add_argument("--out", default=None, help="engine file (default: the ONNX file's name with .engine)")
    p.add_argument("--min-batch", type=int, default=1, help="smallest batch of the optimization profile (default: %(default)s)")
    p.add_argument("--opt-batch", type=int, default=1, help="batch TensorRT tunes for (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=None, help="largest batch (default: the contract's max_batch)")
    p.add_argument("--workspace-gib", type=float, default=2.0, help="builder workspace, GiB (default: %(default)s)")
    p.add_argument("--timing-cache", default=None, help="TensorRT timing cache file (default: <engine>.timing.cache)")
    p.add_argument("--no-timing-cache", action="store_true", help="neither read nor write a timing cache")
    p.add_argument(
        "--version-compatible",
        action="store_true",
        help="build a VERSION_COMPATIBLE engine (loads on later TensorRT of the same major; carries host code, "
        "so loading it needs --trust-engine-code)",
    )
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


def run(args: argparse.Namespace) -> int:
    from df2infer.artifact import read_onnx_info
    from df2infer.contract import ContractError
    from df2infer.engine.builder import BuildError, TensorRTUnavailable, build_engine, check_buildable, require_tensorrt

    src = Path(args.onnx)
    if not src.is_file():
        raise CliExit(2, f"df2infer build-engine: {src}: no such ONNX file")
    try:
        info = read_onnx_info(src)
        check_buildable(info)  # before TensorRT: a gated-head file is refused on any machine
    except ContractError as e:
        raise CliExit(2, f"df2infer build-engine: {e}") from e
    try:
        require_tensorrt()
    except TensorRTUnavailable as e:
        raise CliExit(2, f"df2infer build-engine: {e}") from e
    out = Path(args.out) if args.out else src.with_suffix(".engine")
    max_batch = args.max_batch if args.max_batch is not None else info.contract.max_batch
    cache = None if args.no_timing_cache else Path(args.timing_cache) if args.timing_cache else out.with_name(out.name + ".timing.cache")
    t = time.perf_counter()
    try:
        engine = build_engine(
            src,
            out,
            min_batch=args.min_batch,
            opt_batch=args.opt_batch,
            max_batch=max_batch,
            workspace_gib=args.workspace_gib,
            timing_cache=cache,
            verbose=args.verbose,
            version_compatible=args.version_compatible,
        )
    except (BuildError, ContractError, ValueError) as e:
        raise CliExit(2 if isinstance(e, ValueError) else 1, f"df2infer build-engine: {e}") from e
    profile = f"batch {args.min_batch}/{args.opt_batch}/{max_batch}"
    print(f"engine: {engine} ({info.contract.precision}, {profile}) in {time.perf_counter() - t:.1f} s")
    if cache is not None:
        print(f"timing cache: {cache}")
    return 0
