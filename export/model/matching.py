"""Matching network and similarity network (Match R-CNN).

MatchingHead: on RoI features [R, C, P, P]: conv 3x3 + ReLU per entry of `channels`
(default 256, 256, 256, 1024), global average pooling, BatchNorm1d (centres the all-positive
pooled ReLU features, whose common component otherwise makes every embedding point the same
way; foldable into the fc for deployment), fc to `dim` (256), then L2-normalised and scaled to norm sqrt(dim) (16), so each
dimension is O(1): with a unit-norm (or raw, ~0.04 per dimension) embedding (a - b)^2 is ~1e-3 per
dimension and the similarity fc cannot move its logits in a reasonable number of steps.
Deploy graphs reproduce this as x / max(||x||_2, 1e-12) * sqrt(dim).
Shared between consumer and shop images.

Similarity: logits = fc((a - b) ** 2) with fc: dim -> 2; softmax[..., 1] = P(match).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MatchingHead(nn.Module):
    def __init__(self, in_channels: int, channels=(256, 256, 256, 1024), dim: int = 256):
        super().__init__()
        layers, c = [], in_channels
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
            c = out
        self.convs = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(c)
        self.fc = nn.Linear(c, dim)
        self.scale = math.sqrt(dim)
        for m in self.convs.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.norm(self.convs(x).mean(dim=(2, 3))))
        return F.normalize(x, dim=1) * self.scale


class Similarity(nn.Module):
    def __init__(self, dim: int = 256):
        super().__init__()
        self.fc = nn.Linear(dim, 2)
        init_similarity(self.fc)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits [..., 2] for broadcastable embeddings a, b."""
        return self.fc((a - b) ** 2)


def init_similarity(fc: nn.Linear) -> None:
    """Start as a distance rule: P(match) = sigmoid(3 - 0.02 * ||a - b||^2), so the matching loss
    has a gradient on the embeddings from the first step (with zero-ish weights it has none)."""
    with torch.no_grad():
        fc.weight.zero_()
        fc.weight[1].fill_(-0.02)
        fc.bias.copy_(torch.tensor([0.0, 3.0]))
