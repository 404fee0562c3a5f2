"""Structure checks both checkpoint families share: the backbone's depth, and a tensor table that covers the
state dict. Each raises CheckpointImportError naming the file, the family and the tensors involved."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..checkpoint import CheckpointImportError

DEPTH_BY_THIRD_STAGE_BLOCKS = {6: 50, 23: 101}  # ResNet-50 and ResNet-101, the depths the mappings take


def bottleneck_resnet_depth(sd: Mapping[str, torch.Tensor], source: str, family: str, *, first_block: str, third_stage: str) -> int:
    """50 or 101 from the number of blocks in the third stage (`third_stage`, e.g. "backbone.body.layer3.");
    a backbone whose first block (`first_block`, e.g. "backbone.body.layer1.0.") has no third convolution is a
    BasicBlock ResNet-18/34 and refused."""
    if first_block + "conv1.weight" in sd and first_block + "conv3.weight" not in sd:
        raise CheckpointImportError(
            source,
            family,
            "backbone of BasicBlocks (ResNet-18/34); the mapping takes ResNet-50 and ResNet-101 (bottleneck) backbones",
            sorted(k for k in sd if k.startswith(first_block)),
        )
    blocks = len({k.split(".")[3] for k in sd if k.startswith(third_stage)})
    depth = DEPTH_BY_THIRD_STAGE_BLOCKS.get(blocks)
    if depth is None:
        stage = third_stage.rstrip(".").rsplit(".", 1)[-1]
        raise CheckpointImportError(
            source,
            family,
            f"backbone {stage} has {blocks} blocks; ResNet-50 has 6 and ResNet-101 has 23 (the depths the mapping takes)",
            sorted({".".join(k.split(".")[:4]) for k in sd if k.startswith(third_stage)}),
        )
    return depth


def check_table_covers(
    sd: Mapping[str, torch.Tensor],
    table: Mapping[str, object],
    source: str,
    family: str,
    *,
    strict: bool,
    ignored: Callable[[str], bool] = lambda k: False,
    optional: Callable[[str], bool] = lambda k: False,
) -> None:
    """Every tensor of `sd` has a place in `table` (or is `ignored`); with `strict`, every tensor of the table
    that is not `optional` is in `sd`."""
    unknown = sorted(k for k in sd if k not in table and not ignored(k))
    if unknown:
        raise CheckpointImportError(
            source, family, f"{len(unknown)} tensors the {family} mapping does not know (a head or layer it has no place for)", unknown
        )
    missing = sorted(k for k in table if k not in sd and not optional(k))
    if missing and strict:
        raise CheckpointImportError(source, family, f"{len(missing)} tensors missing (a truncated or partial state dict?)", missing)
