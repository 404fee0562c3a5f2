"""`df2infer convert DIR`: write COCO-style JSON and retrieval ground truth (see data/coco.py)."""

from __future__ import annotations

import argparse
import sys

from df2infer.data.annotations import AnnotationError
from df2infer.data.coco import write_coco_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="DIR", help="DeepFashion2-format folder (image/ and annos/)")
    parser.add_argument("--out", default=None, help="output folder (default DIR/coco)")


def run(args: argparse.Namespace) -> int:
    try:
        paths = write_coco_files(args.root, args.out)
    except AnnotationError as e:
        print(e, file=sys.stderr)
        return 1
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0
