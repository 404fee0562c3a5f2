"""The synthetic DeepFashion2 generator: format, determinism, coverage, video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from df2infer.data import spec
from df2infer.data.annotations import load_dataset
from df2infer.synth import garments, generator
from df2infer.synth.video import make_video


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_a")
    generator.generate(root, 12, seed=5, log=None)
    return root


@pytest.fixture(scope="module")
def bigger_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_b")
    generator.generate(root, 48, seed=11, log=None)
    return root


def _files(root: Path, sub: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / sub).iterdir())}


def test_templates_have_spec_landmark_counts():
    rng = np.random.default_rng(0)
    for c in spec.categories():
        for _ in range(5):
            t = garments.build(c.id, garments.sample_shape(c.id, rng))
            assert t.landmarks.shape == (c.num_landmarks, 2)
            # landmarks are on (vertices of) the outline polygons
            verts = np.concatenate(t.parts + t.inner)
            d = np.abs(verts[None] - t.landmarks[:, None]).sum(-1).min(1)
            assert d.max() < 1e-9, (c.id, d.max())


def test_deterministic(small_set, tmp_path):
    generator.generate(tmp_path / "again", 12, seed=5, log=None)
    assert _files(small_set, "annos") == _files(tmp_path / "again", "annos")
    assert _files(small_set, "image") == _files(tmp_path / "again", "image")
    generator.generate(tmp_path / "other", 12, seed=6, log=None)
    assert _files(small_set, "annos") != _files(tmp_path / "other", "annos")


def test_loads_without_problems(small_set):
    ds = load_dataset(small_set)
    assert len(ds) == 12
    for ann in ds:
        assert 1 <= len(ann.items) <= 4
        for it in ann.items:
            assert it.landmarks.shape == (it.category.num_landmarks, 3)
            x1, y1, x2, y2 = it.bbox
            assert 0 <= x1 < x2 <= ann.width and 0 <= y1 < y2 <= ann.height


def test_coverage_pairs_and_occlusion(bigger_set):
    ds = load_dataset(bigger_set)
    cats = {it.category_id for a in ds for it in a.items}
    assert cats == set(range(1, 14))
    vis = np.concatenate([it.landmarks[:, 2] for a in ds for it in a.items])
    assert (vis == 1).any() and (vis == 2).any()
    assert any(it.style == 0 for a in ds for it in a.items)
    st = generator.stats(bigger_set, log=None)
    assert st["consumer_shop_pairs"] > 0
    # same pair_id + style: same category everywhere
    seen = {}
    for a in ds:
        for it in a.items:
            if it.style > 0:
                assert seen.setdefault((a.pair_id, it.style), it.category_id) == it.category_id
    for a in ds:  # every pair_id has a shop image
        assert any(b.source == "shop" and b.pair_id == a.pair_id for b in ds)


def test_video(tmp_path):
    v, gt = make_video(tmp_path, frames=12, seed=1, size=(320, 180))
    cap = cv2.VideoCapture(str(v))
    assert cap.isOpened()
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    lines = gt.read_text().splitlines()
    assert len(lines) == 12 and "items" in json.loads(lines[0])
