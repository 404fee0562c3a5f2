"""Static checks that an ONNX deploy graph will parse in TensorRT 10 and keeps the contract's shapes.

    lint_onnx(path_or_model) -> list[LintProblem]   every problem found (errors and warnings)
    check_onnx(path_or_model)                         raises OnnxLintError if any error was found
    python -m df2infer_export.lint MODEL.onnx                  prints the problems, exits 1 on any error

What is checked (docs/design.md, "The deploy graph"):
  - onnx.checker.check_model(full_check=True) passes;
  - the default-domain opset is >= 17 (a warning above the TSV's opset 20);
  - every node (subgraphs and model-local functions included) is an op the TensorRT 10 ONNX parser
    supports, per export/data/onnx_ops_tensorrt10.tsv (TensorRT 10's ONNX operator support table, shipped as
    package data); any domain other than '' / 'ai.onnx' is an error (com.microsoft contrib ops, plugins);
  - the element type of each node's first input (the op's main type T; for inputless ops, the
    first output) is one the TSV lists for that op, when shape inference can tell it;
    Cast/CastLike's target type too;
  - the TSV's restrictions that can be read from the graph: TopK K constant and < 3840 and
    sorted=1; Q/DQ zero points all zero; Resize modes; pooling dilations / rank / no Indices;
    `axes`/`axis`/`depth` inputs that must be initializers; Dropout is_training; ScatterND
    reduction; LayerNormalization single output; LSTM input_forget/layout; Constant attributes;
  - output shapes are static: after shape inference every graph output has a known rank, every
    dimension but the first is a positive integer, and the first is the input batch dimension
    (the same symbolic name as the input's, or the same value if the input batch is fixed).
Type and shape checks report only what shape inference can establish; unknowns are not guessed.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_OPSET = 17
TSV_MAX_OPSET = 20  # the TSV describes the parser for opsets 9-20
TOPK_MAX_K = 3840  # exclusive
ALLOWED_DOMAINS = ("", "ai.onnx")

# TSV type names -> ONNX element types.
_TSV_TYPES: dict[str, tuple[int, ...]] = {
    "FP32": (TensorProto.FLOAT,),
    "FP16": (TensorProto.FLOAT16,),
    "BF16": (TensorProto.BFLOAT16,),
    "INT32": (TensorProto.INT32,),
    "INT64": (TensorProto.INT64,),
    "INF64": (TensorProto.INT64,),  # typo in the upstream table (ConstantOfShape)
    "UINT8": (TensorProto.UINT8,),
    "INT8": (TensorProto.INT8,),
    "BOOL": (TensorProto.BOOL,),
    "INT4": tuple(t for t in (getattr(TensorProto, "INT4", None),) if t is not None),
    "FP8": tuple(
        getattr(TensorProto, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ") if hasattr(TensorProto, n)
    ),
}


@dataclass(frozen=True)
class OpSupport:
    op: str
    supported: bool
    types: frozenset[int]  # empty: the table lists none
    type_names: str
    restrictions: str


@dataclass(frozen=True)
class LintProblem:
    kind: str  # "checker", "opset", "unsupported_op", "domain", "type", "restriction", "output_shape", "load"
    message: str
    node: str = ""  # node name (or op type and index when unnamed); "" for graph-level problems
    op_type: str = ""
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f" [{self.op_type} {self.node}]" if (self.node or self.op_type) else ""
        return f"{self.severity}: {self.kind}{where}: {self.message}"


class OnnxLintError(ValueError):
    """An ONNX graph that TensorRT 10 would not parse, or that breaks the static-shape contract."""

    def __init__(self, source: str, problems: list[LintProblem]):
        self.source = source
        self.problems = problems
        lines = "\n  ".join(str(p) for p in problems)
        n_err = sum(p.severity == "error" for p in problems)
        super().__init__(f"{source}: {n_err} lint error(s):\n  {lines}")


_TABLE: dict[str, OpSupport] | None = None


def load_op_table(path: str | Path | None = None) -> dict[str, OpSupport]:
    """Parse the TensorRT ONNX-operator table (the packaged copy unless `path` is given)."""
    global _TABLE
    if path is None and _TABLE is not None:
        return _TABLE
    if path is None:
        text = resources.files(__package__ or "df2infer_export").joinpath("data/onnx_ops_tensorrt10.tsv").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    table: dict[str, OpSupport] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t") + ["", "", ""]
        op, flag, types, restr = cols[0].strip(), cols[1].strip(), cols[2].strip(), cols[3].strip()
        elem: set[int] = set()
        for t in types.split(","):
            t = t.strip()
            if t:
                elem.update(_TSV_TYPES.get(t, ()))
        table[op] = OpSupport(op, flag.upper() == "Y", frozenset(elem), types, restr)
    if path is None:
        _TABLE = table
    return table


def _type_name(elem: int) -> str:
    try:
        return TensorProto.DataType.Name(elem)
    except ValueError:
        return str(elem)


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If branches, Loop and Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


def _node_id(node: onnx.NodeProto, idx: int) -> str:
    return node.name or f"#{idx}"


class _Ctx:
    """Types, shapes and constants of the main graph (after shape inference)."""

    def __init__(self, model: onnx.ModelProto, inferred: onnx.ModelProto | None):
        g = (inferred or model).graph
        self.types: dict[str, int] = {}
        self.shapes: dict[str, onnx.TensorShapeProto | None] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if vi.type.HasField("tensor_type") and tt.elem_type:
                self.types[vi.name] = tt.elem_type
                self.shapes[vi.name] = tt.shape if tt.HasField("shape") else None
        graph_inputs = {i.name for i in model.graph.input}
        self.consts: dict[str, np.ndarray] = {}
        for init in model.graph.initializer:
            self.types.setdefault(init.name, init.data_type)
            if init.name not in graph_inputs:  # an initializer that is also an input can be overridden
                try:
                    self.consts[init.name] = numpy_helper.to_array(init)
                except Exception:  # noqa: BLE001 - external data not loaded, odd types
                    pass
        for node in model.graph.node:
            if node.op_type == "Constant" and node.domain in ALLOWED_DOMAINS and node.output:
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        try:
                            self.consts[node.output[0]] = numpy_helper.to_array(a.t)
                        except Exception:  # noqa: BLE001
                            pass
                        self.types.setdefault(node.output[0], a.t.data_type)

    def is_const(self, name: str) -> bool:
        return name in self.consts


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _infer(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, str]:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True), ""
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


def _check_restrictions(node: onnx.NodeProto, nid: str, ctx: _Ctx, opset: int) -> list[LintProblem]:
    out: list[LintProblem] = []
    op = node.op_type

    def bad(msg: str, severity: str = "error") -> None:
        out.append(LintProblem("restriction", msg, nid, op, severity))

    def need_const_input(idx: int, what: str) -> None:
        if len(node.input) > idx and node.input[idx] and not ctx.is_const(node.input[idx]):
            bad(f"`{what}` (input {idx}, {node.input[idx]!r}) must be an initializer/constant for TensorRT")

    if op == "TopK":
        if _attr(node, "sorted", 1) != 1:
            bad("`sorted` must be 1 for TensorRT")
        if len(node.input) > 1 and node.input[1]:
            k = ctx.consts.get(node.input[1])
            if k is None:
                bad(
                    f"K ({node.input[1]!r}) is not a constant, so K < {TOPK_MAX_K} cannot be checked; "
                    "the deploy graph should use a fixed K",
                    "warning",
                )
            elif int(np.max(k)) >= TOPK_MAX_K:
                bad(f"K = {int(np.max(k))}: TensorRT's TopK needs K < {TOPK_MAX_K}")
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        zp_name = node.input[2] if len(node.input) > 2 else ""
        if zp_name:
            zp = ctx.consts.get(zp_name)
            if zp is None:
                bad(f"zero point {zp_name!r} is not a constant; TensorRT needs it to be zero")
            elif np.any(zp.astype(np.float64) != 0):
                bad(f"zero point {zp_name!r} is not all zero (TensorRT supports symmetric quantization only)")
        if len(node.input) > 1 and node.input[1] and not ctx.is_const(node.input[1]):
            bad(f"scale {node.input[1]!r} is not a constant", "warning")
    elif op == "Resize":
        ctm = _attr(node, "coordinate_transformation_mode", b"half_pixel")
        mode = _attr(node, "mode", b"nearest")
        nearest = _attr(node, "nearest_mode", b"round_prefer_floor")
        policy = _attr(node, "keep_aspect_ratio_policy", b"stretch")
        dec = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        if dec(ctm) not in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"):
            bad(f"coordinate_transformation_mode {dec(ctm)!r} is not supported")
        if dec(mode) not in ("nearest", "linear"):
            bad(f"mode {dec(mode)!r} is not supported (nearest, linear only)")
        if dec(mode) == "nearest" and dec(nearest) not in ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"):
            bad(f"nearest_mode {dec(nearest)!r} is not supported")
        if dec(policy) != "stretch":
            bad(f"keep_aspect_ratio_policy {dec(policy)!r} is not supported (stretch only)")
        if _attr(node, "antialias", 0):
            bad("antialias is not supported")
    elif op in ("MaxPool", "AveragePool", "LpPool"):
        dil = _attr(node, "dilations")
        if dil and any(d != 1 for d in dil):
            bad(f"dilations {list(dil)} must be empty or all ones")
        ks = _attr(node, "kernel_shape")
        if op != "LpPool" and ks is not None and len(ks) not in (2, 3):
            bad(f"{len(ks)}D pooling; only 2D or 3D pooling is supported")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            bad("the `Indices` output is not supported")
    elif op in (
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Slice",
        "Pad",
    ):
        axes_idx = {"Slice": 3, "Pad": 3}.get(op, 1)
        if op.startswith("Reduce") and (op != "ReduceSum" and opset < 18 or op == "ReduceSum" and opset < 13):
            pass  # axes is an attribute at this opset
        else:
            need_const_input(axes_idx, "axes")
    elif op in ("Squeeze", "Unsqueeze"):
        if opset >= 13:
            need_const_input(1, "axes")
    elif op == "CumSum":
        need_const_input(1, "axis")
    elif op == "OneHot":
        need_const_input(1, "depth")
    elif op == "Dropout":
        if len(node.input) > 2 and node.input[2]:
            v = ctx.consts.get(node.input[2])
            if v is None or bool(np.any(v)):
                bad("`training_mode` must be an initializer that evaluates to False")
    elif op == "ScatterND":
        r = _attr(node, "reduction", b"none")
        if (r.decode() if isinstance(r, bytes) else r) != "none":
            bad("`reduction` is not supported")
    elif op == "LayerNormalization":
        if any(o for o in node.output[1:]):
            bad("only the first output `Y` is supported")
    elif op == "LSTM":
        if _attr(node, "input_forget", 0) != 0:
            bad("`input_forget` must be 0")
        if _attr(node, "layout", 0) != 0:
            bad("`layout` must be 0")
    elif op == "Constant":
        for a in node.attribute:
            if a.name in ("sparse_value", "value_string", "value_strings"):
                bad(f"attribute `{a.name}` is not supported")
    elif op == "EyeLike":
        shp = ctx.shapes.get(node.input[0]) if node.input else None
        if shp is None or any(not d.HasField("dim_value") for d in shp.dim):
            bad("`input` must have static dimensions", "warning" if shp is None else "error")
    return out


def _check_types(node: onnx.NodeProto, nid: str, ctx: _Ctx, sup: OpSupport) -> list[LintProblem]:
    if not sup.types:
        return []
    probe = next((i for i in node.input if i), None)
    if probe is None:
        probe = next((o for o in node.output if o), None)
    out: list[LintProblem] = []
    t = ctx.types.get(probe) if probe else None
    if t is not None and t not in sup.types:
        out.append(LintProblem("type", f"{probe!r} is {_type_name(t)}; TensorRT supports {sup.op} on {sup.type_names}", nid, node.op_type))
    if node.op_type == "Cast":
        to = _attr(node, "to")
        if to is not None and to not in sup.types:
            out.append(LintProblem("type", f"Cast to {_type_name(to)}; TensorRT casts to {sup.type_names}", nid, node.op_type))
    return out


def _dims(shape: onnx.TensorShapeProto | None) -> list[tuple[str, object]] | None:
    if shape is None:
        return None
    res: list[tuple[str, object]] = []
    for d in shape.dim:
        if d.HasField("dim_value"):
            res.append(("value", d.dim_value))
        elif d.HasField("dim_param"):
            res.append(("param", d.dim_param))
        else:
            res.append(("unknown", None))
    return res


def _output_shapes(model: onnx.ModelProto, inferred: onnx.ModelProto | None) -> list[LintProblem]:
    """Every graph output static except a batch dim that is the input's batch dim."""
    out: list[LintProblem] = []
    g = model.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    batch: tuple[str, object] | None = None
    if real_inputs:
        d0 = _dims(real_inputs[0].type.tensor_type.shape) if real_inputs[0].type.tensor_type.HasField("shape") else None
        if d0:
            batch = d0[0]
    if batch is not None and batch[0] == "value":
        out.append(
            LintProblem(
                "output_shape",
                f"input {real_inputs[0].name!r} has a fixed batch of {batch[1]}; the deploy graph keeps the batch dimension dynamic",
                severity="warning",
            )
        )
    # Outputs as inferred from scratch (declared output shapes removed), to catch declared shapes
    # that hide data-dependent ones; the declared shape is used where inference knows less.
    scratch = copy.deepcopy(model)
    for o in scratch.graph.output:
        o.type.tensor_type.ClearField("shape")
    fresh, _ = _infer(scratch)
    fresh_out = {o.name: o for o in fresh.graph.output} if fresh is not None else {}
    inf_out = {o.name: o for o in inferred.graph.output} if inferred is not None else {}
    for o in g.output:
        declared = _dims(o.type.tensor_type.shape) if o.type.tensor_type.HasField("shape") else None
        cand = [declared]
        for src in (inf_out, fresh_out):
            vi = src.get(o.name)
            if vi is not None and vi.type.tensor_type.HasField("shape"):
                cand.append(_dims(vi.type.tensor_type.shape))
        f = fresh_out.get(o.name)
        fdims = _dims(f.type.tensor_type.shape) if f is not None and f.type.tensor_type.HasField("shape") else None
        ranks = {len(c) for c in cand if c is not None}
        if not ranks:
            out.append(LintProblem("output_shape", f"output {o.name!r}: rank unknown after shape inference"))
            continue
        if len(ranks) > 1:
            out.append(LintProblem("output_shape", f"output {o.name!r}: declared and inferred ranks differ {sorted(ranks)}"))
            continue
        rank = ranks.pop()
        if rank == 0:
            out.append(LintProblem("output_shape", f"output {o.name!r} is a scalar; contract outputs start with the batch dim"))
            continue
        shown = []
        for i in range(rank):
            vals = [c[i] for c in cand if c is not None]
            # Inference from scratch is the truth where it found a number; otherwise the best known.
            known_vals = {v[1] for v in vals if v[0] == "value"}
            fresh_d = fdims[i] if fdims is not None else None
            if len(known_vals) > 1:
                out.append(
                    LintProblem("output_shape", f"output {o.name!r} dim {i}: declared and inferred sizes differ {sorted(known_vals)}")
                )
            if i == 0 and batch is not None:
                ok = batch in vals if batch[0] == "param" else (batch[1] in known_vals)
                if batch[0] == "param" and fresh_d is not None and fresh_d[0] == "value":
                    ok = False  # inferred fixed while the input batch is dynamic
                if not ok:
                    out.append(
                        LintProblem("output_shape", f"output {o.name!r} dim 0 is {_fmt(vals)}, expected the input batch dim {batch[1]!r}")
                    )
                shown.append(str(batch[1]))
                continue
            if known_vals:
                shown.append(str(min(known_vals)))
                if min(known_vals) <= 0:
                    out.append(LintProblem("output_shape", f"output {o.name!r} dim {i} has size {min(known_vals)}"))
                continue
            out.append(
                LintProblem(
                    "output_shape",
                    f"output {o.name!r} dim {i} is {_fmt(vals)}: not static after shape "
                    "inference (data-dependent or dynamic); pad to a fixed size",
                )
            )
            shown.append("?")
    return out


def _fmt(vals: list[tuple[str, object]]) -> str:
    s = sorted({repr(v[1]) if v[0] != "unknown" else "unknown" for v in vals})
    return "/".join(s) if s else "unknown"


def _load(path_or_model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, "<model>"
    return onnx.load(str(path_or_model)), str(path_or_model)


def lint_onnx(
    path_or_model: str | Path | onnx.ModelProto, *, check_output_shapes: bool = True, op_table: dict[str, OpSupport] | None = None
) -> list[LintProblem]:
    """All problems found in the graph (see the module doc); an empty list means clean."""
    table = op_table or load_op_table()
    try:
        model, source = _load(path_or_model)
    except Exception as e:  # noqa: BLE001
        return [LintProblem("load", f"cannot load {path_or_model}: {type(e).__name__}: {e}")]
    problems: list[LintProblem] = []

    try:
        if isinstance(path_or_model, (str, Path)):
            onnx.checker.check_model(str(path_or_model), full_check=True)
        else:
            onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        problems.append(LintProblem("checker", f"onnx.checker (full_check): {first}"))

    opset = None
    for imp in model.opset_import:
        if imp.domain in ALLOWED_DOMAINS:
            opset = imp.version
        elif imp.domain != "ai.onnx.ml":
            problems.append(
                LintProblem("domain", f"opset import of custom domain {imp.domain!r} (version {imp.version})", severity="warning")
            )
    if opset is None:
        problems.append(LintProblem("opset", "no default-domain opset import"))
        opset = 0
    elif opset < MIN_OPSET:
        problems.append(LintProblem("opset", f"opset {opset}; the deploy graph needs opset >= {MIN_OPSET}"))
    elif opset > TSV_MAX_OPSET:
        problems.append(
            LintProblem(
                "opset",
                f"opset {opset} is above {TSV_MAX_OPSET}, the newest the TensorRT 10 "
                "op table covers; older TensorRT (JetPack) may not parse it",
                severity="warning",
            )
        )

    inferred, err = _infer(model)
    if inferred is None:
        problems.append(LintProblem("checker", f"shape inference failed ({err}); type and shape checks skipped", severity="warning"))
    ctx = _Ctx(model, inferred)

    def visit(nodes: Iterable[onnx.NodeProto], where: str = "") -> None:
        for idx, node in enumerate(nodes):
            nid = where + _node_id(node, idx)
            if node.domain not in ALLOWED_DOMAINS:
                extra = (
                    " (ONNX Runtime contrib op; TensorRT cannot parse it)"
                    if node.domain == "com.microsoft"
                    else " (custom domain / plugin; not allowed in the deploy graph)"
                )
                problems.append(LintProblem("domain", f"op {node.domain}::{node.op_type}{extra}", nid, node.op_type))
                continue
            sup = table.get(node.op_type)
            if sup is None or not sup.supported:
                why = "not in the TensorRT 10 op table" if sup is None else "marked unsupported (N) in the TensorRT 10 op table"
                problems.append(LintProblem("unsupported_op", f"{node.op_type} is {why}", nid, node.op_type))
                continue
            problems.extend(_check_types(node, nid, ctx, sup))
            problems.extend(_check_restrictions(node, nid, ctx, opset))

    for gi, graph in enumerate(iter_graphs(model.graph)):
        visit(graph.node, "" if gi == 0 else f"{graph.name or 'subgraph'}/")
    for fn in model.functions:
        visit(fn.node, f"function {fn.domain}::{fn.name}/")

    problems.extend(_runtime_lengths(model))
    if check_output_shapes:
        problems.extend(_output_shapes(model, inferred))
    return problems


def _runtime_lengths(model: onnx.ModelProto) -> list[LintProblem]:
    """Range nodes whose length depends on tensor *values* (not only on shapes), e.g. the gated-head
    graph's row count: ONNX Runtime runs them, TensorRT cannot build them (its shape tensors must
    come from shapes and constants). A warning: such graphs are for ONNX Runtime only."""
    g = model.graph
    data = {i.name for i in g.input}  # values unknown until run time (an input default included)
    out = []
    for idx, node in enumerate(g.node):
        if node.op_type in ("Shape", "Size"):
            continue  # shape-derived: known to TensorRT at build/profile time
        if any(i in data for i in node.input if i):
            if node.op_type == "Range":
                out.append(
                    LintProblem(
                        "runtime_length",
                        "Range whose length depends on tensor values (gated heads?): "
                        "ONNX Runtime only, TensorRT needs a static-head export",
                        _node_id(node, idx),
                        node.op_type,
                        severity="warning",
                    )
                )
            data.update(o for o in node.output if o)
    return out


def check_onnx(path_or_model: str | Path | onnx.ModelProto, **kw) -> list[LintProblem]:
    """Raise OnnxLintError (listing every problem, warnings included) if lint_onnx finds an error;
    otherwise return the warnings."""
    problems = lint_onnx(path_or_model, **kw)
    if any(p.severity == "error" for p in problems):
        src = "<model>" if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
        raise OnnxLintError(src, problems)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m df2infer_export.lint",
        description="Check an ONNX deploy graph against TensorRT 10's parser and the static-shape contract.",
    )
    ap.add_argument("model", nargs="+", help="ONNX file(s)")
    ap.add_argument("--no-output-shapes", action="store_true", help="skip the static output shape check")
    args = ap.parse_args(argv)
    rc = 0
    for path in args.model:
        problems = lint_onnx(path, check_output_shapes=not args.no_output_shapes)
        n_err = sum(p.severity == "error" for p in problems)
        for p in problems:
            print(f"{path}: {p}")
        print(f"{path}: {'OK' if n_err == 0 else 'FAILED'} ({n_err} error(s), {len(problems) - n_err} warning(s))")
        rc = rc or (1 if n_err else 0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
