"""Exact search by the int8 scan (df2infer.retrieval.int8_scan): the same items as the similarity head
computed in float64 over the whole gallery, ties by insertion order, within the ranking policy's category
groups, on adversarial ties: items whose head values are exactly equal but whose int8 codes differ, and
1-ulp neighbours. The reference here is a brute-force float64 loop over every item, written out in the test.
"""

from __future__ import annotations

import numpy as np
import pytest

from df2infer.retrieval import Gallery, GalleryError, RankingPolicy, Similarity

pytest.importorskip("onnxruntime")

from df2infer.retrieval import int8_scan  # noqa: E402

D = 32
GRID = 2.0**-5  # embeddings on a grid: mirrored coordinates give bit-identical head values


def _sim(seed=0, distance=False):
    """A random head; distance=True: w = W[1] - W[0] < 0 everywhere (nearer is better, as a trained head tends to be)."""
    rng = np.random.default_rng(seed)
    W = np.round(rng.normal(0, 0.3, (2, D)), 3)
    if distance:
        W = np.stack([np.abs(W[0]) + 0.01, -np.abs(W[1])])
    return Similarity(W, rng.normal(0, 1, 2))


def _reference(sim, emb, labels, a, qlabel, k, category):
    """The policy's top k by the float64 head, pair by pair: w . (a - b)^2 + c, ties by lower row."""
    w = sim.weight.astype(np.float64)[1] - sim.weight.astype(np.float64)[0]
    c = float(sim.bias[1]) - float(sim.bias[0])
    h = np.array([float(((a.astype(np.float64) - b.astype(np.float64)) ** 2 * w).sum()) + c for b in emb])
    rows = np.arange(len(emb))

    def best(mask):
        r = rows[mask]
        return list(r[np.lexsort((r, -h[mask]))])

    same = labels == qlabel
    order = {"any": best(np.ones(len(emb), bool)), "only": best(same), "first": best(same) + best(~same)}[category]
    return order[:k], h


def _adversarial_gallery(sim, rng, n=2500):
    """Grid embeddings around a few centres, plus, for each query in turn, exact ties (coordinates mirrored
    around the query's: other int8 codes, the same head value) and 1-ulp neighbours of the items around its
    20th place in the gallery so far, put alternately before the first row (lower rows win ties) and after the last."""
    centres = rng.normal(0, 1, (8, D))
    emb = np.round((centres[rng.integers(0, 8, n)] + 0.6 * rng.normal(size=(n, D))) / GRID) * GRID
    labels = rng.integers(1, 4, n)
    queries = np.round((emb[rng.choice(n, 6, replace=False)] + 0.05 * rng.normal(size=(6, D))) / GRID) * GRID
    qlabels = rng.integers(1, 4, 6)
    for a, ql in zip(queries, qlabels):
        for category in ("any", "first"):
            top, _ = _reference(sim, emb.astype(np.float32), labels, a.astype(np.float32), ql, 24, category)
            for r in top[17:21]:
                b = emb[r].copy()
                mirrors = []
                for j in np.argsort(-np.abs(b - a))[:6]:  # the coordinates that move the int8 codes most
                    m = b.copy()
                    m[j] = 2 * a[j] - b[j]  # (a - b)^2 unchanged, exactly: a tie with other codes
                    mirrors.append(m)
                ulp = np.nextafter(b.astype(np.float32), np.float32(np.inf)).astype(np.float64)
                before, after = np.array(mirrors[::2]), np.array([*mirrors[1::2], ulp])
                emb = np.concatenate([before, emb, after])
                labels = np.concatenate([np.full(len(before), labels[r]), labels, np.full(len(after), labels[r])])
    return emb.astype(np.float32), labels, queries.astype(np.float32), qlabels


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(int8_scan, "BLOCK", 700)  # several blocks and a partial last one


@pytest.mark.parametrize("category", ["any", "first", "only"])
def test_int8_scan_equals_the_float64_head_on_adversarial_ties(category, small_blocks):
    sim = _sim(distance=True)
    rng = np.random.default_rng(3)
    emb, labels, queries, qlabels = _adversarial_gallery(sim, rng)
    g = Gallery(sim, policy=RankingPolicy(category, 0.0), scan="int8")
    g.add_items("img", emb, np.zeros((len(emb), 4)), labels, np.ones(len(emb)))
    ids, z = g.search_ids(queries, 20, query_labels=qlabels)
    cut_ties = 0
    for i, (a, ql) in enumerate(zip(queries, qlabels)):
        ref, h = _reference(sim, emb, labels, a, ql, 21, category)
        assert list(ids[i]) == ref[:20], f"query {i}"
        np.testing.assert_array_equal(z[i], h[ref[:20]].astype(np.float32))
        cut_ties += h[ref[19]] == h[ref[20]]
    assert cut_ties > 0, "some query must have an exact tie across its 20th place (else the tie order is not tested)"
    assert len(g._int8.blocks) > 3  # the scan really ran, over several blocks


def test_int8_scan_bound_holds_for_every_item():
    """|z~ - (head - C(a))| <= E for every item of a block: the inequality the candidate rule rests on (and E is
    far below the spread of the logits, so the rule prunes)."""
    sim = _sim(1)
    rng = np.random.default_rng(5)
    emb = rng.normal(0, 1, (3000, D)).astype(np.float32)
    emb[:10] *= 40  # a few large items: the block's bound terms follow the largest
    g = Gallery(sim, policy=RankingPolicy("any", 0.0), scan="int8")
    g.add_items("img", emb, np.zeros((len(emb), 4)), np.ones(len(emb)), np.ones(len(emb)))
    scan = g._int8_scan()
    blk = scan.blocks[0]
    a = rng.normal(0, 1, (4, D)).astype(np.float32)
    w, c = sim.w, sim.c
    q = -2.0 * a.astype(np.float64) * w
    s = np.float32(np.abs(q).max() / int8_scan.QUERY_LEVELS)
    codes = (np.clip(np.rint(q / s), -127, 127) + 128).astype(np.uint8)
    zt = blk.scores(codes, float(s)).astype(np.float64)
    qhat = (codes.astype(np.float64) - 128) * float(s)
    e = np.sqrt((q * q).sum(1)) * blk.r + np.sqrt(((q - qhat) ** 2).sum(1)) * blk.bhat
    for i in range(len(a)):
        head = np.array([((a[i].astype(np.float64) - b) ** 2 * w).sum() + c for b in emb.astype(np.float64)])
        err = np.abs(zt[i] - (head - ((a[i].astype(np.float64) ** 2) @ w + c)))
        assert err.max() <= e[i], (err.max(), e[i])
        assert e[i] < 0.1 * (head.max() - head.min())


def test_int8_scan_follows_adds(small_blocks):
    sim = _sim(2)
    rng = np.random.default_rng(9)
    emb = rng.normal(0, 1, (2000, D)).astype(np.float32)
    g = Gallery(sim, policy=RankingPolicy("any", 0.0), scan="int8")
    g.add_items("a", emb[:1500], np.zeros((1500, 4)), np.ones(1500), np.ones(1500))
    q = emb[[3, 1700]] + 0.01
    g.search_ids(q, 20)
    g.add_items("b", emb[1500:], np.zeros((500, 4)), np.ones(500), np.ones(500))  # after a search: the scan catches up
    ids, _ = g.search_ids(q, 20)
    for i, a in enumerate(q):
        ref, _ = _reference(sim, emb, np.ones(2000), a, 1, 20, "any")
        assert list(ids[i]) == ref
    assert (ids >= 1500).any(), "items added after the first search are among the results"


def test_inexact_integer_kernels_are_refused(monkeypatch):
    """If ONNX Runtime's integer products were not exact on a CPU, the probe says so: scan='int8' is refused by
    name and 'auto' scans in float32."""
    real = int8_scan._session

    class OffByOne:
        def __init__(self, s):
            self.s = s

        def run(self, names, feed):
            out = self.s.run(names, feed)
            out[0][0, 0] += 1  # one saturated pair sum
            return out

    monkeypatch.setattr(int8_scan, "_session", lambda *a, **k: OffByOne(real(*a, **k)))
    monkeypatch.setattr(int8_scan, "_EXACT", None)
    assert not int8_scan.integer_products_exact()
    g = Gallery(_sim(), policy=RankingPolicy("any", 0.0), scan="int8")
    g.add_items("a", np.ones((3, D)), np.zeros((3, 4)), np.ones(3), np.ones(3))
    with pytest.raises(GalleryError, match="exact integer products"):
        g.search_ids(np.ones((1, D)), 2)
    g.scan = "auto"
    monkeypatch.setattr("df2infer.retrieval.gallery.INT8_SCAN_MIN", 1)
    assert g.search_ids(np.ones((1, D)), 2)[0].shape == (1, 2)  # the float32 scan
    assert g._int8 is None
