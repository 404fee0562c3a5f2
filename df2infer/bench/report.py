"""Benchmark report: Markdown table (printed and bench.md), bench.json, and a PNG plot."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .runner import STAGES

SHOWN = ("preprocess", "inference", "postprocess", "total")


def _f(v, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}"


def jetson_line(j: dict) -> str:
    """'L4T 36.4.3, power mode MAXN (mode 0), jetson_clocks on' (unknown where a value could not be read)."""
    clocks = {True: "on", False: "off", None: "unknown"}[j.get("jetson_clocks")]
    return f"L4T {j.get('l4t') or 'unknown'}, power mode {j.get('power_mode') or 'unknown'}, jetson_clocks {clocks}"


def gpu_lines(machine: dict) -> list[str]:
    """The header's GPU lines: whether the GPU kernels are on (or why not) and, on a Jetson, its settings."""
    lines = []
    if machine.get("gpu_kernels"):
        lines.append(f"- GPU kernels: {machine['gpu_kernels']}")
    if machine.get("jetson"):
        lines.append(f"- Jetson: {jetson_line(machine['jetson'])}")
    return lines


def format_markdown(report: dict) -> str:
    m = report["machine"]
    cfg = report["config"]
    rows = report["results"]
    L = ["# df2infer bench", ""]
    L.append(
        f"- machine: {m.get('cpu', '?')}, {m.get('cpu_count')} logical CPUs ({m.get('cpus_usable', '?')} usable), "
        f"load average {m.get('loadavg_1m', '?')} at start / {m.get('loadavg_1m_end', '?')} at end"
    )
    if m.get("cpu_features"):
        L.append(f"- CPU features: {m['cpu_features']}")
    L += gpu_lines(m)
    L.append(
        f"- software: onnxruntime {m.get('onnxruntime', '-')}, openvino {m.get('openvino', '-')}, numpy {m.get('numpy')}, "
        f"opencv {m.get('opencv')} "
        f"({m.get('opencv_threads')} threads), python {m.get('python')}, {m.get('platform')}"
    )
    if m.get("cpu_backend_rule"):
        L.append(f"- CPU backend rule: {m['cpu_backend_rule']}")
    L.append(
        f"- input: {cfg['images']}; conf {cfg['conf']}; warm-up {cfg['warmup']}, timed runs {cfg['runs']} per batch size; "
        f"artifacts interleaved in blocks of {cfg.get('block', 1)} timed calls, each block after one untimed call, "
        "blocks round-robin with the order rotated every round"
    )
    for s in report["subjects"]:
        info = s["info"]
        shown = ("device", "input", "providers", "intra_op_threads", "threads", "torch", "openvino", "max_batch")
        extra = ", ".join(f"{k} {v}" for k, v in info.items() if k in shown)
        L.append(f"- `{s['name']}` ({s['kind']}, {s['precision']}): {s['path']}; {extra}")
    L.append(
        "- timing: `total` = wall time of one predict() call on the batch (read/check + letterbox + backend run + "
        "postprocess to Detections with pasted masks and decoded landmarks); stages from the Predictor's StageTimings of "
        "that call; every run kept. Sync: " + "; ".join(sorted({s["info"].get("sync", "") for s in report["subjects"]}))
    )
    L.append("")
    L.append("## Latency per call (ms) and throughput")
    L.append("")
    head = (
        ["artifact", "batch"]
        + [f"{s} p50" for s in SHOWN[:-1]]
        + ["total p50", "p90", "p99", "mean", "min", "max", "ms/img", "img/s", "speedup", "items"]
    )
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for r in rows:
        st = r["stages"]
        t = st["total"]
        cells = [f"`{r['name']}`", str(r["batch"])] + [_f(st[s]["p50"], 2) for s in SHOWN[:-1]]
        cells += [
            _f(t["p50"], 2),
            _f(t["p90"], 2),
            _f(t["p99"], 2),
            _f(t["mean"], 2),
            _f(t["min"], 2),
            _f(t["max"], 2),
            _f(r["per_image_ms"], 2),
            _f(r["throughput_ips"], 2),
            (_f(r.get("speedup_p50"), 2) + "x") if r.get("speedup_p50") else "-",
            str(r.get("detections", "-")),
        ]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append(
        f"speedup = p50 total of `{rows[0]['name']}` / p50 total of the row, at the same batch size; "
        "img/s = batch / mean total; items = detections per call at the conf above."
    )
    L.append("")
    L.append("## Every stage: p50 / p90 / p99 / mean / min / max (ms per call)")
    L.append("")
    L.append("| artifact | batch | stage | p50 | p90 | p99 | mean | min | max |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for s in STAGES:
            v = r["stages"][s]
            cells = " | ".join(_f(v[k], 3) for k in ("p50", "p90", "p99", "mean", "min", "max"))
            L.append(f"| `{r['name']}` | {r['batch']} | {s} | {cells} |")
    acc = report.get("accuracy")
    if acc:
        L.append("")
        L.append(f"## Accuracy ({acc['data']}, first {acc['images']} images, conf {acc['conf']})")
        L.append("")
        keys = sorted({k for v in acc["by_subject"].values() if isinstance(v, dict) for k in v if k != "error"})
        L.append("| artifact | " + " | ".join(keys) + " |")
        L.append("|---|" + "---|" * len(keys))
        for name, v in acc["by_subject"].items():
            if "error" in v:
                L.append(f"| `{name}` | " + f"error: {v['error']}" + " |" * len(keys))
            else:
                L.append(f"| `{name}` | " + " | ".join(_f(v.get(k), 3) for k in keys) + " |")
    for note in report.get("notes", []):
        L.append("")
        L.append(f"note: {note}")
    return "\n".join(L) + "\n"


def plot(report: dict, path: str | os.PathLike) -> Path | None:
    """Per-stage p50 (bar) and p99 (whisker) per artifact and batch; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = report["results"]
    labels = [f"{r['name']}\nbatch {r['batch']}" for r in rows]
    fig, axes = plt.subplots(1, len(SHOWN), figsize=(4.2 * len(SHOWN), 4.2 + 0.15 * len(rows)))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(r["name"] for r in rows))
    for ax, stage in zip(axes, SHOWN):
        p50 = [r["stages"][stage]["p50"] for r in rows]
        p99 = [r["stages"][stage]["p99"] for r in rows]
        x = range(len(rows))
        ax.bar(x, p50, color=[colors[names.index(r["name"]) % len(colors)] for r in rows])
        ax.errorbar(x, p50, yerr=[[0] * len(rows), [max(b - a, 0) for a, b in zip(p50, p99)]], fmt="none", ecolor="k", capsize=4)
        ax.set_title(f"{stage} (bar p50, whisker p99)")
        ax.set_ylabel("ms per call")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    fig.suptitle(f"df2infer bench: {report['machine'].get('cpu', '')}", fontsize=9)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def write(report: dict, out_dir: str | os.PathLike, *, with_plot: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if with_plot:
        p = plot(report, out / "bench.png")
        if p is None:
            report.setdefault("notes", []).append("plot skipped: matplotlib is not installed (pip install matplotlib)")
        else:
            paths["png"] = p
    paths["json"] = out / "bench.json"
    paths["json"].write_text(json.dumps(report, indent=1, default=str))
    paths["md"] = out / "bench.md"
    paths["md"].write_text(format_markdown(report))
    return paths
