"""The CPU path and the INT8 file on aarch64 under qemu-user, against x86: the Python side of benchmarks/arm_check.sh.

    python benchmarks/arm_check.py data     --out DIR --images N            # the synthetic set (host)
    python benchmarks/arm_check.py predict  --model fp32|int8 --data DIR --images N --out JSON   (host or aarch64 root)
    python benchmarks/arm_check.py features --out JSON                      # cpu_features() + the INT8 refusal (aarch64 root)
    python benchmarks/arm_check.py resize   --out NPZ                       # OpenCV's resizes of seeded images (both sides)
    python benchmarks/arm_check.py report   --work DIR                      # compare, score, write benchmarks/results/

`predict` runs the same code on both sides: df2infer.load(model, device="cpu", backend=BACKEND).stream(conf=0.05, as
`df2infer eval`); ONNX Runtime on both sides (on x86 the default for INT8 files is OpenVINO when installed: another engine)
over the first N images, writing every detection (boxes, scores, labels, mask RLEs, landmarks) and its run time.
`report` (host) compares the aarch64 detections with the x86 ones and scores every run against the set's ground truth
(box / mask / landmark AP, as df2infer.eval), with a paired bootstrap over images for the noise of INT8 minus FP32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEED = 777  # the held-out synthetic split's seed (benchmarks/int8_study.py); never used in training
CONF = 0.05  # the evaluation threshold (`df2infer eval`)
METRICS = {"box": "bbox", "mask": "segm", "landmarks_all": "keys"}
BOX_TOL = 1e-3  # pixels: the issue's tolerance for FP32 on aarch64 against x86
BACKEND = "onnxruntime"  # the same engine on both machines: what differs is the CPU


def _model_path(name: str) -> str | None:
    import df2infer

    models = Path(df2infer.__file__).parent / "models"
    return {"fp32": None, "int8": str(models / "default.int8.onnx")}[name]


def cmd_data(a) -> None:
    from df2infer.synth.generator import generate

    if (Path(a.out) / "annos").is_dir() and len(list((Path(a.out) / "annos").glob("*.json"))) == a.images:
        print(f"arm_check: reusing {a.out}")
        return
    generate(a.out, a.images, SEED, log=None)


def code_sha256() -> str:
    """One hash of the installed df2infer package's Python files: a run is reused only with the same code."""
    import hashlib

    import df2infer

    pkg = Path(df2infer.__file__).parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cmd_predict(a) -> None:
    import onnxruntime as ort

    import df2infer
    from df2infer.artifact import file_sha256
    from df2infer.cpu_features import cpu_features
    from df2infer.eval.results import df2_result_entries

    model = _model_path(a.model)
    sha = file_sha256(model if model is not None else Path(df2infer.__file__).parent / "models" / "default.onnx")
    code = code_sha256()
    if a.reuse and Path(a.out).is_file():
        old = json.loads(Path(a.out).read_text())
        key = (old.get("model_sha256"), old.get("code_sha256"), len(old["images"]), old.get("qemu_cpu"))
        if key == (sha, code, a.images, os.environ.get("QEMU_CPU")):
            print(f"arm_check: reusing {a.out} (same model file, code, {a.images} images, QEMU_CPU)")
            return
    paths = sorted(str(p) for p in (Path(a.data) / "image").glob("*.jpg"))[: a.images]
    if len(paths) < a.images:
        raise SystemExit(f"arm_check predict: {a.data}/image has {len(paths)} images, expected at least {a.images}")
    predictor = df2infer.load(model, device="cpu", backend=BACKEND)
    if a.warmup:  # session start-up is not per-image time (skipped under emulation, where one image costs ~20 s)
        predictor.predict(paths[0], conf=CONF)
    images, entries = [], {k: [] for k in METRICS.values()}
    t0 = time.perf_counter()
    for path, det in zip(paths, predictor.stream(paths, conf=CONF, embeddings=False)):
        if not det.ok:
            raise SystemExit(f"arm_check predict: {path}: {det.message}")
        image_id = int(Path(path).stem)
        images.append(
            {
                "image_id": image_id,
                "boxes": det.boxes.tolist(),
                "scores": det.scores.tolist(),
                "labels": det.labels.tolist(),
                "masks": det.rle() if det.masks is not None else None,
                "landmarks": [lm.tolist() for lm in det.landmarks] if det.landmarks is not None else None,
            }
        )
        for k, v in df2_result_entries(det, image_id).items():
            entries[k] += v
        if a.progress:
            print(f"  {a.model} {len(images)}/{len(paths)}  {time.perf_counter() - t0:.0f} s", flush=True)
    out = {
        "model": a.model,
        "model_sha256": sha,
        "code_sha256": code,
        "machine": platform.machine(),
        "qemu_cpu": os.environ.get("QEMU_CPU"),
        "cpu_features": cpu_features().summary(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "seconds_per_image": (time.perf_counter() - t0) / len(paths),
        "images": images,
        "results": entries,
    }
    Path(a.out).write_text(json.dumps(out))
    print(f"arm_check: {a.model} on {len(paths)} images, {out['seconds_per_image']:.2f} s/image ({out['machine']}, {out['cpu_features']})")


def cmd_stages(a) -> None:
    """Where x86 and aarch64 part: the decoded image, the letterboxed input, and the FP32 graph's raw outputs on that
    input and (with --inputs-from, another machine's npz) on the other machine's input, for the first N images."""
    import hashlib

    import df2infer
    from df2infer.images import read_image
    from df2infer.ops.letterbox import to_input_batch

    predictor = df2infer.load(_model_path(a.model), device="cpu", backend=BACKEND)
    backend = predictor.backend
    other = np.load(a.inputs_from) if a.inputs_from else None
    paths = sorted(str(p) for p in (Path(a.data) / "image").glob("*.jpg"))[: a.images]
    out: dict[str, np.ndarray] = {}
    for i, path in enumerate(paths):
        img = read_image(path)
        batch, _ = to_input_batch([img], backend.contract)
        out[f"{i}/decoded_md5"] = np.array(hashlib.md5(img.tobytes()).hexdigest())
        out[f"{i}/input"] = batch
        for k, v in backend.run(batch).items():
            out[f"{i}/own/{k}"] = v
        if other is not None:
            for k, v in backend.run(other[f"{i}/input"]).items():
                out[f"{i}/other/{k}"] = v
    np.savez(a.out, **out)
    print(f"arm_check: stages of {len(paths)} images -> {a.out}")


# (source h, w) -> (target h, w) of the letterbox's kind (320 x 320 canvas: exact 2x, odd, up) and seeded random ones.
RESIZE_PAIRS = [
    ((640, 640), (320, 320)),
    ((480, 640), (240, 320)),
    ((720, 1280), (180, 320)),
    ((333, 517), (206, 320)),
    ((120, 90), (320, 240)),
]


def cmd_resize(a) -> None:
    """OpenCV's uint8 bilinear resizes on this machine, INTER_LINEAR_EXACT (the letterbox's) and INTER_LINEAR, of
    seeded uniform-noise BGR images (every rounding shows), for `report` to compare value by value across machines."""
    import cv2

    rng = np.random.default_rng(25)
    pairs = RESIZE_PAIRS + [((int(h), int(w)), (int(nh), int(nw))) for h, w, nh, nw in rng.integers(1, 321, (a.pairs, 4))]
    out: dict[str, np.ndarray] = {"opencv": np.array(cv2.__version__), "pairs": np.array([[*s, *d] for s, d in pairs])}
    for i, ((h, w), (nh, nw)) in enumerate(pairs):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out[f"{i}/exact"] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR_EXACT)
        out[f"{i}/linear"] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    np.savez(a.out, **out)
    print(f"arm_check: {len(pairs)} resizes (OpenCV {cv2.__version__}, QEMU_CPU={os.environ.get('QEMU_CPU')}) -> {a.out}")


def compare_resizes(x86_npz: Path, arm_npz: Path) -> dict:
    """Per interpolation: how many of the resizes differ between the machines, and how many values (of how many)."""
    x, a = np.load(x86_npz), np.load(arm_npz)
    if not np.array_equal(x["pairs"], a["pairs"]):
        raise SystemExit(f"arm_check: {x86_npz} and {arm_npz} hold different resize sizes")
    out: dict = {"opencv_x86": str(x["opencv"]), "opencv_arm": str(a["opencv"]), "resizes": len(x["pairs"])}
    for kind in ("exact", "linear"):
        diffs = [np.abs(x[f"{i}/{kind}"].astype(int) - a[f"{i}/{kind}"]) for i in range(len(x["pairs"]))]
        out[kind] = {
            "resizes_differing": sum(int(d.any()) for d in diffs),
            "values_differing": sum(int((d > 0).sum()) for d in diffs),
            "values": sum(d.size for d in diffs),
            "max_diff": max(int(d.max(initial=0)) for d in diffs),
        }
    return out


def cmd_features(a) -> None:
    import df2infer
    from df2infer.artifact import int8_weight_range, read_onnx_contract
    from df2infer.cpu_features import cpu_features, int8_refusal, read_cpuinfo, read_hwcaps

    int8 = _model_path("int8")
    feats = cpu_features()
    hw = read_hwcaps()
    cpuinfo = read_cpuinfo() or ""
    wr = int8_weight_range(read_onnx_contract(int8), int8)
    out = {
        "qemu_cpu": os.environ.get("QEMU_CPU"),
        "machine": platform.machine(),
        "hwcap": None if hw is None else hex(hw[0]),
        "hwcap2": None if hw is None else hex(hw[1]),
        "features": feats.as_dict(),
        "summary": feats.summary(),
        "proc_cpuinfo_is_x86": any(line.startswith("flags") for line in cpuinfo.splitlines()),
        "int8_weight_range": list(wr) if wr is not None else None,
        "int8_refusal_bundled": int8_refusal(wr, feats),
        "int8_refusal_8bit": int8_refusal([-127, 127], feats),
        "int8_loads": True,
    }
    try:
        df2infer.load(int8, device="cpu", backend=BACKEND)
    except Exception as e:  # recorded, not swallowed: the report fails the check on it
        out["int8_loads"] = f"{type(e).__name__}: {e}"
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"arm_check: features under QEMU_CPU={out['qemu_cpu']}: {out['summary']} (hwcap {out['hwcap']}, hwcap2 {out['hwcap2']})")


# ---------------------------------------------------------------- report (host)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def compare_detections(ref: dict, got: dict, box_tol: float | None) -> dict:
    """Per image: same count and labels (in score order), and the largest box / score / landmark difference and the
    smallest mask IoU of corresponding items. `box_tol`: also say whether every box is within it."""
    from pycocotools import mask as mask_util

    by_id = {im["image_id"]: im for im in got["images"]}
    same_labels = 0
    box = score = lm = 0.0
    landmarks = landmarks_moved = 0
    min_iou = 1.0
    n_images = 0
    differing: list[int] = []
    for r in ref["images"]:
        g = by_id.get(r["image_id"])
        if g is None:
            continue
        n_images += 1
        if r["labels"] != g["labels"]:
            differing.append(r["image_id"])
            continue
        same_labels += 1
        if not r["labels"]:
            continue
        box = max(box, float(np.abs(np.array(r["boxes"]) - np.array(g["boxes"])).max()))
        score = max(score, float(np.abs(np.array(r["scores"]) - np.array(g["scores"])).max()))
        if r["masks"] and g["masks"]:
            ious = [float(mask_util.iou([gm], [rm], [0])[0][0]) for rm, gm in zip(r["masks"], g["masks"])]
            min_iou = min(min_iou, *ious)
        if r["landmarks"] and g["landmarks"]:
            for x, y in zip(r["landmarks"], g["landmarks"]):
                d = np.abs(np.array(x)[:, :2] - np.array(y)[:, :2]).max(axis=1)  # per landmark, pixels
                lm = max(lm, float(d.max()))
                landmarks += d.size
                landmarks_moved += int((d > 1.0).sum())
    out = {
        "images": n_images,
        "images_same_labels": same_labels,
        "images_differing": differing,
        "max_box_diff_px": box,
        "max_score_diff": score,
        "min_mask_iou": min_iou,
        "max_landmark_diff_px": lm,
        "landmarks": landmarks,
        "landmarks_moved_over_1px": landmarks_moved,
    }
    if box_tol is not None:
        out["pass"] = same_labels == n_images and box <= box_tol
    return out


def match_detections(ref: dict, got: dict, conf: float = 0.3, iou: float = 0.5) -> dict:
    """How many of `ref`'s detections scoring >= `conf` (predict()'s default) have a detection of the same label in `got`
    with box IoU >= `iou` (greedy, by descending score), and how far the matched boxes and scores are apart."""
    from df2infer.ops.boxes import box_iou

    by_id = {im["image_id"]: im for im in got["images"]}
    n_ref = matched = extra = 0
    ious: list[float] = []
    score_diff = 0.0
    for r in ref["images"]:
        g = by_id.get(r["image_id"])
        if g is None:
            continue
        rk = [i for i, sc in enumerate(r["scores"]) if sc >= conf]
        gk = [i for i, sc in enumerate(g["scores"]) if sc >= conf]
        used: set[int] = set()
        for i in rk:
            n_ref += 1
            cands = [j for j in gk if j not in used and g["labels"][j] == r["labels"][i]]
            if not cands:
                continue
            ov = box_iou(np.array([r["boxes"][i]]), np.array([g["boxes"][j] for j in cands]), np.float64)[0]
            k = int(np.argmax(ov))
            if ov[k] >= iou:
                used.add(cands[k])
                matched += 1
                ious.append(float(ov[k]))
                score_diff = max(score_diff, abs(r["scores"][i] - g["scores"][cands[k]]))
        extra += len(gk) - len(used)
    return {
        "conf": conf,
        "reference_detections": n_ref,
        "matched": matched,
        "unmatched_in_other": extra,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "min_iou": float(np.min(ious)) if ious else None,
        "max_score_diff": score_diff,
    }


def compare_stages(x86_npz: Path, arm_npz: Path) -> dict:
    """Per image: is the decoded image the same, how many input values differ (and by how much), and the largest
    difference of each raw graph output on each machine's own input and on the same (x86) input."""
    x, a = np.load(x86_npz), np.load(arm_npz)
    images = sorted({int(k.split("/")[0]) for k in x.files} & {int(k.split("/")[0]) for k in a.files})
    out: dict = {"images": []}
    worst_same_input: dict[str, float] = {}
    for i in images:
        xi, ai = x[f"{i}/input"], a[f"{i}/input"]
        rec: dict = {
            "decoded_identical": str(x[f"{i}/decoded_md5"]) == str(a[f"{i}/decoded_md5"]),
            "input_values_differing": int((xi != ai).sum()),
            "input_values": int(xi.size),
            "input_max_diff": float(np.abs(xi - ai).max()),
            "own_input": {},
            "same_input": {},
        }
        for k in sorted(key.split("/", 2)[2] for key in x.files if key.startswith(f"{i}/own/")):
            ref = x[f"{i}/own/{k}"].astype(np.float64)
            for side, got in (("own_input", a[f"{i}/own/{k}"]), ("same_input", a[f"{i}/other/{k}"])):
                rec[side][k] = float(np.abs(ref - got).max()) if ref.shape == got.shape and ref.size else None
            if rec["same_input"][k] is not None:
                worst_same_input[k] = max(worst_same_input.get(k, 0.0), rec["same_input"][k])
        out["images"].append(rec)
    out["same_input_max_diff"] = worst_same_input
    out["pass"] = all(r["same_input"].get("labels") == 0 for r in out["images"]) and worst_same_input.get("boxes", 1.0) <= BOX_TOL
    return out


def _score(dataset, runs: list[dict], ids: list[int]) -> list[dict[str, float]]:
    """AP (points) of each run on the images `ids` (repeats allowed: a bootstrap draw), one dict per run."""
    import dataclasses

    from df2infer.eval.api import evaluate_predictions

    by_id = {im.image_id: im for im in dataset.images}
    images, remap = [], []
    for new_id, old in enumerate(ids, 1):
        images.append(dataclasses.replace(by_id[old], image_id=new_id))
        remap.append((old, new_id))
    out = []
    for run in runs:
        res = {}
        for kind in METRICS.values():
            grouped: dict[int, list[dict]] = {}
            for e in run["results"][kind]:
                grouped.setdefault(e["image_id"], []).append(e)
            res[kind] = [dict(e, image_id=new) for old, new in remap for e in grouped.get(old, [])]
        rep = evaluate_predictions(images, res, breakdown=False, validate=False)
        out.append({m: 100.0 * rep[m]["overall"]["AP"] for m in METRICS})
    return out


def score_runs(data: Path, runs: dict[str, dict], references: list[str], bootstrap: int, seed: int = 0) -> dict:
    """AP of every run on the images of the first reference (all runs cover them), and each run minus each reference,
    with the sd of that difference over `bootstrap` paired draws of the images (the same draw for every run)."""
    from df2infer.data.annotations import load_dataset

    dataset = load_dataset(data)
    ids = sorted({im["image_id"] for im in runs[references[0]]["images"]})
    names = list(runs)
    ap = dict(zip(names, _score(dataset, [runs[n] for n in names], ids)))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for _ in range(bootstrap):
        pick = [ids[i] for i in rng.integers(0, len(ids), len(ids))]
        for n, sc in zip(names, _score(dataset, [runs[n] for n in names], pick)):
            draws[n].append(sc)
    out: dict = {"images": len(ids), "bootstrap_draws": bootstrap, "ap": ap, "delta": {}}
    for ref in references:
        for n in names:
            if n == ref or n in references[: references.index(ref)]:
                continue
            d = {m: ap[n][m] - ap[ref][m] for m in METRICS}
            sd = {m: float(np.std([x[m] - y[m] for x, y in zip(draws[n], draws[ref])], ddof=1)) if bootstrap > 1 else None for m in METRICS}
            out["delta"][f"{n} - {ref}"] = {"delta": d, "bootstrap_sd": sd}
    return out


def cmd_report(a) -> None:
    work = Path(a.work)
    runs = {p.stem: _load(p) for p in sorted(work.glob("pred_*.json"))}
    feats = {p.stem.removeprefix("features_"): _load(p) for p in sorted(work.glob("features_*.json"))}
    x86_fp32, x86_int8 = runs["pred_x86_fp32"], runs["pred_x86_int8"]
    report: dict = {
        "host": {"cpu_features": x86_fp32["cpu_features"], "onnxruntime": x86_fp32["onnxruntime"], "load": a.load},
        "aarch64": {"onnxruntime": runs["pred_arm_fp32"]["onnxruntime"], "python": runs["pred_arm_fp32"]["python"]},
        "seconds_per_image": {n.removeprefix("pred_"): round(r["seconds_per_image"], 3) for n, r in runs.items()},
        "fp32_arm_vs_x86": compare_detections(x86_fp32, runs["pred_arm_fp32"], BOX_TOL),
        "fp32_stages": compare_stages(work / "stages_x86.npz", work / "stages_arm_max.npz"),
        "int8_stages": compare_stages(work / "stages_int8_x86.npz", work / "stages_int8_arm_max.npz"),
        "int8": {},
        "features": feats,
        "resize": {
            p.stem.removeprefix("resize_arm_"): compare_resizes(work / "resize_x86.npz", p) for p in sorted(work.glob("resize_arm_*.npz"))
        },
    }
    int8_runs = {n: r for n, r in runs.items() if n.startswith("pred_arm_int8_")}
    for n, r in int8_runs.items():
        cpu = n.removeprefix("pred_arm_int8_")
        report["int8"][cpu] = {
            "qemu_cpu": r["qemu_cpu"],
            "cpu_features": r["cpu_features"],
            "vs_x86_int8": compare_detections(x86_int8, r, None),
            "matched_vs_x86_int8": match_detections(x86_int8, r),
            "matched_vs_x86_fp32": match_detections(x86_fp32, r),
        }
    names = sorted(int8_runs)
    if len(names) > 1:
        report["int8_between_qemu_cpus"] = {
            f"{names[0]} vs {n}": compare_detections(int8_runs[names[0]], int8_runs[n], None) for n in names[1:]
        }
    # AP. The host set: x86 INT8 minus x86 FP32 on every image (cheap here, enough images to resolve 1 point).
    # The emulated set (the first INT8 images): aarch64 INT8 minus x86 INT8 (paired and nearly identical, so
    # little noise) and minus x86 FP32 (FP32 on aarch64 being x86's, check 1).
    report["ap_host_set"] = score_runs(Path(a.data), {"x86 fp32": x86_fp32, "x86 int8": x86_int8}, ["x86 fp32"], a.host_bootstrap)
    ap_ids = {im["image_id"] for im in next(iter(int8_runs.values()))["images"]}
    arm = {f"aarch64 int8 ({n.removeprefix('pred_arm_int8_')})": r for n, r in int8_runs.items()}
    scored = {"x86 fp32": x86_fp32, "x86 int8": x86_int8, **arm}
    scored = {k: _restrict(v, ap_ids) for k, v in scored.items()}
    report["ap_emulated_set"] = score_runs(Path(a.data), scored, ["x86 fp32", "x86 int8", *list(arm)[:1]], a.bootstrap)
    report["minutes"] = a.minutes
    checks = {
        "fp32 graph, same input tensor: aarch64 = x86 (labels, boxes within 1e-3 px)": report["fp32_stages"]["pass"],
        "fp32 from the JPEG (predict): aarch64 = x86 (labels, boxes within 1e-3 px)": report["fp32_arm_vs_x86"]["pass"],
        "features read from the hwcaps under every QEMU_CPU": all(_features_ok(f) for f in feats.values()),
        "OpenCV's INTER_LINEAR_EXACT (the letterbox's resize): aarch64 = x86 bit for bit under every QEMU_CPU": bool(report["resize"])
        and all(r["exact"]["values_differing"] == 0 for r in report["resize"].values()),
    }
    report["checks"] = checks
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(report))
    print(out.with_suffix(".md").read_text())
    if not all(checks.values()):
        raise SystemExit(f"arm_check: failed: {[k for k, v in checks.items() if not v]}")


def _restrict(run: dict, ids: set[int]) -> dict:
    return {
        **run,
        "images": [im for im in run["images"] if im["image_id"] in ids],
        "results": {k: [e for e in v if e["image_id"] in ids] for k, v in run["results"].items()},
    }


# What each qemu CPU model grants (QEMU's target/arm/cpu64.c): the dot products the check expects to see.
EXPECTED_FEATURES = {"max": (True, True), "cortex-a76": (True, False), "neoverse-n1": (True, False), "cortex-a57": (False, False)}


def _features_ok(f: dict) -> bool:
    want = EXPECTED_FEATURES.get(f["qemu_cpu"])
    got = (f["features"].get("dotprod"), f["features"].get("i8mm"))
    refusals = (f["int8_refusal_8bit"], f["int8_refusal_bundled"])
    return want is not None and got == want and refusals == (None, None) and f["int8_loads"] is True


def _markdown(r: dict) -> str:
    L = [
        "# aarch64 under qemu-user against x86 (benchmarks/arm_check.sh)",
        "",
        f"- Host: {r['host']['cpu_features']}, onnxruntime {r['host']['onnxruntime']}; load {r['host']['load']}",
        f"- aarch64: Debian bookworm userland under qemu-aarch64 (user mode), Python {r['aarch64']['python']}, "
        f"onnxruntime {r['aarch64']['onnxruntime']} (aarch64 wheel)",
        "- Seconds per image are EMULATED time (qemu's translation of every ARM instruction on a loaded x86 host): they say "
        "nothing about ARM speed.",
        "",
        "## Checks",
        "",
        *[f"- {'PASS' if v else 'FAIL'}: {k}" for k, v in r["checks"].items()],
        "",
        "## OpenCV's resize: aarch64 against x86 (seeded uniform-noise images, `arm_check.py resize`)",
        "",
        "| QEMU_CPU | OpenCV x86 / aarch64 | interpolation | resizes differing | values differing | max diff |",
        "|---|---|---|---|---|---|",
        *[
            f"| {cpu} | {v['opencv_x86']} / {v['opencv_arm']} | {name} | {v[k]['resizes_differing']} of {v['resizes']} | "
            f"{v[k]['values_differing']} of {v[k]['values']} | {v[k]['max_diff']} |"
            for cpu, v in r["resize"].items()
            for k, name in (("exact", "INTER_LINEAR_EXACT (the letterbox's)"), ("linear", "INTER_LINEAR"))
        ],
        "",
        "## FP32: aarch64 against x86, same images",
        "",
        f"df2infer.load().predict from the JPEG files: {_cmp_line(r['fp32_arm_vs_x86'])}",
        "",
        "Stage by stage (`arm_check.py stages`: the decoded image, the letterboxed input tensor, the graph's raw outputs on "
        "each machine's own input and on the x86 input tensor):",
        "",
        "| image | decoded image identical | input values differing (max diff) | boxes: own input / same input | scores | masks | "
        "landmark heatmaps |",
        "|---|---|---|---|---|---|---|",
        *[_stage_row(i, rec) for i, rec in enumerate(r["fp32_stages"]["images"])],
        "",
        "## INT8 on aarch64, per emulated CPU",
        "",
        "| QEMU_CPU | features seen | all detections (conf 0.05) vs x86 INT8 | score >= 0.3 vs x86 INT8 | score >= 0.3 vs x86 FP32 |",
        "|---|---|---|---|---|",
    ]
    for v in r["int8"].values():
        L.append(
            f"| {v['qemu_cpu']} | {v['cpu_features']} | {_cmp_line(v['vs_x86_int8'])} | {_match_line(v['matched_vs_x86_int8'])} | "
            f"{_match_line(v['matched_vs_x86_fp32'])} |"
        )
    L += [
        "",
        "INT8 stage by stage under QEMU_CPU=max (the graph's raw outputs on each machine's own input and on the x86 input "
        "tensor; the same columns as FP32's):",
        "",
        "| image | decoded image identical | input values differing (max diff) | boxes: own input / same input | scores | masks | "
        "landmark heatmaps |",
        "|---|---|---|---|---|---|---|",
        *[_stage_row(i, rec) for i, rec in enumerate(r["int8_stages"]["images"])],
    ]
    for k, v in r.get("int8_between_qemu_cpus", {}).items():
        L += ["", f"Between emulated CPUs ({k.replace('pred_arm_int8_', '')}): {_cmp_line(v)}"]
    for key, title in (("ap_host_set", "x86 only, the host set"), ("ap_emulated_set", "the emulated set")):
        L += _ap_table(r[key], title)
    L += [
        "",
        "## The INT8 refusal rule under each emulated CPU (getauxval hwcaps; /proc/cpuinfo shows the x86 host)",
        "",
        "| QEMU_CPU | hwcap | hwcap2 | cpu_features() | /proc/cpuinfo is x86 | refusal (bundled INT8) | refusal (8-bit weights) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in r["features"].values():
        L.append(
            f"| {f['qemu_cpu']} | {f['hwcap']} | {f['hwcap2']} | {f['summary']} | {f['proc_cpuinfo_is_x86']} | "
            f"{f['int8_refusal_bundled'] or 'none (runs)'} | {f['int8_refusal_8bit'] or 'none (runs)'} |"
        )
    L += ["", "## Seconds per image (aarch64 ones emulated)", "", *[f"- {k}: {v}" for k, v in r["seconds_per_image"].items()]]
    L += [
        "",
        f"The check up to this report: {r['minutes']} min (wall, this host, the cached userland reused); the report's bootstraps "
        "(AP of every draw) come on top."
        if r.get("minutes")
        else "",
        "",
    ]
    return "\n".join(L)


def _ap_table(ap: dict, title: str) -> list[str]:
    L = [
        "",
        f"## AP (points), {title}: {ap['images']} images",
        "",
        "| run | box AP | mask AP | landmarks AP |",
        "|---|---|---|---|",
        *[f"| {n} | {s['box']:.2f} | {s['mask']:.2f} | {s['landmarks_all']:.2f} |" for n, s in ap["ap"].items()],
        "",
        f"Differences in AP points (sd over {ap['bootstrap_draws']} paired bootstrap draws of the images):",
        "",
        "| difference | box | mask | landmarks |",
        "|---|---|---|---|",
    ]
    for k, v in ap["delta"].items():
        d, sd = v["delta"], v["bootstrap_sd"]
        L.append(f"| {k} |" + "".join(f" {d[m]:+.2f}" + (f" ({sd[m]:.2f})" if sd[m] is not None else "") + " |" for m in METRICS))
    return L


def _stage_row(i: int, rec: dict) -> str:
    def both(k: str) -> str:
        return f"{rec['own_input'][k]:.3g} / {rec['same_input'][k]:.3g}"

    return (
        f"| {i + 1} | {rec['decoded_identical']} | {rec['input_values_differing']} of {rec['input_values']} ({rec['input_max_diff']:g}) | "
        f"{both('boxes')} | {both('scores')} | {both('masks')} | {both('landmark_heatmaps')} |"
    )


def _match_line(m: dict) -> str:
    if not m["matched"]:
        return f"0 of {m['reference_detections']} matched"
    return (
        f"{m['matched']}/{m['reference_detections']} matched (same label, IoU>=0.5; mean IoU {m['mean_iou']:.4f}, min {m['min_iou']:.3f}), "
        f"{m['unmatched_in_other']} unmatched extra, scores within {m['max_score_diff']:.3f}"
    )


def _cmp_line(c: dict) -> str:
    s = (
        f"{c['images_same_labels']}/{c['images']} images with the same labels; boxes within {c['max_box_diff_px']:.2g} px, "
        f"scores within {c['max_score_diff']:.2g}, landmarks within {c['max_landmark_diff_px']:.2g} px "
        f"({c['landmarks_moved_over_1px']} of {c['landmarks']} moved by > 1 px), mask IoU >= {c['min_mask_iou']:.4f}"
    )
    return s + (f" ({'PASS' if c['pass'] else 'FAIL'})" if "pass" in c else "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, required=True)
    p = sub.add_parser("predict")
    p.add_argument("--model", choices=("fp32", "int8"), required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--warmup", action="store_true", help="one untimed image first")
    p.add_argument("--reuse", action="store_true", help="keep OUT if it holds this model and code on as many images, same QEMU_CPU")
    p = sub.add_parser("stages")
    p.add_argument("--model", choices=("fp32", "int8"), default="fp32")
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--inputs-from", default=None)
    p = sub.add_parser("features")
    p.add_argument("--out", required=True)
    p = sub.add_parser("resize")
    p.add_argument("--out", required=True)
    p.add_argument("--pairs", type=int, default=40, help="random (source, target) sizes besides the letterbox-like ones")
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=str(RESULTS / "arm_check_aarch64"))
    p.add_argument("--bootstrap", type=int, default=20, help="draws for the emulated set's AP differences")
    p.add_argument("--host-bootstrap", type=int, default=10, help="draws for the host set's (~10 s each on 200 images)")
    p.add_argument("--load", default="", help="the host's load average during the run (uptime)")
    p.add_argument("--minutes", type=int, default=None, help="the whole check's wall time, for the record")
    a = ap.parse_args(argv)
    {
        "data": cmd_data,
        "predict": cmd_predict,
        "stages": cmd_stages,
        "features": cmd_features,
        "resize": cmd_resize,
        "report": cmd_report,
    }[a.cmd](a)


if __name__ == "__main__":
    main()
