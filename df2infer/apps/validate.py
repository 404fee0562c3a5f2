"""`df2infer validate DIR`: check a DeepFashion2 folder and print every problem (exit 1 if any)."""

from __future__ import annotations

import argparse
import sys

from df2infer.data.annotations import AnnotationError, validate_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="DIR", help="DeepFashion2-format folder (image/ and annos/)")
    parser.add_argument("--no-images", action="store_true", help="do not open the images (skips the box-inside-image check)")


def run(args: argparse.Namespace) -> int:
    try:
        ds, problems = validate_folder(args.root, check_images=not args.no_images)
    except AnnotationError as e:
        print(e, file=sys.stderr)
        return 1
    for p in problems:
        print(p)
    n_items = sum(len(im.items) for im in ds)
    if problems:
        print(f"{len(problems)} problem(s) found; {len(ds)} valid image(s), {n_items} item(s)", file=sys.stderr)
        return 1
    print(f"OK: {len(ds)} image(s), {n_items} item(s), no problems")
    return 0
