"""`df2infer train`: train Match R-CNN on a DeepFashion2-format folder, on CPU or CUDA (needs the export extra).

Configuration: defaults <- --config YAML (default export/configs/small.yaml) <- --set key=value
(and the shortcut flags). Writes to RUN_DIR: config.yaml, log.jsonl (losses, lr, s/iter, eval
metrics), last.pt (model + optimizer + scheduler + iteration; --resume continues from it),
model.pt (final weights, fp16 when --half) and eval_<iter>/ result files (df2infer_export.train).
--init CKPT starts from another checkpoint (df2infer_export.checkpoint_import.init_from_checkpoint: the
family's explicit tensor table, then the tensors whose mapped name and shape this config has).
"""

from __future__ import annotations

import argparse

NEEDS_EXPORT_EXTRA = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="DeepFashion2-format training folder")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--config", default="small", help="YAML file or name in export/configs (default: small)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. train.lr=0.001")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument(
        "--init",
        metavar="CKPT",
        default=None,
        help="start from a checkpoint: df2infer, torchvision (Mask/Keypoint R-CNN, COCO or fine-tuned) or detectron2; "
        "the layers this config shares with it load, the rest starts untrained (printed)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-data", default=None, help="held-out folder for periodic evaluation")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--eval-max-images", type=int, default=None)
    p.add_argument("--half", action="store_true", help="store the final model.pt in fp16")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from df2infer_export.config import load_config
    from df2infer_export.train import train

    torch.set_num_threads(args.threads)
    overrides = list(args.set)
    for flag, key in (
        ("iters", "train.iters"),
        ("batch_size", "train.batch_size"),
        ("lr", "train.lr"),
        ("eval_every", "train.eval_every"),
        ("eval_max_images", "train.eval_max_images"),
    ):
        v = getattr(args, flag)
        if v is not None:
            overrides.append(f"{key}={v}")
    cfg = load_config(args.config, overrides)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("df2infer train: --device cuda but CUDA is not available")
        return 2
    from df2infer_export.checkpoint import CheckpointError

    try:
        res = train(cfg, args.data, args.out, args.device, args.resume, args.eval_data, args.half, not args.no_progress, init=args.init)
    except CheckpointError as e:
        print(f"df2infer train: {e}")
        return 1
    print(f"done: {res['checkpoint']}")
    return 0
