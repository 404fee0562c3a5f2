"""A synthetic scene whose geometry is known: dressed people drawn by df2infer.synth's renderer, with the
renderer's annotation of every garment (box, polygons, landmarks), for tests that check where things are."""

from __future__ import annotations

import numpy as np

from df2infer.synth import generator, scene


def dressed_people(w: int, h: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    """(BGR image, annotations): one person (portrait frames) or two (landscape) filling the frame."""
    rng = np.random.default_rng([seed, 11])
    layers = []
    people = 2 if w >= h else 1
    for k in range(people):
        outfit = generator.fill_outfit([dict(generator.random_product(int(rng.integers(1, 14)), rng), style=1)], rng)
        H = scene.placement(generator.outfit_bounds(outfit), w, h, rng, frac=0.85, center=(w * (k + 0.5) / people, h * 0.5))
        layers += generator.body_layers(outfit, H, generator.random_skin(rng), rng) + generator.outfit_layers(outfit, H, rng)
    return scene.render(scene.user_background(w, h, rng), layers)
