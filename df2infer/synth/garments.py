"""Garment silhouette templates for the 13 DeepFashion2 categories.

Every template lives in one canonical "body" frame (units: about half a shoulder width; y points
down; the neck sits at y = 0 on x = 0; tops end near y = 1.3, bottoms start at the waist near
y = 1.05, long dresses and trousers reach y = 3). Working in one frame lets an outfit (a top over
trousers, a jacket over a dress) be placed with a single transform.

A template is a set of polygons whose union is the garment mask. The landmarks ARE vertices of
those polygons (the front neckline points lie on the edge between the front panel and the visible
inside of the back, drawn as a darker region), so any geometric transform applied to the polygons
moves the landmarks with them.

Landmark order follows the DeepFashion2 layout (and mmpose's skeleton in spec): for tops and dresses
1 = back collar centre, 2 = neck point on the image-left side, 3-5 = front neckline, 6 = neck point
on the right, then from 7 on around the outline: shoulder, sleeve, cuff, armpit, side, hem corner,
hem (centre) and back up the other side. Outwear is open at the front: the left half goes neck ->
around -> hem at the front edge -> up the opening -> lapel -> neck, the right half the mirror, in the
order the spec's skeleton links them. Bottoms: 1-3 waistband, then around the legs / hem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import spec

TOPS = (1, 2, 5, 6)
OUTWEAR = (3, 4)
BOTTOMS = (7, 8, 9)
DRESSES = (10, 11, 12, 13)
SHORT_SLEEVE = (1, 3, 10)
LONG_SLEEVE = (2, 4, 11)


@dataclass
class Template:
    category_id: int
    parts: list[np.ndarray]  # float [k, 2] polygons, canonical frame; union = mask
    landmarks: np.ndarray  # float [n, 2], canonical frame
    inner: list[np.ndarray] = field(default_factory=list)  # darker regions (inside of the back)
    lines: list[np.ndarray] = field(default_factory=list)  # seams / hems drawn as polylines

    def bounds(self) -> tuple[float, float, float, float]:
        pts = np.concatenate(self.parts)
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _lerp(a, b, t):
    return (1 - t) * np.asarray(a, float) + t * np.asarray(b, float)


def sample_shape(category_id: int, rng: np.random.Generator) -> dict:
    """Random shape parameters for one clothing identity (fixed for all its images)."""
    c = category_id
    p = {
        "nw": rng.uniform(0.15, 0.21),  # neck half width
        "nd": rng.uniform(0.12, 0.30),  # front neckline depth
        "sh": rng.uniform(0.47, 0.55),  # shoulder half width
        "chest": rng.uniform(0.42, 0.50),  # half width at the armpit
        "waist_in": rng.uniform(0.0, 0.06),
        "flare": rng.uniform(-0.02, 0.12),
        "ah": rng.uniform(0.40, 0.50),  # armpit height
        "angle": np.deg2rad(rng.uniform(28, 50)),  # sleeve angle from vertical
        "cuff": rng.uniform(0.20, 0.28),
        "hem_curve": rng.uniform(-0.03, 0.06),
        "gap": rng.uniform(0.02, 0.14),  # outwear front opening (half)
        "lapel": rng.uniform(0.45, 0.75),  # outwear lapel bottom height
        "strap": rng.uniform(0.05, 0.09),
    }
    if c in SHORT_SLEEVE:
        p["sleeve"] = rng.uniform(0.28, 0.48)
    elif c in LONG_SLEEVE:
        p["sleeve"] = rng.uniform(0.95, 1.2)
        p["angle"] = np.deg2rad(rng.uniform(24, 40))
        p["cuff"] = rng.uniform(0.17, 0.23)
    if c in TOPS:
        p["length"] = rng.uniform(1.1, 1.35)
    elif c in OUTWEAR:
        p["length"] = rng.uniform(1.25, 1.9)
        p["sh"] += 0.05
        p["chest"] += 0.05
    elif c in DRESSES:
        p["length"] = rng.uniform(2.0, 2.9)
        p["flare"] = rng.uniform(0.05, 0.35)
    elif c == 7:
        p["length"] = rng.uniform(0.45, 0.75)
    elif c == 8:
        p["length"] = rng.uniform(1.85, 2.15)
    elif c == 9:
        p["length"] = rng.uniform(0.5, 1.3)
        p["flare"] = rng.uniform(0.05, 0.4)
    p["waist_y"] = rng.uniform(1.0, 1.1)
    p["waist_w"] = rng.uniform(0.36, 0.44)
    p["leg_spread"] = rng.uniform(0.0, 0.12)
    return {k: float(v) for k, v in p.items()}


def _left_half(
    p: dict, *, sleeve: str, n_sleeve_out: int, n_sleeve_in: int, n_side: int, n_hem: int, front_hem: bool = False
) -> list[tuple[np.ndarray, bool]]:
    """Left half outline after the neck point: shoulder .. hem (not the hem centre).

    Returns (point, is_landmark) pairs; non-landmark points only shape the outline.
    sleeve: "sleeve" (short/long), "vest" (armhole), "sling" (thin strap, no shoulder point).
    """
    out: list[tuple[np.ndarray, bool]] = []
    length = p["length"]
    armpit = np.array([-p["chest"], p["ah"]])
    if sleeve == "sleeve":
        s = np.array([-p["sh"], 0.09])
        a = p["angle"]
        d = np.array([-np.sin(a), np.cos(a)])
        n = np.array([np.cos(a), np.sin(a)])
        cuff_o = s + p["sleeve"] * d
        cuff_i = cuff_o + p["cuff"] * n
        # keep the sleeve's inner edge outside the body side
        if cuff_i[0] > -p["chest"] - 0.05:
            shift = cuff_i[0] + p["chest"] + 0.05
            cuff_o = cuff_o - [shift, 0]
            cuff_i = cuff_i - [shift, 0]
        out.append((s, True))
        for t in np.linspace(0, 1, n_sleeve_out + 2)[1:-1]:
            out.append((_lerp(s, cuff_o, t), True))
        out.append((cuff_o, True))
        out.append((cuff_i, True))
        for t in np.linspace(1, 0, n_sleeve_in + 2)[1:-1]:
            out.append((_lerp(armpit, cuff_i, t), True))
        out.append((armpit, True))
    elif sleeve == "vest":
        s = np.array([-p["sh"] * 0.72, 0.07])
        out.append((s, True))
        out.append((np.array([-p["chest"] * 0.8, p["ah"] * 0.55]), False))
        out.append((armpit, True))
    else:  # sling: the strap outer edge comes down from the neck point to the armpit
        out.append((np.array([-p["nw"] - p["strap"] - 0.03, 0.25]), False))
        out.append((np.array([-p["chest"] * 0.92, p["ah"]]), True))
        armpit = np.array([-p["chest"] * 0.92, p["ah"]])
    hem_w = p["chest"] * (1 + p["flare"])
    hem_corner = np.array([-hem_w, length])
    for t in np.linspace(0, 1, n_side + 2)[1:-1]:
        pt = _lerp(armpit, hem_corner, t)
        pt[0] += p["waist_in"] * np.sin(np.pi * t)
        out.append((pt, True))
    out.append((hem_corner, True))
    gap = p["gap"] if front_hem else 0.0
    for k in range(1, n_hem + 1):
        t = k / (n_hem + 1)
        x = _lerp(-hem_w, -gap, t)
        out.append((np.array([x, length + p["hem_curve"] * np.sin(np.pi * t / 2)]), True))
    if front_hem:
        out.append((np.array([-gap, length + p["hem_curve"]]), True))
    return out


def _mirror(pts: list[tuple[np.ndarray, bool]]) -> list[tuple[np.ndarray, bool]]:
    return [(np.array([-q[0], q[1]]), f) for q, f in reversed(pts)]


def _collar(p: dict) -> dict:
    nw, nd = p["nw"], p["nd"]
    return {
        "back": np.array([0.0, 0.05]),
        "nl": np.array([-nw, 0.0]),
        "nr": np.array([nw, 0.0]),
        "f3": np.array([-nw * 0.62, nd * 0.7]),
        "f4": np.array([0.0, nd]),
        "f5": np.array([nw * 0.62, nd * 0.7]),
    }


def _closed(category_id: int, p: dict, *, sleeve: str, n_sleeve_out=0, n_sleeve_in=0, n_side=2, n_hem=1) -> Template:
    """Tops, vests, slings and dresses: one closed outline."""
    col = _collar(p)
    left = _left_half(p, sleeve=sleeve, n_sleeve_out=n_sleeve_out, n_sleeve_in=n_sleeve_in, n_side=n_side, n_hem=n_hem)
    centre = np.array([0.0, p["length"] + p["hem_curve"]])
    right = _mirror(left)
    around = left + [(centre, True)] + right
    if sleeve == "sling":
        # strap: 2 (outer top) .. outline .. 6 (outer top), inner strap edge down to 7 / 15
        nl = np.array([-p["nw"] - p["strap"] * 0.5, 0.0])
        nr = np.array([p["nw"] + p["strap"] * 0.5, 0.0])
        inner_top_l = np.array([-p["nw"] + p["strap"] * 0.5, 0.0])
        inner_top_r = np.array([p["nw"] - p["strap"] * 0.5, 0.0])
        s7 = np.array([-p["nw"] + 0.02, 0.28])
        s15 = np.array([p["nw"] - 0.02, 0.28])
        back = np.array([0.0, 0.24])
        f3, f4, f5 = (np.array([-p["nw"] * 0.5, 0.33]), np.array([0.0, 0.28 + p["nd"]]), np.array([p["nw"] * 0.5, 0.33]))
        poly = [nl] + [q for q, _ in around] + [nr, inner_top_r, s15, back, s7, inner_top_l]
        lms = [back, nl, f3, f4, f5, nr, s7] + [q for q, f in around if f] + [s15]
        inner = [np.array([s7, f3, f4, f5, s15, back])]
        lines = [np.array([s7, f3, f4, f5, s15])]
    else:
        poly = [col["nl"]] + [q for q, _ in around] + [col["nr"], col["back"]]
        lms = [col["back"], col["nl"], col["f3"], col["f4"], col["f5"], col["nr"]] + [q for q, f in around if f]
        inner = [np.array([col["nl"], col["f3"], col["f4"], col["f5"], col["nr"], col["back"]])]
        lines = [np.array([col["nl"], col["f3"], col["f4"], col["f5"], col["nr"]])]
    if sleeve == "sleeve":
        # cuff seam
        lines.append(np.array([left[n_sleeve_out + 1][0], left[n_sleeve_out + 2][0]]))
    return Template(category_id, [np.array(poly)], np.array(lms), inner, lines)


def _outwear(category_id: int, p: dict) -> Template:
    long = category_id == 4
    nw = p["nw"]
    gap = p["gap"]
    lap_y = p["lapel"]
    back = np.array([0.0, 0.05])
    nl, nr = np.array([-nw, 0.0]), np.array([nw, 0.0])
    lap_bl, lap_br = np.array([-gap, lap_y]), np.array([gap, lap_y])
    tip_l = np.array([-nw - 0.02, lap_y * 0.42])
    tip_r = np.array([nw + 0.02, lap_y * 0.42])
    if long:
        left = _left_half(p, sleeve="sleeve", n_sleeve_out=3, n_sleeve_in=2, n_side=2, n_hem=1, front_hem=True)
        right = _left_half(p, sleeve="sleeve", n_sleeve_out=3, n_sleeve_in=2, n_side=2, n_hem=0, front_hem=True)
        n_open_l, n_open_r = 2, 4
    else:
        left = _left_half(p, sleeve="sleeve", n_sleeve_out=1, n_sleeve_in=0, n_side=2, n_hem=1, front_hem=True)
        right = _left_half(p, sleeve="sleeve", n_sleeve_out=1, n_sleeve_in=0, n_side=2, n_hem=0, front_hem=True)
        n_open_l, n_open_r = 2, 4
    right = [(np.array([-q[0], q[1]]), f) for q, f in right]  # mirrored, same order (shoulder .. front hem)
    hem_y = p["length"] + p["hem_curve"]
    open_l = [np.array([-gap, _lerp(hem_y, lap_y, t)]) for t in np.linspace(0, 1, n_open_l + 2)[1:-1]]
    open_r = [np.array([gap, _lerp(hem_y, lap_y, t)]) for t in np.linspace(0, 1, n_open_r + 2)[1:-1]]
    # polygons: left half, right half, back yoke (inside of the collar)
    left_poly = [nl] + [q for q, _ in left] + open_l + [lap_bl, tip_l]
    right_poly = [nr] + [q for q, _ in right] + open_r + [lap_br, tip_r]
    yoke = [nl, back, nr, np.array([nw * 0.6, 0.16]), np.array([-nw * 0.6, 0.16])]
    lm_l = [q for q, f in left if f]
    lm_r = [q for q, f in right if f]
    if long:
        # 1 back, 2 neck L, 3 lapel tip L, 4 lapel bottom L, 5 lapel R, 6 neck R, 7..20 left,
        # 21..33 right from the front hem up to the shoulder, 34..37 right opening (top down),
        # 38..39 left opening (top down)
        lms = [back, nl, tip_l, lap_bl, tip_r, nr] + lm_l + lm_r[::-1] + open_r[::-1] + open_l[::-1]
    else:
        # 1 back, 2 lapel bottom L, 3 lapel tip L, 4 neck L, 5 lapel R, 6 neck R, 7..16 left,
        # 17..25 right from the front hem up, 26..29 right opening, 30..31 left opening (top down)
        lms = [back, lap_bl, tip_l, nl, tip_r, nr] + lm_l + lm_r[::-1] + open_r[::-1] + open_l[::-1]
    lines = [np.array([tip_l, lap_bl]), np.array([tip_r, lap_br])]
    for half, n_out in ((left, 3 if long else 1), (right, 3 if long else 1)):
        lines.append(np.array([half[n_out + 1][0], half[n_out + 2][0]]))
    return Template(category_id, [np.array(left_poly), np.array(right_poly), np.array(yoke)], np.array(lms), [np.array(yoke)], lines)


def _bottom(category_id: int, p: dict) -> Template:
    wy, ww, L = p["waist_y"], p["waist_w"], p["length"]
    sp = p["leg_spread"]
    w1, w2, w3 = np.array([-ww, wy]), np.array([0.0, wy + 0.01]), np.array([ww, wy])
    if category_id == 9:  # skirt
        hw = ww * (1.05 + p["flare"])
        side_l = np.array([-ww * 1.12, wy + min(0.35, L * 0.45)])
        hem_l = np.array([-hw * 1.1, wy + L])
        hem_c = np.array([0.0, wy + L + 0.03])
        poly = [w1, side_l, hem_l, hem_c, hem_l * [-1, 1], side_l * [-1, 1], w3, w2]
        lms = [w1, w2, w3, side_l, hem_l, hem_c, hem_l * [-1, 1], side_l * [-1, 1]]
        lines = [np.array([w1, w2, w3]) + [0, 0.07]]
        return Template(9, [np.array(poly)], np.array(lms), [], lines)
    hip = np.array([-ww * 1.1, wy + 0.3])
    crotch = np.array([0.0, wy + 0.38])
    if category_id == 7:  # shorts
        hem_o = np.array([-ww * 1.15 - sp, wy + L])
        hem_i = np.array([-0.03 - sp * 0.6, wy + L - 0.04])
        lms = [w1, w2, w3, hip, hem_o, hem_i, crotch, hem_i * [-1, 1], hem_o * [-1, 1], hip * [-1, 1]]
    else:  # trousers
        knee_o = np.array([-ww * 0.95 - sp * 0.5, wy + L * 0.55])
        hem_o = np.array([-ww * 0.85 - sp, wy + L])
        hem_i = np.array([-0.06 - sp, wy + L - 0.02])
        knee_i = np.array([-0.05 - sp * 0.5, wy + L * 0.55])
        lms = [
            w1,
            w2,
            w3,
            hip,
            knee_o,
            hem_o,
            hem_i,
            knee_i,
            crotch,
            knee_i * [-1, 1],
            hem_i * [-1, 1],
            hem_o * [-1, 1],
            knee_o * [-1, 1],
            hip * [-1, 1],
        ]
    # the outline: from waist landmark 1 down one leg and up the other (landmarks 4..), back along the waist (3, 2)
    poly = [lms[0], *lms[3:], lms[2], lms[1]]
    lines = [np.array([w1, w2, w3]) + [0, 0.07], np.array([crotch, crotch - [0, 0.25]])]
    return Template(category_id, [np.array(poly)], np.array(lms), [], lines)


def build(category_id: int, p: dict) -> Template:
    """The template of one category for shape parameters p (from sample_shape)."""
    c = category_id
    if c == 1:
        t = _closed(1, p, sleeve="sleeve", n_sleeve_out=1, n_sleeve_in=0, n_side=2, n_hem=1)
    elif c == 2:
        t = _closed(2, p, sleeve="sleeve", n_sleeve_out=3, n_sleeve_in=2, n_side=2, n_hem=1)
    elif c in OUTWEAR:
        t = _outwear(c, p)
    elif c == 5:
        t = _closed(5, p, sleeve="vest", n_side=1, n_hem=0)
    elif c == 6:
        t = _closed(6, p, sleeve="sling", n_side=1, n_hem=0)
    elif c in BOTTOMS:
        t = _bottom(c, p)
    elif c == 10:
        t = _closed(10, p, sleeve="sleeve", n_sleeve_out=1, n_sleeve_in=0, n_side=4, n_hem=1)
    elif c == 11:
        t = _closed(11, p, sleeve="sleeve", n_sleeve_out=3, n_sleeve_in=2, n_side=4, n_hem=1)
    elif c == 12:
        t = _closed(12, p, sleeve="vest", n_side=2, n_hem=1)
    elif c == 13:
        t = _closed(13, p, sleeve="sling", n_side=2, n_hem=1)
    else:
        raise ValueError(f"unknown category_id {category_id}")
    n = spec.category(c).num_landmarks
    if len(t.landmarks) != n:
        raise AssertionError(f"category {c}: template has {len(t.landmarks)} landmarks, spec says {n}")
    return t


def distractor(rng: np.random.Generator) -> list[np.ndarray]:
    """A non-garment shape (bag, ball, box, star, blob) as polygons in a unit frame centred at 0."""
    kind = rng.integers(0, 5)
    if kind == 0:  # ellipse / ball
        a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        rx, ry = rng.uniform(0.3, 0.6, 2)
        return [np.stack([rx * np.cos(a), ry * np.sin(a)], 1)]
    if kind == 1:  # box
        w, h = rng.uniform(0.3, 0.7, 2)
        return [np.array([[-w, -h], [w, -h], [w, h], [-w, h]])]
    if kind == 2:  # star
        k = int(rng.integers(5, 8))
        a = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False)
        r = np.where(np.arange(2 * k) % 2 == 0, 0.6, 0.25)
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)]
    if kind == 3:  # handbag: body + handle ring approximated by a thick arc polygon
        w, h = rng.uniform(0.35, 0.55), rng.uniform(0.25, 0.4)
        body = np.array([[-w, 0], [w, 0], [w * 0.9, h * 2], [-w * 0.9, h * 2]])
        a = np.linspace(np.pi, 2 * np.pi, 16)
        outer = np.stack([w * 0.6 * np.cos(a), h * 1.6 * np.sin(a)], 1)
        inner = np.stack([w * 0.45 * np.cos(a[::-1]), h * 1.2 * np.sin(a[::-1])], 1)
        return [body, np.concatenate([outer, inner])]
    a = np.linspace(0, 2 * np.pi, 24, endpoint=False)  # blob
    r = 0.45 + 0.15 * np.sin(3 * a + rng.uniform(0, 6)) + 0.08 * np.cos(5 * a + rng.uniform(0, 6))
    return [np.stack([r * np.cos(a), r * np.sin(a)], 1)]
