"""Compose one synthetic image: background, textured garments in layering order, distractors,
photometric effects; and derive the DeepFashion2 ground truth from the geometry.

Attribute rules (computed from the rendered geometry, never drawn at random):
- scale: visible box area / image area < 0.10 -> 1 small, < 0.35 -> 2 moderate, else 3 large.
- occlusion: share of the item's full in-image mask hidden by layers in front (garments or
  distractors): < 0.10 -> 1 slight, < 0.40 -> 2 medium, else 3 heavy.
- zoom_in: share of the item's whole (unclipped) mask cut off by the image border: < 0.05 -> 1 none,
  < 0.25 -> 2 medium, else 3 large. Items cut by more than half are not drawn at all.
- viewpoint: 1 for non-worn (flat-lay) shop items; for worn items the transform's horizontal
  compression at the torso (|dx| / |dy| of the Jacobian) and its orientation decide: mirrored (a back
  view) or compressed below 0.78 (a side view) -> 3, otherwise 2 frontal.
- landmarks: outside the image -> (0, 0, 0); under a layer in front -> v = 1; otherwise v = 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import garments

TEX_X0, TEX_Y0, TEX_PPU = -1.9, -0.7, 80.0  # canonical -> texture pixels
TEX_W, TEX_H = int(3.8 * TEX_PPU), int(4.4 * TEX_PPU)
_TEX_TO_CANON = np.array([[1 / TEX_PPU, 0, TEX_X0], [0, 1 / TEX_PPU, TEX_Y0], [0, 0, 1]])
SHIFT = 3  # fixed-point bits for cv2.fillPoly


def scale_class(frac: float) -> int:
    return 1 if frac < 0.10 else (2 if frac < 0.35 else 3)


def occlusion_class(hidden: float) -> int:
    return 1 if hidden < 0.10 else (2 if hidden < 0.40 else 3)


def zoom_class(cut: float) -> int:
    return 1 if cut < 0.05 else (2 if cut < 0.25 else 3)


# ---------------------------------------------------------------- looks and textures


def random_color(rng: np.random.Generator, *, light: bool | None = None) -> np.ndarray:
    h = rng.uniform(0, 180)
    s = rng.uniform(40, 230)
    v = rng.uniform(150, 250) if light else (rng.uniform(40, 140) if light is False else rng.uniform(50, 245))
    hsv = np.uint8([[[h, s, v]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def sample_look(rng: np.random.Generator) -> dict:
    """A clothing identity's appearance: base colour and pattern (regenerated from its seed)."""
    return {"pattern": ["stripes", "checks", "dots", "print"][int(rng.integers(0, 4))], "seed": int(rng.integers(0, 2**31 - 1))}


_TEX_CACHE: dict[int, np.ndarray] = {}


def make_texture(look: dict) -> np.ndarray:
    """uint8 BGR texture in the canonical frame (TEX_W x TEX_H); identical for the same look."""
    key = look["seed"] * 4 + ["stripes", "checks", "dots", "print"].index(look["pattern"])
    if key in _TEX_CACHE:
        return _TEX_CACHE[key]
    rng = np.random.default_rng(look["seed"])
    base = random_color(rng)
    other = random_color(rng, light=bool(base.mean() < 128))
    yy, xx = np.mgrid[0:TEX_H, 0:TEX_W].astype(np.float32)
    tex = np.empty((TEX_H, TEX_W, 3), np.float32)
    tex[:] = base
    pat = look["pattern"]
    if pat in ("stripes", "checks"):
        ang = rng.uniform(0, np.pi) if pat == "stripes" else 0.0
        period = rng.uniform(8, 28)
        duty = rng.uniform(0.2, 0.5)
        u = (xx * np.cos(ang) + yy * np.sin(ang)) / period
        m = (u - np.floor(u)) < duty
        if pat == "checks":
            v = yy / period
            m2 = (v - np.floor(v)) < duty
            tex[m] = 0.5 * base + 0.5 * other
            tex[m2] = 0.5 * base + 0.5 * other
            tex[m & m2] = other
        else:
            tex[m] = other
    elif pat == "dots":
        step = rng.uniform(12, 30)
        r = step * rng.uniform(0.15, 0.35)
        off = (yy // step) % 2 * step / 2 if rng.random() < 0.5 else 0
        dx = (xx + off) % step - step / 2
        dy = yy % step - step / 2
        tex[dx * dx + dy * dy < r * r] = other
    else:  # print: random blobs in two or three colours
        cols = [other, random_color(rng)]
        for _ in range(int(rng.integers(25, 70))):
            c = cols[int(rng.integers(0, len(cols)))]
            center = (int(rng.integers(0, TEX_W)), int(rng.integers(0, TEX_H)))
            axes = (int(rng.integers(4, 22)), int(rng.integers(4, 22)))
            cv2.ellipse(tex, center, axes, float(rng.uniform(0, 180)), 0, 360, c.tolist(), -1)
    noise = rng.normal(0, 6, (TEX_H // 4 + 1, TEX_W // 4 + 1)).astype(np.float32)
    tex += cv2.resize(noise, (TEX_W, TEX_H))[..., None]
    out = np.clip(tex, 0, 255).astype(np.uint8)
    if len(_TEX_CACHE) > 4096:
        _TEX_CACHE.clear()
    _TEX_CACHE[key] = out
    return out


# ---------------------------------------------------------------- backgrounds


def shop_background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(225, 252) + rng.uniform(-6, 6, 3)
    g = np.linspace(0, rng.uniform(-15, 5), h, dtype=np.float32)[:, None, None]
    img = np.empty((h, w, 3), np.float32)
    img[:] = c
    img += g
    return np.clip(img, 0, 255).astype(np.uint8)


def user_background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Cluttered: low-frequency colour field, floor/wall split, furniture boxes, lines, texture."""
    small = rng.uniform(30, 220, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.6:
        y = int(h * rng.uniform(0.5, 0.85))
        img[y:] = img[y:] * 0.6 + rng.uniform(40, 200, 3).astype(np.float32) * 0.4
    for _ in range(int(rng.integers(3, 12))):
        col = rng.uniform(0, 255, 3).tolist()
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))), col, -1)
        elif kind == 1:
            cv2.line(img, (x0, y0), (int(rng.integers(0, w)), int(rng.integers(0, h))), col, int(rng.integers(1, 6)))
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(5, max(6, w // 6))), col, -1)
    noise = rng.normal(0, rng.uniform(2, 12), (h // 2 + 1, w // 2 + 1)).astype(np.float32)
    img += cv2.resize(noise, (w, h))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- geometry


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64)
    q = p @ H[:, :2].T + H[:, 2]
    return q[:, :2] / q[:, 2:3]


def placement(
    bounds,
    w: int,
    h: int,
    rng: np.random.Generator,
    *,
    frac: float,
    rot_deg: float = 0.0,
    squeeze: float = 1.0,
    flip: bool = False,
    persp: float = 0.0,
    center=None,
) -> np.ndarray:
    """Homography mapping the canonical box `bounds` to the image: scale so the larger relative
    side is `frac` of the image, horizontal squeeze/flip, rotation, then corner jitter (perspective)."""
    x0, y0, x1, y1 = bounds
    cw, ch = x1 - x0, y1 - y0
    s = frac * min(w / (cw * squeeze), h / ch)
    cx, cy = center if center is not None else (w / 2, h / 2)
    src = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    loc = src - [(x0 + x1) / 2, (y0 + y1) / 2]
    loc[:, 0] *= s * squeeze * (-1 if flip else 1)
    loc[:, 1] *= s
    t = np.deg2rad(rot_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    dst = loc @ R.T + [cx, cy]
    if persp > 0:
        dst = dst + rng.uniform(-1, 1, (4, 2)) * persp * s * max(cw * squeeze, ch)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def viewpoint_of(H: np.ndarray, at=(0.0, 0.7)) -> int:
    e = 1e-3
    p = project(H, np.array([at, (at[0] + e, at[1]), (at[0], at[1] + e)]))
    ex, ey = (p[1] - p[0]) / e, (p[2] - p[0]) / e
    cross = ex[0] * ey[1] - ex[1] * ey[0]
    ratio = np.hypot(*ex) / max(np.hypot(*ey), 1e-9)
    return 3 if (cross < 0 or ratio < 0.78) else 2


def _fill(mask: np.ndarray, polys: list[np.ndarray], value=255) -> None:
    for p in polys:
        cv2.fillPoly(mask, [np.round(p * (1 << SHIFT)).astype(np.int32)], value, lineType=cv2.LINE_8, shift=SHIFT)


def _cut_fraction(polys: list[np.ndarray], w: int, h: int) -> float:
    """Share of the polygons' union lying outside the w x h image (rendered at low resolution)."""
    pts = np.concatenate(polys)
    x0, y0 = min(0.0, pts[:, 0].min()), min(0.0, pts[:, 1].min())
    x1, y1 = max(float(w), pts[:, 0].max()), max(float(h), pts[:, 1].max())
    f = 256.0 / max(x1 - x0, y1 - y0)
    cw, ch = int(np.ceil((x1 - x0) * f)) + 2, int(np.ceil((y1 - y0) * f)) + 2
    m = np.zeros((ch, cw), np.uint8)
    _fill(m, [(p - [x0, y0]) * f for p in polys], 1)
    total = int(m.sum())
    if total == 0:
        return 1.0
    ix0, iy0 = int(round(-x0 * f)), int(round(-y0 * f))
    inside = int(m[iy0 : iy0 + int(round(h * f)), ix0 : ix0 + int(round(w * f))].sum())
    return 1.0 - inside / total


# ---------------------------------------------------------------- layers and rendering


@dataclass
class Layer:
    parts: list[np.ndarray]  # canonical polygons
    H: np.ndarray  # canonical -> image
    texture: np.ndarray | None = None  # canonical-frame texture; None: flat colour
    color: tuple = (128, 128, 128)
    inner: list[np.ndarray] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)
    landmarks: np.ndarray | None = None
    annotate: bool = False
    category_id: int = 0
    style: int = 0
    flat: bool = False  # non-worn (viewpoint 1)
    shade: float = 0.0  # side-to-side light gradient strength
    meta: dict = field(default_factory=dict)


def garment_layer(
    cid: int, shape: dict, look: dict, style: int, H: np.ndarray, *, flat=False, annotate=True, shade=0.0, meta=None
) -> Layer:
    t = garments.build(cid, shape)
    return Layer(
        t.parts,
        H,
        make_texture(look),
        inner=t.inner,
        lines=t.lines,
        landmarks=t.landmarks,
        annotate=annotate,
        category_id=cid,
        style=style,
        flat=flat,
        shade=shade,
        meta=meta or {},
    )


def render(bg: np.ndarray, layers: list[Layer], *, min_inside: float = 0.5, min_visible_px: int = 80):
    """Paint layers back to front on a copy of bg; returns (image, annotations) where annotations are
    dicts for the annotated layers that remain visible, in painting order."""
    img = bg.copy()
    h, w = img.shape[:2]
    kept = []
    for L in layers:
        polys = [project(L.H, p) for p in L.parts]
        cut = _cut_fraction(polys, w, h)
        if L.annotate and cut > min_inside:
            continue  # mostly outside: not drawn at all, so nothing unlabelled appears
        if cut >= 0.999:
            continue
        kept.append((L, polys, cut))
    fulls = []
    for L, polys, _cut in kept:
        m = np.zeros((h, w), np.uint8)
        _fill(m, polys)
        fulls.append(m)
        allp = np.concatenate(polys)
        x0, y0 = max(0, int(np.floor(allp[:, 0].min()))), max(0, int(np.floor(allp[:, 1].min())))
        x1, y1 = min(w, int(np.ceil(allp[:, 0].max())) + 1), min(h, int(np.ceil(allp[:, 1].max())) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        T = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
        if L.texture is not None:
            M = T @ L.H @ _TEX_TO_CANON
            patch = cv2.warpPerspective(L.texture, M, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            patch = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
            patch[:] = L.color
        patch = patch.astype(np.float32)
        if L.shade:
            g = np.linspace(1 - L.shade, 1 + L.shade * 0.3, x1 - x0, dtype=np.float32)
            patch *= g[None, :, None]
        if L.inner:
            im = np.zeros((y1 - y0, x1 - x0), np.uint8)
            _fill(im, [project(T @ L.H, p) for p in L.inner], 1)
            patch[im.astype(bool)] *= 0.55
        for ln in L.lines:
            q = np.round(project(T @ L.H, ln) * (1 << SHIFT)).astype(np.int32)
            cv2.polylines(patch, [q], False, (0, 0, 0), 1, cv2.LINE_AA, SHIFT)
        q = [np.round(project(T @ L.H, p) * (1 << SHIFT)).astype(np.int32) for p in L.parts]
        edge = np.zeros_like(patch)
        cv2.polylines(edge, q, True, (1, 1, 1), 2, cv2.LINE_AA, SHIFT)
        patch = patch * (1 - 0.35 * edge)
        sel = m[y0:y1, x0:x1].astype(bool)
        roi = img[y0:y1, x0:x1]
        roi[sel] = np.clip(patch[sel], 0, 255).astype(np.uint8)
    # visibility, front to back
    cover = np.zeros((h, w), bool)
    out = [None] * len(kept)
    for i in range(len(kept) - 1, -1, -1):
        L, polys, cut = kept[i]
        full = fulls[i].astype(bool)
        if L.annotate:
            out[i] = _annotate(L, full, full & ~cover, cover, cut, w, h, min_visible_px)
        cover |= full
    return img, [a for a in out if a is not None]


def _annotate(L: Layer, full, vis, cover, cut, w, h, min_visible_px):
    n_full, n_vis = int(full.sum()), int(vis.sum())
    if n_vis < min_visible_px or n_full == 0:
        return None
    vis8 = vis.astype(np.uint8)
    contours, _ = cv2.findContours(vis8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    seg = []
    for c in contours:
        if cv2.contourArea(c) < 4:
            continue
        c = cv2.approxPolyDP(c, 0.7, True)
        if len(c) >= 3:
            seg.append([float(v) for v in c.reshape(-1)])
    if not seg:
        return None
    x, y, bw, bh = cv2.boundingRect(vis8)
    lm = project(L.H, L.landmarks)
    out_lm = np.zeros((len(lm), 3))
    for k, (px, py) in enumerate(lm):
        if not (0 <= px < w and 0 <= py < h):
            continue
        xi, yi = min(w - 1, int(px)), min(h - 1, int(py))
        out_lm[k] = (round(px, 2), round(py, 2), 1 if cover[yi, xi] else 2)
    return {
        "category_id": L.category_id,
        "style": L.style,
        "bbox": (float(x), float(y), float(x + bw), float(y + bh)),
        "landmarks": out_lm,
        "segmentation": seg,
        "scale": scale_class(bw * bh / float(w * h)),
        "occlusion": occlusion_class(1.0 - n_vis / n_full),
        "zoom_in": zoom_class(cut),
        "viewpoint": 1 if L.flat else viewpoint_of(L.H),
        "meta": L.meta,
    }


# ---------------------------------------------------------------- photometric effects


def photometric(img: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    """Colour cast, brightness/contrast, uneven light, blur (gaussian or motion), sensor noise."""
    f = img.astype(np.float32)
    h, w = f.shape[:2]
    gain = 1 + rng.uniform(-0.15, 0.15, 3) * strength
    f = f * gain.astype(np.float32)
    c = 1 + rng.uniform(-0.3, 0.2) * strength
    b = rng.uniform(-35, 25) * strength
    f = (f - 128) * c + 128 + b
    if rng.random() < 0.6 * strength:
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)) * rng.uniform(0.2, 0.6)
        f *= (1 + g)[..., None]
    r = rng.random()
    if r < 0.35 * strength:
        s = rng.uniform(0.5, 1.8)
        f = cv2.GaussianBlur(f, (0, 0), s)
    elif r < 0.5 * strength:
        k = int(rng.integers(3, 9))
        ker = np.zeros((k, k), np.float32)
        ker[k // 2] = 1.0 / k
        M = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
        ker = cv2.warpAffine(ker, M, (k, k))
        ker /= max(ker.sum(), 1e-6)
        f = cv2.filter2D(f, -1, ker)
    sigma = rng.uniform(0, 9) * strength
    if sigma > 0.5:
        f += rng.normal(0, sigma, f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return buf.tobytes()
