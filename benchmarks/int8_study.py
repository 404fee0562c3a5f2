"""INT8 study on the held-out synthetic split: precision variants, calibration, per-layer sensitivity.

    .venv/bin/python benchmarks/int8_study.py variants    [--images 200]   # recipes x calibration
    .venv/bin/python benchmarks/int8_study.py sensitivity [--images 200]   # un-quantize one unit at a time
    .venv/bin/python benchmarks/int8_study.py report                       # tables from the cache
    benchmarks/int8_modelopt.sh                                            # NVIDIA Model Optimizer's ONNX PTQ

Every INT8 file is made from the bundled FP32 graph (df2infer/models/default.onnx) by
df2infer_export.precision.to_int8_qdq, calibrated on the bundle's calibration split (seed 4242, never used in
training or evaluation); every row is scored through the runtime (Predictor -> predict_results ->
evaluate_predictions, conf 0.05, as `df2infer eval`) on the first --images images of the held-out split
(data/synth_val, seed 777; made if absent). Models, calibration ranges and scores are cached in
bench_out/int8_study/ (rows are keyed by name and image count), so a rerun only computes what is new.
The "s8 w8" rows are the pre-fix recipe, kept to show the collapse: they bypass the runtime's INT8
refusal on purpose. The rows' accuracy depends on the CPU (see the cpu_features line written with them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxruntime as ort  # noqa: E402

from df2infer.cpu_features import cpu_features  # noqa: E402

FP32 = ROOT / "df2infer" / "models" / "default.onnx"
VAL = ROOT / "data" / "synth_val"
WORK = ROOT / "bench_out" / "int8_study"
RESULTS = ROOT / "benchmarks" / "results" / "int8_study.json"
METRICS = ("box_AP", "mask_AP", "landmarks_visible_AP", "landmarks_all_AP", "retrieval_top10")
SCORED = ("box_AP", "mask_AP", "landmarks_all_AP")  # the sensitivity score: AP points, summed
CONVT = "/keypoint_predictor/upsample/upsample.0/ConvTranspose"
BOX_PREDICTOR = ["/box_predictor/cls_score/Gemm", "/box_predictor/bbox_pred/Gemm"]

# name -> to_int8_qdq keyword arguments (None: the FP32 file itself)
VARIANTS: dict[str, dict | None] = {
    "fp32": None,
    "s8 w8 (pre-fix recipe)": dict(weight_bits=8, activations="int8", chain_op_types=()),
    "s8 w8, float reference (ORT_DISABLE_ALL)": dict(weight_bits=8, activations="int8", chain_op_types=()),
    "s8 w7": dict(weight_bits=7, activations="int8", chain_op_types=()),
    "u8 w7": dict(weight_bits=7, activations="uint8", chain_op_types=()),
    "s8 w7 chain": dict(weight_bits=7, activations="int8"),
    "u8 w7 chain": dict(weight_bits=7, activations="uint8"),
    "u8 w7 chain, ConvTranspose float, minmax 64": dict(weight_bits=7, activations="uint8", keep_float_nodes=[CONVT]),
    "u8 w7 chain, ConvTranspose float, minmax 16": dict(weight_bits=7, activations="uint8", keep_float_nodes=[CONVT], num_images=16),
    "u8 w7 chain, ConvTranspose float, percentile 99.999": dict(
        weight_bits=7, activations="uint8", keep_float_nodes=[CONVT], method="percentile", percentile=99.999
    ),
    "u8 w7 chain, ConvTranspose float, percentile 99.99": dict(
        weight_bits=7, activations="uint8", keep_float_nodes=[CONVT], method="percentile", percentile=99.99
    ),
    "u8 w7 chain, ConvTranspose float, entropy": dict(weight_bits=7, activations="uint8", keep_float_nodes=[CONVT], method="entropy"),
    # stage 2 of the sensitivity analysis: the box predictor (the most sensitive group) kept float
    "u8 w7 chain, ConvTranspose + box predictor float": dict(weight_bits=7, activations="uint8", keep_float_nodes=[CONVT] + BOX_PREDICTOR),
}
# the bundled recipe (export/bundle.py) and its calibration: method and set size
_BUNDLED = dict(
    weight_bits=7,
    activations="uint8",
    keep_float_nodes=[CONVT] + BOX_PREDICTOR + ["/box_head/fc6/Gemm", "/box_head/fc7/Gemm", "/keypoint_predictor/MatMul"],
)
VARIANTS.update(
    {
        "bundled recipe, minmax 64": dict(_BUNDLED),
        "bundled recipe, minmax 16": dict(_BUNDLED, num_images=16),
        "bundled recipe, percentile 99.999, 64": dict(_BUNDLED, method="percentile", percentile=99.999),
        # TensorRT's form (symmetric s8 activations) with the same layers float
        "s8 w7 chain (TensorRT form), same 6 layers float": dict(_BUNDLED, activations="int8"),
    }
)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def calibration_dir() -> Path:
    from df2infer_export.bundle import calibration_images

    folder = WORK / "calibration"
    if not (folder / "image").is_dir():
        calibration_images(folder)
    return folder / "image"


def build(name: str, kw: dict) -> Path:
    from df2infer_export.precision import to_int8_qdq

    out = WORK / "models" / f"{_slug(name)}.onnx"
    if not out.exists():
        kw = dict(kw)
        kw.setdefault("num_images", 64)
        to_int8_qdq(FP32, out, calibration_dir(), cache=WORK / "calibration_cache.json", **kw)
    return out


def dataset(n: int):
    from df2infer.data import load_dataset

    if not (VAL / "annos").is_dir():
        from df2infer.synth.generator import generate

        generate(VAL, 600, 777, log=lambda *a, **k: None)
    ds = load_dataset(VAL)
    return type(ds)(ds.root, ds.images[:n]) if n else ds


def _db() -> dict:
    f = WORK / "scores.json"
    return json.loads(f.read_text()) if f.exists() else {}


def evaluate(name: str, path: Path, n: int, *, float_reference: bool = False) -> dict:
    from df2infer.api import Predictor
    from df2infer.backends import onnxruntime_backend as B
    from df2infer.eval import evaluate_predictions
    from df2infer.eval.predict import predict_results, summarize

    key = f"{name}|{n}"
    db = _db()
    if key in db:
        return db[key]
    check = B.check_int8_cpu
    B.check_int8_cpu = lambda *a: None  # the pre-fix rows measure the refused case on purpose
    try:
        backend = B.OnnxRuntimeBackend(path, "cpu")
    finally:
        B.check_int8_cpu = check
    if float_reference:  # Q/DQ run op by op in float: what exact INT8 kernels (VNNI, ARM) compute
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        backend.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ds = dataset(n)
    t = time.perf_counter()
    res = predict_results(Predictor(backend), ds, conf=0.05)
    r = evaluate_predictions(ds, res, breakdown=False)
    headline = summarize(r)
    got = {**{k: headline[k] for k in METRICS}, "predict_s": round(time.perf_counter() - t, 1)}
    db = _db()
    db[key] = got
    (WORK / "scores.json").write_text(json.dumps(db, indent=1))
    return got


def row(name: str, got: dict, ref: dict | None) -> str:
    cells = [f"{got[k]:.3f}" for k in METRICS]
    if ref is not None:
        cells += [f"{100 * (got[k] - ref[k]):+.1f}" for k in METRICS[:4]]
    return f"| {name} | " + " | ".join(cells) + " |"


GROUPS = {  # sensitivity groups: node-name prefixes of the quantized layers (predictors first)
    "box predictor (cls_score, bbox_pred)": ("/box_predictor",),
    "RPN predictors (cls_logits, bbox_pred)": ("/head/cls_logits", "/head/bbox_pred"),
    "keypoint predictor (deconv, MatMul)": ("/keypoint_predictor",),
    "mask predictor": ("/mask_predictor",),
    "box head fc6, fc7": ("/box_head",),
    "FPN": ("/backbone/fpn",),
    "RPN head conv": ("/head/conv",),
    "keypoint head convs": ("/keypoint_head",),
    "mask head convs": ("/mask_head",),
    "matching head": ("/match_head",),
    "backbone stem + layer1": ("/backbone/body/stem", "/backbone/body/layer1"),
    "backbone layer2": ("/backbone/body/layer2",),
    "backbone layer3": ("/backbone/body/layer3",),
    "backbone layer4": ("/backbone/body/layer4",),
}


def units(fp32_path: Path, level: str = "layers") -> dict[str, list[str]]:
    """Sensitivity units: GROUPS, or single layers (nodes sharing one weight, the RPN head on each
    FPN level, counted as one unit)."""
    import onnx

    m = onnx.load(str(fp32_path))
    heavy = [
        n
        for n in m.graph.node
        if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and not n.name.startswith(("box_decode/", "nms/", "postproc/"))
    ]
    if level == "groups":
        out = {g: [n.name for n in heavy if n.name.startswith(pre)] for g, pre in GROUPS.items()}
        missing = [n.name for n in heavy if not any(n.name in v for v in out.values())]
        assert not missing, f"layers in no group: {missing}"
        return out
    by_weight: dict[str, list[str]] = {}
    for n in heavy:
        by_weight.setdefault(n.input[1], []).append(n.name)
    return {names[0]: names for names in by_weight.values()}


def cmd_variants(args) -> None:
    ref = evaluate("fp32", FP32, args.images)
    print(f"| variant ({args.images} held-out images) | " + " | ".join(METRICS) + " | d box | d mask | d lm vis | d lm all |")
    print(row("fp32", ref, None), flush=True)
    only = set(args.units.split(";")) if args.units else None
    for name, kw in VARIANTS.items():
        if kw is None or (only is not None and name not in only):
            continue
        p = build(name, kw)
        print(row(name, evaluate(name, p, args.images, float_reference="float reference" in name), ref), flush=True)


def cmd_sensitivity(args) -> None:
    base_name = args.base
    base_kw = VARIANTS[base_name]
    ref = evaluate("fp32", FP32, args.images)
    base = evaluate(base_name, build(base_name, base_kw), args.images)
    rows = []
    only = set(args.units.split(";")) if args.units else None
    for first, names in units(FP32, args.level).items():
        if only is not None and first not in only:
            continue
        name = f"{base_name} + float {first}"
        kw = dict(base_kw)
        kw["keep_float_nodes"] = sorted(set(kw.get("keep_float_nodes", [])) | set(names))
        if set(names) <= set(base_kw.get("keep_float_nodes", [])):
            continue
        got = evaluate(name, build(name, kw), args.images)
        gain = sum(100 * (got[k] - base[k]) for k in SCORED)
        rows.append((gain, first, len(names), got))
        print(f"{gain:+6.2f}  {first} ({len(names)} nodes)  " + row("", got, ref), flush=True)
    rows.sort(key=lambda r: -r[0])
    print("\nranked (AP points recovered, box + mask + landmarks vis+occ):")
    for gain, first, _, _ in rows:
        print(f"{gain:+6.2f}  {first}")


def cmd_report(args) -> None:
    """benchmarks/results/int8_study.json (every cached row) and .md (the tables)."""
    db = _db()
    out = {"about": __doc__.split("\n\n")[0], "cpu_features": cpu_features().summary(), "onnxruntime": ort.__version__, "rows": db}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    n = args.images
    ref = db.get(f"fp32|{n}")
    if ref is None:
        print(f"wrote {RESULTS} ({len(db)} rows); no fp32 row at {n} images for the tables")
        return
    head = "| row | " + " | ".join(METRICS) + " | d box | d mask | d lm vis | d lm all |\n|" + "---|" * 10
    L = [
        f"# INT8 study ({n} held-out images; {cpu_features().summary()}; onnxruntime {ort.__version__})",
        "",
        "AP points against FP32 (d). Rows and commands: benchmarks/int8_study.py.",
        "",
        "## Recipes and calibration",
        "",
        head,
        row("fp32", ref, None),
    ]
    sens = [k for k in db if " + float " in k]
    for k, v in db.items():
        if k.endswith(f"|{n}") and k != f"fp32|{n}" and k not in sens:
            L.append(row(k.rsplit("|", 1)[0], v, ref))
    for base in sorted({k.split(" + float ")[0] for k in sens}):
        b = db.get(f"{base}|{n}")
        if b is None:
            continue
        L += [
            "",
            f"## Sensitivity: one group kept float on top of `{base}`",
            "",
            "| group kept float | gain (box + mask + lm all, points) | " + " | ".join(METRICS) + " |",
            "|" + "---|" * 7,
        ]
        items = []
        for k in sens:
            if k.startswith(base + " + float ") and k.endswith(f"|{n}"):
                v = db[k]
                gain = sum(100 * (v[m] - b[m]) for m in SCORED)
                items.append((gain, k.split(" + float ")[1].rsplit("|", 1)[0], v))
        for gain, name, v in sorted(items, key=lambda t: -t[0]):
            L.append(f"| {name} | {gain:+.2f} | " + " | ".join(f"{v[m]:.3f}" for m in METRICS) + " |")
    RESULTS.with_suffix(".md").write_text("\n".join(L) + "\n")
    print(f"wrote {RESULTS} and {RESULTS.with_suffix('.md')} ({len(db)} rows)")


def cmd_modelopt(args) -> None:
    """Score an INT8 ONNX written by NVIDIA Model Optimizer (benchmarks/int8_modelopt.sh) like the other
    rows: it drops the contract and types the optional min_head_score input FP16, so the FP32 file's
    metadata and input are put back first. Scored as its float reference (ORT_DISABLE_ALL): its
    weights span [-127, 127], which this runtime refuses on x86 without VNNI."""
    import onnx

    from df2infer.artifact import INT8_WEIGHT_RANGE_KEY, onnx_metadata, read_onnx_contract, write_onnx_contract, write_onnx_metadata
    from df2infer_export.precision import weight_range

    src, m = onnx.load(str(FP32)), onnx.load(args.path)
    c = read_onnx_contract(src, str(FP32))
    c.precision = "int8"
    c.model = dict(c.model, **{INT8_WEIGHT_RANGE_KEY: list(weight_range(m))}, int8_producer="nvidia-modelopt ONNX PTQ")
    write_onnx_metadata(m, onnx_metadata(src))  # the FP32 file's metadata, then its contract made INT8
    write_onnx_contract(m, c, args.path)
    src_inits = {t.name: t for t in src.graph.initializer}
    have = {i.name for i in m.graph.input}
    for i in src.graph.input:
        if i.name not in have:
            m.graph.input.append(i)
    for t in m.graph.initializer:
        if t.name in {i.name for i in src.graph.input} and t.name in src_inits:
            t.CopyFrom(src_inits[t.name])
    out = WORK / "models" / f"{_slug(args.name)}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out))
    ref = evaluate("fp32", FP32, args.images)
    name = f"{args.name}, float reference (ORT_DISABLE_ALL)"
    print(row(name, evaluate(name, out, args.images, float_reference=True), ref))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("variants", "sensitivity", "report", "modelopt"))
    p.add_argument("path", nargs="?", help="modelopt: the INT8 ONNX Model Optimizer wrote")
    p.add_argument("--name", default="nvidia-modelopt int8", help="modelopt: the row's name")
    p.add_argument("--images", type=int, default=200, help="held-out images scored per row (default %(default)s)")
    p.add_argument("--level", choices=("groups", "layers"), default="groups", help="sensitivity units (default %(default)s)")
    p.add_argument("--units", help="sensitivity: only these units (';'-separated names)")
    p.add_argument("--base", default="u8 w7 chain, ConvTranspose float, minmax 64", help="sensitivity: the recipe varied")
    args = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_features().summary()}; onnxruntime {ort.__version__}", file=sys.stderr)
    {"variants": cmd_variants, "sensitivity": cmd_sensitivity, "report": cmd_report, "modelopt": cmd_modelopt}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
