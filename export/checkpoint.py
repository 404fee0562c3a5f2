"""Checkpoints: save/load with clear errors (other frameworks' checkpoints: df2infer_export.checkpoint_import).

A checkpoint is a dict: {"format": "df2infer.match_rcnn.ckpt", "version": 1, "model": state_dict,
"config": {"model": ..., "train": ...}, "iteration": int, "optimizer": state (optional),
"scheduler": state (optional)}. Loading uses torch.load(weights_only=True).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from df2infer.errors import ModelError

FORMAT = "df2infer.match_rcnn.ckpt"
VERSION = 1


class CheckpointError(ModelError, RuntimeError):
    """A checkpoint that is missing, truncated, of another format or that does not fit the model
    (df2infer.errors: the model branch, as the runtime's artifact errors)."""


class CheckpointImportError(CheckpointError):
    """A checkpoint of another framework that the mapping cannot take: names the file, the family and the tensors."""

    def __init__(self, source: str, family: str, problem: str, tensors: list[str] | None = None):
        self.source, self.family, self.problem, self.tensors = source, family, problem, list(tensors or [])
        msg = f"{source}: {family} checkpoint: {problem}"
        if self.tensors:
            shown = self.tensors[:40]
            msg += "\n  " + "\n  ".join(shown)
            if len(self.tensors) > 40:
                msg += f"\n  ... ({len(self.tensors) - 40} more)"
        super().__init__(msg)


def save_checkpoint(
    path, model, config: dict, iteration: int = 0, optimizer=None, scheduler=None, half: bool = False, extra: dict | None = None
) -> Path:
    """Write atomically (temporary file + rename). half=True stores float tensors as fp16."""
    path = Path(path)
    state = model.state_dict()
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    ckpt = {"format": FORMAT, "version": VERSION, "model": state, "config": config, "iteration": int(iteration)}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        ckpt["scheduler"] = scheduler.state_dict()
    if extra:
        ckpt.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path, map_location="cpu") -> dict:
    """torch.load(weights_only=True) with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint, cannot be read ({type(e).__name__}: {e})") from None
    except Exception as e:  # pickle.UnpicklingError from weights_only and others
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def check_state_dict(model, state: dict, source: str = "<state_dict>") -> None:
    """Raise CheckpointError listing every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"{source}: checkpoint does not fit the model"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", shapes)):
            if items:
                shown = ", ".join(items[:30]) + (f", ... ({len(items) - 30} more)" if len(items) > 30 else "")
                parts.append(f"{len(items)} {title}: {shown}")
        raise CheckpointError("\n  ".join(parts))


def load_model(path, device="cpu", config_override: dict | None = None):
    """Build the model a checkpoint describes and load its weights; returns (model, checkpoint)."""
    from .config import model_config
    from .model import build_model

    ckpt = read_checkpoint(path)
    if ckpt.get("format") != FORMAT or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(
            f"{path}: not a df2infer Match R-CNN checkpoint (format {ckpt.get('format')!r}); "
            "for torchvision or detectron2 checkpoints use df2infer_export.checkpoint_import.import_checkpoint"
        )
    mcfg = model_config(ckpt["config"]["model"])
    if config_override:
        mcfg.update(config_override)
    model = build_model(mcfg)
    check_state_dict(model, ckpt["model"], str(path))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.to(device), ckpt
