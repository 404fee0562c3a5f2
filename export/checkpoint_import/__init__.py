"""Checkpoints from other frameworks: detect the format, map every tensor explicitly, build the model.

    fmt = detect_format(path)                       # "df2infer" | "torchvision" | "detectron2"
    model, report = import_checkpoint(path)         # a MatchRCNN carrying the family's semantics
    report = init_from_checkpoint(model, path)      # train --init: the shared layers, the rest untrained

One module per family (torchvision.py, detectron2.py), each an explicit table from the family's tensor
names to this project's, with the semantics that differ put into the model config (anchors, RoIAlign,
normalization, class order: docs/models.md "Bring your model"). Nothing is matched by shape: a tensor
the table does not know, a missing one, a class count other than 13 (+ background), a backbone depth
other than 50/101 or a keypoint head that is not 294 channels is a CheckpointImportError naming them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import FORMAT, CheckpointError, CheckpointImportError, read_checkpoint

FAMILIES = ("df2infer", "torchvision", "detectron2")


def _read_pkl(path: Path) -> dict:
    """detectron2 model-zoo .pkl: a pickled dict of numpy arrays (plain types only are unpickled)."""

    class _Plain(pickle.Unpickler):
        def find_class(self, module, name):
            if module.startswith("numpy") and name in ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    try:
        with open(path, "rb") as f:
            obj = _Plain(f, encoding="latin1").load()
    except (EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt .pkl checkpoint, cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict in the .pkl checkpoint, got {type(obj).__name__}")
    return obj


def read_any(path) -> dict:
    """The raw checkpoint dict of a .pth/.pt (torch.load, weights only) or a .pkl (detectron2 model zoo)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    return _read_pkl(path) if path.suffix == ".pkl" else read_checkpoint(path)


def state_dict_of(raw: dict) -> dict[str, torch.Tensor]:
    """The tensors of a raw checkpoint: {"model": sd} (detectron2, torchvision references) or sd itself;
    numpy arrays (.pkl) become tensors, a DataParallel `module.` prefix is removed."""
    sd = raw["model"] if isinstance(raw.get("model"), dict) else raw
    out = {}
    for k, v in sd.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, torch.Tensor):
            out[k.removeprefix("module.")] = v
    return out


def detect_format(raw: dict, source: str = "<checkpoint>") -> str:
    """Which family wrote a raw checkpoint dict: df2infer, torchvision or detectron2 (CheckpointError otherwise)."""
    if raw.get("format") == FORMAT:
        return "df2infer"
    sd = state_dict_of(raw)
    keys = list(sd)
    if any(k.startswith("backbone.bottom_up.") for k in keys):
        return "detectron2"
    if any(k.startswith("backbone.body.") for k in keys) and any(k.startswith(("rpn.", "roi_heads.")) for k in keys):
        return "torchvision"
    raise CheckpointError(
        f"{source}: not a checkpoint this exporter knows (df2infer {FORMAT!r}; torchvision Mask/Keypoint R-CNN with "
        f"backbone.body.*, rpn.*, roi_heads.*; detectron2 with backbone.bottom_up.*); its first tensors: {keys[:8]}"
    )


def _family_module(family: str) -> Any:
    if family == "torchvision":
        from . import torchvision as mod
    elif family == "detectron2":
        from . import detectron2 as mod
    else:
        raise ValueError(f"family {family!r}: expected torchvision or detectron2")
    return mod


def import_checkpoint(path, *, config_override: dict | None = None):
    """Build the model a checkpoint of any family describes; returns (model, report).
    report: {"family", "source", "config", "mapped": [(their name, our name)], "ignored": [...], "heads": [...]}."""
    from ..checkpoint import load_model

    path = Path(path)
    raw = read_any(path)
    family = detect_format(raw, str(path))
    if family == "df2infer":
        model, ckpt = load_model(path, config_override=config_override)
        return model, {
            "family": "df2infer",
            "source": str(path),
            "config": model.cfg,
            "mapped": [],
            "ignored": [],
            "heads": list(model.heads),
        }
    mod = _family_module(family)
    model, report = mod.build(state_dict_of(raw), str(path), config_override=config_override)
    report.update(family=family, source=str(path))
    return model, report


def init_from_checkpoint(model, path) -> dict:
    """train --init: load into `model` (this project's Match R-CNN, any config) every tensor of `path` that
    the family's mapping gives a name this model has with the same shape; returns
    {"family", "loaded": [...], "not_loaded": ["name: why", ...], "untrained": [...], "untrained_heads": [...]}.
    Shapes are checked on the explicitly mapped names, never used to find a tensor's place."""
    path = Path(path)
    raw = read_any(path)
    family = detect_format(raw, str(path))
    if family == "df2infer":
        mapped = {k: v for k, v in raw["model"].items()}
    else:
        mapped = _family_module(family).map_for_training(state_dict_of(raw), str(path))
    own = model.state_dict()
    new = dict(own)
    loaded, not_loaded = [], []
    for k, v in mapped.items():
        if k not in own:
            not_loaded.append(f"{k}: this model has no such tensor")
        elif tuple(v.shape) != tuple(own[k].shape):
            not_loaded.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            new[k] = v.to(own[k].dtype)
            loaded.append(k)
    model.load_state_dict(new)
    untrained = sorted(set(own) - set(loaded))
    heads = sorted({".".join(k.split(".")[:2]) for k in untrained})
    return {
        "family": family,
        "source": str(path),
        "loaded": loaded,
        "not_loaded": not_loaded,
        "untrained": untrained,
        "untrained_heads": heads,
    }


__all__ = ["CheckpointImportError", "FAMILIES", "detect_format", "import_checkpoint", "init_from_checkpoint", "read_any", "state_dict_of"]
