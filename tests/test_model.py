"""Match R-CNN (export/): training lowers the loss, checkpoints round-trip, bad checkpoints fail clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

sys.path.insert(0, str(Path(__file__).parent))
from tiny_df2 import make_tiny_dataset  # noqa: E402

from df2infer.ops.letterbox import letterbox_geometry  # noqa: E402
from df2infer_export.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint  # noqa: E402
from df2infer_export.config import load_config  # noqa: E402
from df2infer_export.data import DF2TorchDataset, PairBatchSampler, collate  # noqa: E402
from df2infer_export.model import build_model  # noqa: E402

TINY = [
    "model.input_size=128",
    "model.backbone_widths=[16,24,32,48]",
    "model.fpn_channels=32",
    "model.box_fc=64",
    "model.mask_channels=16",
    "model.landmark_channels=16",
    "model.landmark_convs=2",
    "model.match_channels=[16,32]",
    "model.mask_pool=7",
    "model.landmark_pool=7",
    "model.match_pool=7",
    "model.rpn_post_nms_top_n_train=64",
    "model.rpn_post_nms_top_n_test=32",
    "model.box_batch_size_per_image=32",
    "model.max_detections=10",
    "model.max_pos_per_image=8",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("df2") / "tiny", n_images=8, size=128)


@pytest.fixture(scope="module")
def cfg():
    return load_config("small", TINY)


def _batch(root, size=128, n=4, train=True):
    ds = DF2TorchDataset(root, size, train=train, scale_jitter=(0.9, 1.0))
    idx = next(iter(PairBatchSampler(ds.anns, n, seed=0)))
    return collate([ds[i] for i in idx])


def test_letterbox_is_centered():
    s, nw, nh, px, py = letterbox_geometry(100, 200, (128, 128))
    assert (nw, nh, px, py) == (128, 64, 0, 32) and s == pytest.approx(0.64)


def test_dataset_targets(tiny):
    img, t = DF2TorchDataset(tiny, 128)[0]
    assert img.shape == (3, 128, 128) and img.dtype == torch.float32 and img.max() > 1
    n = t["boxes"].shape[0]
    assert t["masks"].shape == (n, 128, 128) and t["keypoints"].shape == (n, 294, 3)
    lab = int(t["labels"][0])
    from df2infer.data import spec

    c = spec.category(lab)
    vis = t["keypoints"][0, :, 2] > 0
    assert vis[c.slot_start : c.slot_end].all() and vis.sum() == c.num_landmarks
    # mask inside box
    ys, xs = torch.where(t["masks"][0] > 0)
    b = t["boxes"][0]
    assert xs.min() >= b[0] - 1 and xs.max() <= b[2] + 1 and ys.min() >= b[1] - 1 and ys.max() <= b[3] + 1


def test_training_lowers_loss(tiny, cfg):
    torch.manual_seed(0)
    model = build_model(cfg["model"])
    model.train()
    images, targets = _batch(tiny, train=False)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = None
    for _ in range(25):
        losses = model(images, targets)
        assert set(losses) >= {"loss_objectness", "loss_classifier", "loss_mask", "loss_landmark", "loss_match"}
        loss = sum(losses.values())
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first, (first, float(loss.detach()))


def test_eval_outputs_and_static_heads(tiny, cfg):
    model = build_model(cfg["model"]).eval()
    images, _ = _batch(tiny, train=False)
    out = model(images)
    assert len(out) == 4
    o = out[0]
    n = o["boxes"].shape[0]
    assert n <= cfg["model"]["max_detections"]
    assert o["masks"].shape[1:] in ((14, 14),) or n == 0
    assert o["embeddings"].shape == (n, 256)
    # heads callable on pooled features with static shapes
    pooled = torch.randn(5, cfg["model"]["fpn_channels"], 7, 7)
    rh = model.roi_heads
    assert rh.mask_logits(pooled).shape == (5, 13, 14, 14)
    labels = torch.tensor([1, 2, 4, 7, 13])
    assert rh.landmark_logits(pooled, labels).shape == (5, 39, 14, 14)
    full = rh.landmark_logits(pooled)
    assert full.shape == (5, 294, 14, 14)
    gathered = rh.landmark_logits(pooled, labels)
    from df2infer.data import spec

    c = spec.category(2)
    torch.testing.assert_close(gathered[1, : c.num_landmarks], full[1, c.slot_start : c.slot_end], rtol=1e-4, atol=1e-5)
    assert torch.all(gathered[0, 25:] == 0)  # category 1 has 25 landmarks: padding channels are 0
    assert rh.embed(pooled).shape == (5, 256)


def test_checkpoint_round_trip(tmp_path, tiny, cfg):
    torch.manual_seed(1)
    model = build_model(cfg["model"]).eval()
    images, _ = _batch(tiny, train=False)
    with torch.no_grad():
        feats = model.backbone(model.normalize(images))
        emb = model.roi_heads.embed(torch.randn(3, cfg["model"]["fpn_channels"], 7, 7, generator=torch.Generator().manual_seed(0)))
    p = save_checkpoint(tmp_path / "m.pt", model, cfg, iteration=7)
    loaded, ck = load_model(p)
    loaded.eval()
    assert ck["iteration"] == 7
    with torch.no_grad():
        feats2 = loaded.backbone(loaded.normalize(images))
        emb2 = loaded.roi_heads.embed(torch.randn(3, cfg["model"]["fpn_channels"], 7, 7, generator=torch.Generator().manual_seed(0)))
        o1, o2 = model(images), loaded(images)
    for k in feats:
        assert torch.equal(feats[k], feats2[k])
    assert torch.equal(emb, emb2)
    for a, b in zip(o1, o2):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_truncated_checkpoint_names_file(tmp_path, cfg):
    model = build_model(cfg["model"])
    p = save_checkpoint(tmp_path / "good.pt", model, cfg)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_misshaped_checkpoint_lists_keys(tmp_path, cfg):
    model = build_model(cfg["model"])
    p = save_checkpoint(tmp_path / "m.pt", model, cfg)
    ck = torch.load(p, weights_only=True)
    ck["model"]["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(3, 3)
    del ck["model"]["rpn.head.cls_logits.bias"]
    ck["model"]["extra.key"] = torch.zeros(1)
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "bad.pt")
    msg = str(e.value)
    assert "bad.pt" in msg and "roi_heads.box_predictor.cls_score.weight" in msg
    assert "rpn.head.cls_logits.bias" in msg and "extra.key" in msg


@pytest.mark.slow
def test_train_cli_resume_and_predict(tmp_path, tiny):
    from df2infer.apps.main import main

    out = tmp_path / "run"
    sets = ["--set", *TINY, "train.log_every=2", "train.ckpt_every=3", "train.warmup_iters=2"]
    assert main(["train", "--data", str(tiny), "--out", str(out), "--iters", "3", "--no-progress", *sets]) == 0
    assert read_checkpoint(out / "last.pt")["iteration"] == 3
    assert main(["train", "--data", str(tiny), "--out", str(out), "--iters", "5", "--resume", "--no-progress", *sets]) == 0
    assert read_checkpoint(out / "last.pt")["iteration"] == 5
    # the worker's batches came through shared memory: torch's references to them are dropped once training
    # returns (left until exit, each would print an "Exception ignored ... _free_weak_ref" traceback there)
    from torch.multiprocessing.reductions import shared_cache

    assert not [k for k, ref in shared_cache.items() if ref.expired()], "dead shared-memory references left after training"
    res = tmp_path / "res"
    assert main(["predict-torch", "--checkpoint", str(out / "model.pt"), "--data", str(tiny), "--out", str(res), "--eval"]) == 0
    for k in ("bbox", "segm", "keys", "retrieval"):
        assert (res / f"{k}.json").exists()


def test_committed_checkpoint_finds_the_items_of_a_synthetic_image():
    """The bundled checkpoint loads and finds the garments of images it never saw (a seed used
    neither for training nor for the held-out split): most ground-truth items get a detection of
    the right category with box IoU >= 0.5."""
    import numpy as np

    from df2infer.ops.boxes import box_iou
    from df2infer.ops.letterbox import letterbox
    from df2infer.synth.generator import plan, render_image

    model, _ = load_model(Path(__file__).resolve().parent.parent / "export" / "checkpoints" / "match_rcnn_small_synth.pt")
    model.eval()
    S = model.input_size
    found = total = 0
    for i, entry in enumerate(plan(6, 31337)):
        img, _, ann = render_image(entry, 31337, i)
        canvas, info = letterbox(img[:, :, ::-1], (S, S))
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1))).float()[None])[0]
        keep = out["scores"] >= 0.3
        boxes = info.to_original(out["boxes"][keep].numpy().reshape(-1, 2)).reshape(-1, 4)
        labels = out["labels"][keep].numpy()
        for it in ann.items:
            total += 1
            same = labels == it.category_id
            if same.any() and box_iou(np.asarray([it.bbox]), boxes[same], np.float64).max() >= 0.5:
                found += 1
    assert total > 0 and found / total >= 0.6, f"found {found} of {total} items"
