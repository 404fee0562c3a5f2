"""Print the evaluation as tables and write it as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

METRIC_TITLES = {
    "box": "detection (box)",
    "mask": "segmentation (mask)",
    "landmarks_visible": "landmarks (visible)",
    "landmarks_all": "landmarks (vis + occ)",
}


def _fmt(v) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def format_report(report: dict) -> str:
    lines = [f"images: {report.get('num_images', '?')}, items: {report.get('num_items', '?')}"]
    rows = [(m, t) for m, t in METRIC_TITLES.items() if m in report]
    if rows:
        lines += ["", f"{'task':<24} {'AP':>6} {'AP50':>6} {'AP75':>6}"]
        for m, t in rows:
            o = report[m]["overall"]
            lines.append(f"{t:<24} {_fmt(o['AP'])} {_fmt(o['AP50'])} {_fmt(o['AP75'])}")
        attrs = next((report[m].get("by_attribute") for m, _ in rows if report[m].get("by_attribute")), None)
        if attrs:
            lines += ["", "AP by attribute (ground truth outside the group ignored)"]
            for a, vals in attrs.items():
                lines.append(f"{a:<24}" + "".join(f" {v[:12]:>12}" for v in vals))
                for m, t in rows:
                    ba = (report[m].get("by_attribute") or {}).get(a) or {}
                    cells = []
                    for v in vals:
                        s = ba.get(v)
                        ap = None if s is None else s.get("AP")
                        cells.append(f" {'-' if ap is None else format(ap, '.3f'):>12}")
                    lines.append(f"  {t:<22}" + "".join(cells))
    r = report.get("retrieval")
    if r:
        ks = [k for k in r if k.startswith("top")]
        lines += [
            "",
            "retrieval (consumer-to-shop): "
            + ", ".join(f"{k} {_fmt(r[k]).strip()}" for k in ks)
            + f"  ({r['num_queries']} queries, {r['num_queries_detected']} detected)",
        ]
    return "\n".join(lines)


def print_report(report: dict, file: TextIO | None = None) -> None:
    print(format_report(report), file=file)


def write_json(report: dict, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(report, indent=1))
    return p
