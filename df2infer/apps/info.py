"""`df2infer info MODEL [--json]`: an artifact's contract and metadata, and its graph inputs and
outputs with shapes and dtypes. Reads ONNX files with the onnx package (no session, no weights
loaded beyond the file); for TensorRT engines it reads the sidecar `<engine>.json` (df2infer.artifact)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model artifact (.onnx, or .engine/.plan with its .json sidecar)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from df2infer.artifact import ModelLoadError, describe_onnx, engine_sidecar_path, int8_weight_range, is_engine_path
    from df2infer.contract import METADATA_KEY, Contract, ContractError

    path = args.model
    if not os.path.isfile(path):
        print(f"df2infer info: {path}: no such file", file=sys.stderr)
        return 2
    report: dict = {"path": path, "size_bytes": os.path.getsize(path)}
    contract_text = None
    try:
        if is_engine_path(path):
            side = str(engine_sidecar_path(path))
            if os.path.isfile(side):
                with open(side) as f:
                    raw = f.read()
                try:
                    obj = json.loads(raw)
                    contract_text = json.dumps(obj.get("contract", obj)) if isinstance(obj, dict) else raw
                except json.JSONDecodeError:
                    contract_text = raw
                report["sidecar"] = side
            report["format"] = "tensorrt engine"
        else:
            info, inputs, outputs = describe_onnx(path)
            report.update(format="onnx", **{k: v for k, v in info.items() if k != "metadata"})
            report["inputs"], report["outputs"] = inputs, outputs
            contract_text = info["metadata"].get(METADATA_KEY)
            other = {k: v for k, v in info["metadata"].items() if k != METADATA_KEY}
            if other:
                report["other_metadata"] = other
    except ModelLoadError as e:
        print(f"df2infer info: {e}", file=sys.stderr)
        return 2
    from df2infer.cpu_features import cpu_features, int8_refusal

    feats = cpu_features()  # this CPU: what an INT8 file needs from it
    report["cpu_features"] = feats.as_dict()
    from df2infer.ops.cuda.status import gpu_kernels_status

    on, why = gpu_kernels_status()  # whether an engine's letterbox and decode would run on the GPU here
    report["gpu_kernels"] = f"on ({why})" if on else f"off: {why}"
    from df2infer.stream.gst import gstreamer_report

    report["gstreamer"] = gstreamer_report()  # which camera / decoder elements a video source would use
    status = 0
    if contract_text is None:
        report["contract_error"] = f"{path}: no df2infer contract (metadata key {METADATA_KEY!r})"
        status = 1
    else:
        try:
            c = Contract.from_json(contract_text, source=path)
            d = json.loads(c.to_json())
            for k in ("similarity_weight", "similarity_bias"):
                v = d.pop(k)
                d[f"{k}_shape"] = [len(v), len(v[0])] if v and isinstance(v[0], list) else [len(v)]
            report["contract"] = d
            if report["format"] == "onnx":
                from df2infer.backends.cpu_choice import RULE_TEXT, choose_cpu_backend

                report["cpu_backend"] = {"chosen": choose_cpu_backend(path, precision=c.precision), "rule": RULE_TEXT}
            if c.precision == "int8" and report["format"] == "onnx":  # an engine runs on the GPU, not these kernels
                reason = int8_refusal(int8_weight_range(c, str(path)), feats)
                report["int8_on_this_cpu"] = "ok" if reason is None else f"refused: {reason}"
        except ContractError as e:
            report["contract_error"] = str(e)
            status = 1
    if args.json:
        print(json.dumps(report, indent=2))
        return status
    print(f"{report['path']}  ({report.get('format')}, {report['size_bytes'] / 1e6:.1f} MB)")
    for k in ("producer", "ir_version", "opsets", "nodes", "sidecar"):
        if k in report:
            print(f"  {k}: {report[k]}")
    print(f"  gpu kernels: {report['gpu_kernels']}")
    if "contract" in report:
        print("contract:")
        for k, v in report["contract"].items():
            print(f"  {k}: {v}")
    else:
        print(f"contract: ERROR {report['contract_error']}")
    for label in ("inputs", "outputs"):
        if label in report:
            print(f"{label}:")
            for v in report[label]:
                print(f"  {v['name']:<18} {v['dtype']:<8} {v['shape']}")
    if "other_metadata" in report:
        print("other metadata:", ", ".join(sorted(report["other_metadata"])))
    print(f"this CPU: {feats.summary()}")
    g = report["gstreamer"]
    if g["version"] is None:
        print(f"GStreamer: {g['error']}")
    else:
        found = [k for k, v in g["hardware_elements"].items() if v]
        print(f"GStreamer {g['version']}: NVIDIA elements found: {', '.join(found) or 'none'} (of {', '.join(g['hardware_elements'])})")
    if "int8_on_this_cpu" in report:
        print(f"INT8 on this CPU: {report['int8_on_this_cpu']}")
    if "cpu_backend" in report:
        print(f"CPU backend (device='cpu', backend='auto'): {report['cpu_backend']['chosen']}  [{report['cpu_backend']['rule']}]")
    return status
