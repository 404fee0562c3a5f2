"""Training Match R-CNN on a DeepFashion2-format folder, on CPU or CUDA (`df2infer train`: df2infer/apps/train.py).

Configuration: defaults <- config YAML (default export/configs/small.yaml) <- key=value overrides.
Writes to RUN_DIR: config.yaml, log.jsonl (losses, lr, s/iter, eval metrics), last.pt (model + optimizer +
scheduler + iteration; --resume continues from it), model.pt (final weights, fp16 when --half) and eval_<iter>/ result files.
"""

from __future__ import annotations

import functools
import gc
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .checkpoint import check_state_dict, read_checkpoint, save_checkpoint
from .checkpoint_import import init_from_checkpoint


def lr_factor(it: int, tcfg: dict) -> float:
    w = tcfg["warmup_iters"]
    f = min(1.0, (it + 1) / w) if w > 0 else 1.0
    for s in tcfg["lr_steps"]:
        step = s * tcfg["iters"] if s < 1 else s
        if it >= step:
            f *= tcfg["lr_gamma"]
    return f


def make_optimizer(model, tcfg: dict):
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": tcfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if tcfg["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=tcfg["lr"])
    if tcfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=tcfg["lr"], momentum=tcfg["momentum"])
    raise ValueError(f"train.optimizer {tcfg['optimizer']!r}: expected sgd or adamw")


def to_device(targets, device):
    return [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]


def drops_worker_batches(fn):
    """`fn` (a training run), after which torch holds no reference to the batches DataLoader workers sent.
    torch.multiprocessing keeps a weak reference per storage received through shared memory and prunes them
    only when there are many; those left at exit are finalized after torch is torn down, each printing an
    "Exception ignored ... _free_weak_ref" traceback. So once fn's frame, with its loader, workers and last
    batch, is gone, the dead references are dropped here, while torch is alive."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from torch.multiprocessing.reductions import shared_cache

        try:
            return fn(*args, **kwargs)
        finally:
            gc.collect()  # a DataLoader and its iterator refer to each other
            shared_cache.free_dead_references()

    return run


def log_init(rep: dict, log=print) -> None:
    """Print what `train --init` loaded from a checkpoint and what starts untrained."""
    log(f"--init {rep['source']}: {rep['family']} checkpoint; {len(rep['loaded'])} tensors loaded, {len(rep['untrained'])} start untrained")
    groups: dict[str, int] = {}
    for k in rep["loaded"]:
        g = ".".join(k.split(".")[:2])
        groups[g] = groups.get(g, 0) + 1
    log("  loaded: " + ", ".join(f"{g} ({n})" for g, n in sorted(groups.items())))
    log("  untrained (new for 13 categories or not in the checkpoint): " + ", ".join(rep["untrained_heads"]))
    for s in rep["not_loaded"]:
        log(f"  not loaded: {s}")


@drops_worker_batches
def train(
    cfg: dict,
    data: str,
    out: str,
    device: str = "cpu",
    resume: bool = False,
    eval_data: str | None = None,
    half: bool = False,
    progress: bool = True,
    log=print,
    init: str | None = None,
) -> dict:
    from tqdm import tqdm

    from .data import DF2TorchDataset, PairBatchSampler, collate
    from .model import build_model

    tcfg, mcfg = cfg["train"], cfg["model"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tcfg["seed"])
    random.seed(tcfg["seed"])
    np.random.seed(tcfg["seed"])
    model = build_model(mcfg)
    if init and not resume:
        log_init(init_from_checkpoint(model, init), log)
    model = model.to(device)
    opt = make_optimizer(model, tcfg)
    start = 0
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: {last} does not exist")
        ck = read_checkpoint(last)
        check_state_dict(model, ck["model"], str(last))
        model.load_state_dict(ck["model"])
        if "optimizer" in ck:
            opt.load_state_dict(ck["optimizer"])
        start = int(ck["iteration"])
        log(f"resumed from {last} at iteration {start}")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    ds = DF2TorchDataset(
        data, mcfg["input_size"], train=True, scale_jitter=tcfg["scale_jitter"], color_jitter=tcfg["color_jitter"], seed=tcfg["seed"]
    )
    sampler = PairBatchSampler(ds.anns, tcfg["batch_size"], tcfg["pair_fraction"], tcfg["seed"], start)
    # iterated once (the sampler is endless), so the worker stops when the iterator is collected
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=tcfg["num_workers"])
    eval_folder = None
    if eval_data and tcfg["eval_every"] > 0:
        from df2infer.data import load_dataset

        eval_folder = load_dataset(eval_data)
    weights = tcfg["loss_weights"]
    logf = open(out / "log.jsonl", "a")
    model.train()
    it_loader = iter(loader)
    bar = tqdm(range(start, tcfg["iters"]), initial=start, total=tcfg["iters"], disable=not progress, desc="train")
    acc, n_acc, t_last = {}, 0, time.perf_counter()
    for it in bar:
        for g in opt.param_groups:
            g["lr"] = tcfg["lr"] * lr_factor(it, tcfg)
        images, targets = next(it_loader)
        losses = model(images.to(device), to_device(targets, device))
        loss = sum(weights.get(k, 1.0) * v for k, v in losses.items())
        if not torch.isfinite(loss):
            log(f"iteration {it}: non-finite loss { ({k: float(v) for k, v in losses.items()}) }; batch skipped")
            opt.zero_grad(set_to_none=True)
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
        opt.step()
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        acc["loss"] = acc.get("loss", 0.0) + float(loss.detach())
        n_acc += 1
        done = it + 1
        if done % tcfg["log_every"] == 0 or done == tcfg["iters"]:
            now = time.perf_counter()
            rec = {
                "iter": done,
                "lr": opt.param_groups[0]["lr"],
                "s_per_iter": round((now - t_last) / n_acc, 4),
                **{k: round(v / n_acc, 5) for k, v in acc.items()},
            }
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            bar.set_postfix(loss=f"{rec['loss']:.3f}", s_it=rec["s_per_iter"])
            if not progress:
                log(json.dumps(rec))
            acc, n_acc, t_last = {}, 0, now
        if done % tcfg["ckpt_every"] == 0 or done == tcfg["iters"]:
            save_checkpoint(last, model, cfg, done, opt)
        if eval_folder is not None and (done % tcfg["eval_every"] == 0 or done == tcfg["iters"]):
            rec = run_eval(model, eval_folder, out / f"eval_{done}", device, tcfg["eval_max_images"])
            rec["iter"] = done
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(f"eval @ {done}: {json.dumps(rec)}")
            model.train()
            t_last = time.perf_counter()
    final = save_checkpoint(out / "model.pt", model, cfg, tcfg["iters"], half=half)
    logf.close()
    return {"checkpoint": str(final), "last": str(last)}


def run_eval(model, folder, out_dir, device, max_images) -> dict:
    from df2infer.eval.predict import summarize

    from .infer import evaluate, predict, write_results

    t = time.perf_counter()
    results, timing = predict(model, folder, device, max_images=max_images, progress=False)
    write_results(results, out_dir)
    rec = {"eval": True, "eval_s": round(time.perf_counter() - t, 1), "model_ms_per_image": round(timing["model_ms_per_image"], 1)}
    try:
        m = evaluate(folder, results, max_images)
    except Exception as e:  # evaluation must never stop training
        rec["eval_error"] = f"{type(e).__name__}: {e}"
        return rec
    if m is not None:
        (Path(out_dir) / "metrics.json").write_text(json.dumps(m, indent=1))
        rec.update(summarize(m))
    return rec
