"""The whole synthetic DeepFashion2 data set: identities (pair_id + style), shop and consumer images.

Determinism: everything comes from numpy Generators seeded by (seed, purpose, index); no global RNG,
no clock. The plan (identities and which image shows what) is drawn first from one stream; each
image then draws its own placement and effects from its own stream, so image k does not depend on
how the others were rendered.

Identities: a pair_id is a product set of one or two garments (style 1, 2) with a fixed category,
shape and look. Each pair_id gets one or two shop images (plain light background, frontal, large,
worn by a model or laid flat) and one to three consumer images (cluttered background, rotation,
perspective, scale 0.15-0.9, side/back views, lighting, blur, noise, JPEG artefacts, distractors).
Consumer images add style-0 garments (never paired) to complete the outfit (trousers under a top,
a jacket over a dress) and sometimes a second, smaller person.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..data import spec
from ..data.annotations import ImageAnnotation, Item, write_annotation
from . import garments, scene
from .garments import BOTTOMS, DRESSES, OUTWEAR, TOPS

LAYER_RANK = {**{c: 0 for c in BOTTOMS}, **{c: 1 for c in TOPS + DRESSES}, **{c: 2 for c in OUTWEAR}}


def random_product(cid: int, rng: np.random.Generator) -> dict:
    """A garment of category cid: its shape and look, drawn from rng (a product identity)."""
    return {"category_id": cid, "shape": garments.sample_shape(cid, rng), "look": scene.sample_look(rng)}


def _complement(cid: int, rng: np.random.Generator) -> int | None:
    """A category worn together with cid (under or over it), or None."""
    if cid in TOPS:
        return int(rng.choice(BOTTOMS))
    if cid in BOTTOMS:
        return int(rng.choice(TOPS + OUTWEAR))
    if cid in DRESSES:
        return int(rng.choice(OUTWEAR))
    return int(rng.choice(TOPS + DRESSES + BOTTOMS))


def plan(n_images: int, seed: int) -> list[dict]:
    """The image list: per image its source, pair_id and the products it shows."""
    rng = np.random.default_rng([seed, 0])
    images: list[dict] = []
    pid = 0
    while len(images) < n_images:
        remaining = n_images - len(images)
        if remaining == 1 and images:
            last = [im for im in images if im["pair_id"] == pid]
            images.append({"source": "user", "pair_id": pid, "products": last[0]["products"], "show": None})
            break
        pid += 1
        cid = int(rng.integers(1, 14))
        products = [random_product(cid, rng)]
        if rng.random() < 0.35:
            c2 = _complement(cid, rng)
            if c2 is not None:
                products.append(random_product(c2, rng))
        for k, p in enumerate(products, 1):
            p["style"] = k
        n_shop = 2 if (rng.random() < 0.2 and remaining >= 4) else 1
        n_user = min(int(rng.integers(1, 4)), remaining - n_shop)
        for _ in range(n_shop):
            images.append({"source": "shop", "pair_id": pid, "products": products, "show": None})
        for _ in range(n_user):
            images.append({"source": "user", "pair_id": pid, "products": products, "show": None})
    images = images[:n_images]
    order = rng.permutation(len(images))
    return [images[i] for i in order]


def _image_size(rng: np.random.Generator, portrait_bias: float) -> tuple[int, int]:
    long_side = int(rng.integers(400, 641))
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.0))))
    short = int(round(long_side * aspect))
    return (short, long_side) if rng.random() < portrait_bias else (long_side, short)


def outfit_bounds(entries: list[dict]) -> tuple[float, float, float, float]:
    b = np.array([garments.build(e["category_id"], e["shape"]).bounds() for e in entries])
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def body_layers(entries: list[dict], H: np.ndarray, skin: tuple, rng) -> list[scene.Layer]:
    """Head, neck, arms and legs (unannotated), painted under the garments."""
    head_a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    head = np.stack([0.17 * np.cos(head_a), -0.33 + 0.22 * np.sin(head_a)], 1)
    hair = np.stack([0.19 * np.cos(head_a), -0.40 + 0.19 * np.sin(head_a)], 1)
    hair = hair[hair[:, 1] < -0.35]
    parts = [
        head,
        np.array([[-0.08, -0.15], [0.08, -0.15], [0.08, 0.1], [-0.08, 0.1]]),
        np.array([[-0.4, 0.08], [0.4, 0.08], [0.36, 1.25], [-0.36, 1.25]]),
    ]
    cats = [e["category_id"] for e in entries]
    upper = [e for e in entries if e["category_id"] in TOPS + DRESSES + OUTWEAR]
    if upper:
        sh = upper[0]["shape"]
        a = sh["angle"]
        d = np.array([-np.sin(a), np.cos(a)])
        n = np.array([np.cos(a), np.sin(a)])
        s = np.array([-sh["sh"] + 0.05, 0.12])
        arm = np.array([s, s + 1.15 * d, s + 1.15 * d + 0.13 * n, s + 0.2 * n])
        parts += [arm, arm * [-1, 1]]
    if not any(c in (8,) for c in cats):
        top = 1.1
        leg = np.array([[-0.32, top], [-0.05, top], [-0.08, 3.2], [-0.26, 3.2]])
        parts += [leg, leg * [-1, 1]]
    layers = [scene.Layer(parts, H, None, color=skin)]
    if len(hair) >= 3:
        layers.append(scene.Layer([hair], H, None, color=tuple(float(v) for v in rng.uniform(10, 90, 3))))
    return layers


def outfit_layers(entries: list[dict], H: np.ndarray, rng, *, flat=False, meta=None) -> list[scene.Layer]:
    entries = sorted(entries, key=lambda e: LAYER_RANK[e["category_id"]])
    out = []
    shade = float(rng.uniform(0.0, 0.25))
    for e in entries:
        out.append(scene.garment_layer(e["category_id"], e["shape"], e["look"], e["style"], H, flat=flat, shade=shade, meta=meta))
    return out


def fill_outfit(products: list[dict], rng) -> list[dict]:
    """Consumer outfit: the products shown (at least one) plus style-0 garments to complete it."""
    shown = [p for p in products if rng.random() < 0.8] or [products[int(rng.integers(0, len(products)))]]
    cats = {p["category_id"] for p in shown}
    extra = []
    has_upper = bool(cats & set(TOPS + DRESSES))
    has_lower = bool(cats & set(BOTTOMS + DRESSES))
    has_out = bool(cats & set(OUTWEAR))
    if has_out and not has_upper and rng.random() < 0.8:
        extra.append(int(rng.choice(TOPS + DRESSES)))
    elif not has_upper and not has_out and rng.random() < 0.8:
        extra.append(int(rng.choice(TOPS)))
    if not has_lower and not any(c in DRESSES for c in extra) and rng.random() < 0.75:
        extra.append(int(rng.choice(BOTTOMS)))
    if not has_out and len(shown) + len(extra) < 3 and rng.random() < 0.25:
        extra.append(int(rng.choice(OUTWEAR)))
    return shown + [dict(random_product(c, rng), style=0) for c in extra]


def render_image(entry: dict, seed: int, index: int):
    """Render one planned image; returns (BGR image, jpeg quality, ImageAnnotation without ids).

    A draw that leaves no product item (style > 0) visible is redrawn from the next stream."""
    for attempt in range(8):
        img, q, ann = _render_once(entry, np.random.default_rng([seed, 1, index, attempt]))
        if any(it.style > 0 for it in ann.items):
            break
    return img, q, ann


def _render_once(entry: dict, rng: np.random.Generator):
    shop = entry["source"] == "shop"
    if shop:
        w, h = _image_size(rng, 0.75)
        bg = scene.shop_background(w, h, rng)
        products = entry["products"]
        shown = products if (len(products) == 1 or rng.random() < 0.6) else [products[int(rng.integers(0, len(products)))]]
        layers: list[scene.Layer] = []
        if rng.random() < 0.45:  # flat lay, no wear: items side by side
            k = len(shown)
            for j, p in enumerate(shown):
                b = garments.build(p["category_id"], p["shape"]).bounds()
                cw = w / k
                H = scene.placement(b, int(cw), h, rng, frac=rng.uniform(0.7, 0.9))
                H = np.array([[1, 0, j * cw], [0, 1, 0], [0, 0, 1]]) @ H
                layers += outfit_layers([p], H, rng, flat=True)
        else:  # worn by a model, frontal
            b = outfit_bounds(shown)
            H = scene.placement(
                b,
                w,
                h,
                rng,
                frac=rng.uniform(0.75, 0.95),
                persp=rng.uniform(0, 0.015),
                center=(w * rng.uniform(0.45, 0.55), h * rng.uniform(0.48, 0.55)),
            )
            layers += body_layers(shown, H, random_skin(rng), rng) + outfit_layers(shown, H, rng)
        img, anns = scene.render(bg, layers)
        img = scene.photometric(img, rng, strength=0.15)
        quality = int(rng.integers(85, 96))
    else:
        w, h = _image_size(rng, 0.5)
        bg = scene.user_background(w, h, rng)
        outfit = fill_outfit(entry["products"], rng)
        layers = []
        # distractors behind
        for _ in range(int(rng.integers(0, 3))):
            layers.append(_distractor(w, h, rng))
        persons = [outfit]
        if len(outfit) <= 2 and rng.random() < 0.2:
            persons.append(fill_outfit([random_product(int(rng.integers(1, 14)), rng)], rng))
            for e in persons[1]:
                e["style"] = 0
            persons[1] = persons[1][: 4 - len(outfit)]
        # draw the secondary (smaller, further) person first
        for pi, items in reversed(list(enumerate(persons))):
            b = outfit_bounds(items)
            frac = float(np.exp(rng.uniform(np.log(0.3), np.log(1.15)))) if pi == 0 else rng.uniform(0.2, 0.5)
            side = rng.random() < 0.22
            squeeze = rng.uniform(0.5, 0.7) if side else rng.uniform(0.92, 1.05)
            flip = side and rng.random() < 0.5
            margin = 0.5 * frac
            if rng.random() < 0.25:  # partly out of frame (zoom-in)
                center = (w * rng.uniform(-0.05, 1.05), h * rng.uniform(0.0, 1.0))
            else:
                center = (
                    w * rng.uniform(min(0.5, margin * 0.6), max(0.5, 1 - margin * 0.6)),
                    h * rng.uniform(min(0.5, margin), max(0.5, 1 - margin)),
                )
            H = scene.placement(
                b, w, h, rng, frac=frac, rot_deg=rng.normal(0, 9), squeeze=squeeze, flip=flip, persp=rng.uniform(0, 0.06), center=center
            )
            layers += body_layers(items, H, random_skin(rng), rng) + outfit_layers(items, H, rng)
        for _ in range(int(rng.integers(0, 3))):
            if rng.random() < 0.4:  # in front: occludes garments
                layers.append(_distractor(w, h, rng))
        img, anns = scene.render(bg, layers)
        img = scene.photometric(img, rng, strength=1.0)
        quality = int(rng.integers(35, 92))
    anns = anns[:4]
    items = [
        Item(
            category_id=a["category_id"],
            style=a["style"],
            bbox=a["bbox"],
            landmarks=a["landmarks"],
            segmentation=a["segmentation"],
            scale=a["scale"],
            occlusion=a["occlusion"],
            zoom_in=a["zoom_in"],
            viewpoint=a["viewpoint"],
        )
        for a in anns
    ]
    ann = ImageAnnotation(0, "", entry["source"], entry["pair_id"], items, w, h)
    return img, quality, ann


def random_skin(rng) -> tuple:
    """A skin colour (BGR floats)."""
    base = np.array([[150, 180, 225], [120, 150, 200], [70, 100, 150], [45, 65, 100]], np.float64)
    c = base[int(rng.integers(0, 4))] + rng.uniform(-12, 12, 3)
    return tuple(float(v) for v in c)


def _distractor(w: int, h: int, rng) -> scene.Layer:
    parts = garments.distractor(rng)
    size = rng.uniform(0.08, 0.35) * min(w, h)
    t = np.deg2rad(rng.uniform(0, 360))
    A = np.array(
        [[size * np.cos(t), -size * np.sin(t), rng.uniform(0, w)], [size * np.sin(t), size * np.cos(t), rng.uniform(0, h)], [0, 0, 1]]
    )
    col = tuple(float(v) for v in rng.uniform(0, 255, 3))
    tex = None
    if rng.random() < 0.5:
        tex = scene.make_texture(scene.sample_look(rng))
        A = A @ np.diag([2.0, 2.0, 1.0])  # texture frame units are larger; keep shape size
        parts = [p / 2.0 for p in parts]
    return scene.Layer(parts, A, tex, color=col)


def generate(out: str | Path, n_images: int, seed: int, *, log=print) -> dict:
    """Write out/image/NNNNNN.jpg and out/annos/NNNNNN.json; returns a small summary."""
    out = Path(out)
    (out / "image").mkdir(parents=True, exist_ok=True)
    (out / "annos").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    entries = plan(n_images, seed)
    anns = []
    for i, e in enumerate(entries):
        img, q, ann = render_image(e, seed, i)
        stem = f"{i + 1:06d}"
        ann.image_id, ann.file_name = i + 1, stem + ".jpg"
        (out / "image" / ann.file_name).write_bytes(scene.encode_jpeg(img, q))
        anns.append(ann)
        if log and (i + 1) % 500 == 0:
            log(f"  {i + 1}/{n_images} images, {time.perf_counter() - t0:.1f} s")
    unpaired = unpair_orphans(anns)
    for ann in anns:
        write_annotation(ann, out / "annos" / f"{ann.image_id:06d}.json")
    if log and unpaired:
        log(f"  {unpaired} consumer item(s) whose product is in no shop image set to style 0")
    return {"images": n_images, "seconds": time.perf_counter() - t0}


def unpair_orphans(anns: list) -> int:
    """Set style 0 on consumer items whose (pair_id, style) no shop item of the set shows (the shop
    image's copy was hidden or cropped away). DeepFashion2's protocol counts every consumer item with
    style > 0 as a query that has a shop match; an orphan would be a query that cannot be answered."""
    in_shop = {(a.pair_id, it.style) for a in anns if a.source == "shop" for it in a.items if it.style > 0}
    n = 0
    for a in anns:
        if a.source != "user":
            continue
        for it in a.items:
            if it.style > 0 and (a.pair_id, it.style) not in in_shop:
                it.style = 0
                n += 1
    return n


def stats(root: str | Path, *, log=print) -> dict:
    """Counts over a generated (or any DeepFashion2-format) folder, printed and returned."""
    root = Path(root)
    per_image = []
    img_cat: Counter = Counter()
    item_cat: Counter = Counter()
    occ = Counter()
    v1 = vpos = 0
    shop: dict = {}
    user: dict = {}
    style0 = 0
    sources = Counter()
    attrs = {k: Counter() for k in ("scale", "zoom_in", "viewpoint")}
    for jp in sorted((root / "annos").glob("*.json")):
        d = json.loads(jp.read_text())
        sources[d["source"]] += 1
        items = [v for k, v in d.items() if k.startswith("item")]
        per_image.append(len(items))
        for c in {it["category_id"] for it in items}:
            img_cat[c] += 1
        for it in items:
            item_cat[it["category_id"]] += 1
            occ[it["occlusion"]] += 1
            for k in attrs:
                attrs[k][it[k]] += 1
            v = np.asarray(it["landmarks"]).reshape(-1, 3)[:, 2]
            v1 += int((v == 1).sum())
            vpos += int((v > 0).sum())
            if it["style"] > 0:
                key = (d["pair_id"], it["style"])
                bucket = shop if d["source"] == "shop" else user
                bucket[key] = bucket.get(key, 0) + 1
            else:
                style0 += 1
    n_items = sum(item_cat.values())
    pairs = sum(n * shop.get(k, 0) for k, n in user.items())
    res = {
        "images": len(per_image),
        "shop_images": sources["shop"],
        "user_images": sources["user"],
        "items": n_items,
        "items_per_image": dict(sorted(Counter(per_image).items())),
        "mean_items_per_image": round(n_items / max(1, len(per_image)), 3),
        "images_per_category": {spec.category(c).name: img_cat[c] for c in range(1, 14)},
        "items_per_category": {spec.category(c).name: item_cat[c] for c in range(1, 14)},
        "occlusion_medium_share": round(occ[2] / max(1, n_items), 3),
        "occlusion_heavy_share": round(occ[3] / max(1, n_items), 3),
        "landmark_v1_share": round(v1 / max(1, vpos), 3),
        "style0_items": style0,
        "consumer_shop_pairs": pairs,
        "scale": dict(sorted(attrs["scale"].items())),
        "zoom_in": dict(sorted(attrs["zoom_in"].items())),
        "viewpoint": dict(sorted(attrs["viewpoint"].items())),
    }
    if log:
        log(f"stats for {root}:")
        for k, v in res.items():
            log(f"  {k}: {v}")
    return res
