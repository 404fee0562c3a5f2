"""Torch data set over a DeepFashion2-format folder, and a pair-aware batch sampler.

Geometry (the runtime must do the same): **centered letterbox** to a square S x S canvas.
    scale = min(S / w, S / h); nw, nh = round(w * scale), round(h * scale)
    pad_x = (S - nw) // 2; pad_y = (S - nh) // 2; fill 114 on all channels;
    resized by df2infer.ops.letterbox.resize_bilinear (OpenCV's bit-exact INTER_LINEAR_EXACT)
    x_input = x_image * scale + pad_x      (so x_image = (x_input - pad_x) / scale)
Images are RGB float32 0..255 (the model normalises internally).

Training augmentation: scale jitter (the letterbox scale times a factor in `scale_jitter`, the
shrunk image placed at a random offset inside the canvas) and colour jitter (brightness, contrast,
saturation, per-channel gain). No horizontal flip: DeepFashion2 gives no left/right landmark
permutation per category, and a wrong one would teach mirrored landmarks.

Targets per image: boxes float32 [n, 4] (x1, y1, x2, y2 input pixels), labels int64 [n] (1..13),
masks uint8 [n, S, S] (rasterised polygons), keypoints float32 [n, 294, 3] (the item's own
category's slots filled, v = 0 elsewhere), style int64 [n], pair_id, source (1 user, 0 shop),
image_id (scalars) and meta (scale, pad_x, pad_y, width, height).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

from df2infer.contract import PAD_VALUE
from df2infer.data import load_dataset, spec
from df2infer.data.annotations import Dataset as DF2Folder
from df2infer.images import read_image
from df2infer.ops.letterbox import letterbox as runtime_letterbox
from df2infer.ops.letterbox import letterbox_geometry, resize_bilinear


def letterbox(img: np.ndarray, size: int, scale: float | None = None, pad: tuple[int, int] | None = None):
    """Letterbox an HWC uint8 image; returns (canvas, scale, pad_x, pad_y).

    Without `scale` this is exactly the runtime's letterbox (df2infer.ops.letterbox.letterbox). With
    `scale` (training scale jitter) the image is resized by that factor and placed at `pad`."""
    if scale is None:
        canvas, info = runtime_letterbox(img, (size, size), pad_value=PAD_VALUE)
        return canvas, info.scale, info.pad_x, info.pad_y
    h, w = img.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    px, py = pad if pad is not None else ((size - nw) // 2, (size - nh) // 2)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    resized = resize_bilinear(img, nw, nh)
    canvas[py : py + nh, px : px + nw] = resized[: size - py, : size - px]
    return canvas, scale, px, py


def read_rgb(path) -> np.ndarray:
    """The runtime's image reader (df2infer.images.read_image), as RGB."""
    return cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)


def color_jitter(img: np.ndarray, strength: float, rng: random.Random) -> np.ndarray:
    x = img.astype(np.float32)
    b = 1 + rng.uniform(-strength, strength)
    c = 1 + rng.uniform(-strength, strength)
    s = 1 + rng.uniform(-strength, strength)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * s
    x = (x - x.mean()) * c + x.mean()
    x = x * b * np.array([1 + rng.uniform(-strength, strength) * 0.3 for _ in range(3)], dtype=np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


class DF2TorchDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        root,
        input_size: int,
        train: bool = False,
        scale_jitter=(0.7, 1.0),
        color_jitter: float = 0.0,
        seed: int = 0,
        folder: DF2Folder | None = None,
    ):
        self.folder = folder if folder is not None else load_dataset(Path(root))
        self.size = int(input_size)
        self.train = train
        self.scale_jitter = tuple(scale_jitter)
        self.color = float(color_jitter)
        self.seed = seed
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.folder)

    @property
    def anns(self):
        return self.folder.images

    def __getitem__(self, i: int):
        ann = self.folder.images[i]
        img = read_rgb(self.folder.image_path(ann))
        h, w = img.shape[:2]
        S = self.size
        rng = random.Random()
        if self.train:
            s = letterbox_geometry(h, w, (S, S)).scale * rng.uniform(*self.scale_jitter)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            pad = (rng.randint(0, max(0, S - nw)), rng.randint(0, max(0, S - nh)))
            canvas, scale, px, py = letterbox(img, S, s, pad)
            if self.color > 0:
                canvas = color_jitter(canvas, self.color, rng)
        else:
            canvas, scale, px, py = letterbox(img, S)
        boxes, labels, masks, kps, styles = [], [], [], [], []
        for it in ann.items:
            x1, y1, x2, y2 = it.bbox
            b = np.clip(np.array([x1, y1, x2, y2]) * scale + [px, py, px, py], 0, S)
            if b[2] - b[0] < 2 or b[3] - b[1] < 2:
                continue
            m = np.zeros((S, S), dtype=np.uint8)
            polys = [np.round((np.asarray(p).reshape(-1, 2) * scale + [px, py]) * 16).astype(np.int32) for p in it.segmentation]
            cv2.fillPoly(m, polys, 1, lineType=cv2.LINE_8, shift=4)
            k = it.landmarks_294().astype(np.float32)
            vis = k[:, 2] > 0
            k[vis, 0] = k[vis, 0] * scale + px
            k[vis, 1] = k[vis, 1] * scale + py
            boxes.append(b)
            labels.append(it.category_id)
            masks.append(m)
            kps.append(k)
            styles.append(it.style)
        n = len(boxes)
        target = {
            "boxes": torch.as_tensor(np.array(boxes, dtype=np.float32).reshape(n, 4)),
            "labels": torch.as_tensor(np.array(labels, dtype=np.int64).reshape(n)),
            "masks": torch.from_numpy(np.array(masks, dtype=np.uint8).reshape(n, S, S)),
            "keypoints": torch.from_numpy(np.array(kps, dtype=np.float32).reshape(n, spec.NUM_LANDMARKS, 3)),
            "style": torch.as_tensor(np.array(styles, dtype=np.int64).reshape(n)),
            "pair_id": torch.tensor(int(ann.pair_id)),
            "source": torch.tensor(1 if ann.source == "user" else 0),
            "image_id": torch.tensor(int(ann.image_id)),
            "meta": {"scale": scale, "pad_x": px, "pad_y": py, "width": w, "height": h},
        }
        image = torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1))).float()
        return image, target


class PairBatchSampler(torch.utils.data.Sampler):
    """Endless batches; each holds `pair_fraction` of its images as (shop, consumer) pairs that
    share a pair_id (and at least one style > 0 item), the rest random images. The second and
    later pairs of a batch are drawn from products of the same category as the first (hard
    negatives for the matching loss)."""

    def __init__(self, anns, batch_size: int, pair_fraction: float = 1.0, seed: int = 0, start: int = 0):
        self.batch_size = batch_size
        self.n = len(anns)
        self.rng = random.Random(seed * 1000003 + start)
        by = defaultdict(lambda: {"shop": [], "user": []})
        for i, a in enumerate(anns):
            if any(it.style > 0 for it in a.items):
                by[a.pair_id][a.source].append(i)
        self.pairs = [(v["shop"], v["user"]) for v in by.values() if v["shop"] and v["user"]]
        self.n_pairs = int(batch_size * pair_fraction) // 2 if self.pairs else 0
        # hard negatives: later pairs in a batch share a category with the first pair, so the
        # matching loss sees same-category items of different products (not only easy ones)
        self.cats = [{it.category_id for i in sh + us for it in anns[i].items if it.style > 0} for sh, us in self.pairs]
        self.by_cat = defaultdict(list)
        for k, cs in enumerate(self.cats):
            for c in cs:
                self.by_cat[c].append(k)

    def __iter__(self):
        while True:
            batch = []
            first = None
            for _ in range(self.n_pairs):
                if first is None:
                    k = first = self.rng.randrange(len(self.pairs))
                else:
                    c = self.rng.choice(sorted(self.cats[first])) if self.cats[first] else None
                    pool = [j for j in self.by_cat.get(c, []) if j != first]
                    k = self.rng.choice(pool) if pool else self.rng.randrange(len(self.pairs))
                shop, user = self.pairs[k]
                batch += [self.rng.choice(shop), self.rng.choice(user)]
            while len(batch) < self.batch_size:
                batch.append(self.rng.randrange(self.n))
            yield batch

    def __len__(self):  # endless; DataLoader asks only when len() is used
        return 2**31


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
