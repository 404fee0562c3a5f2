"""Deterministic weights for a detectron2 Mask+Keypoint R-CNN R50-FPN, regenerable without detectron2.

The recipe (tests/fixtures/detectron2/recipe.json, written by tests/fixtures/detectron2/make_fixture.py
with detectron2 installed) holds the tensor names and shapes of detectron2's own model, a seed, and the
adjustments that make the random network detect something with margins (score-layer multipliers and
biases measured on the fixture images). `weights(recipe)` rebuilds the state dict bit for bit from it:
each tensor from its own torch.Generator seeded with seed + its index.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "detectron2"


def base_tensor(name: str, shape: list[int], seed: int) -> torch.Tensor:
    """FrozenBN as identity; biases 0; conv/linear weights N(0, 1/fan_in) (the last conv of each bottleneck
    at half that scale, so the residual sums grow slowly through the 16 blocks)."""
    if name.endswith((".norm.weight", ".norm.running_var")):
        return torch.ones(shape)
    if name.endswith((".norm.bias", ".norm.running_mean", ".bias")):
        return torch.zeros(shape)
    g = torch.Generator().manual_seed(seed)
    transposed = ".deconv." in name or ".score_lowres." in name  # ConvTranspose2d: [in, out, k, k]
    fan_in = shape[0] if transposed else math.prod(shape[1:])
    std = 1.0 / math.sqrt(fan_in)
    if ".conv3." in name:
        std *= 0.5
    return torch.randn(shape, generator=g) * std


def weights(recipe: dict) -> dict[str, torch.Tensor]:
    sd = {name: base_tensor(name, shape, recipe["seed"] + i) for i, (name, shape) in enumerate(recipe["tensors"])}
    for name, adj in recipe.get("adjust", {}).items():
        t = sd[name]
        if "mul" in adj:
            t.mul_(adj["mul"])
        if "set" in adj:
            t.copy_(torch.tensor(adj["set"], dtype=t.dtype).reshape(t.shape))
    return sd


def load_recipe() -> dict:
    return json.loads((FIXTURE / "recipe.json").read_text())
