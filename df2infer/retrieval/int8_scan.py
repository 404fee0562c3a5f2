"""Exact top-k over a large gallery: an 8-bit scan whose error bound provably keeps the true top k among
its candidates, then an exact float64 rerank of those candidates (docs/retrieval.md, "Exact search at
10^6: the int8 scan", has the proof).

The logit of query a and gallery item b is z = w . (a - b)^2 + c = q . b + g(b) + C(a), q = -2 w * a,
g(b) = w . b^2, C(a) = w . a^2 + c (similarity.py). The scan approximates q . b + g(b) with integer codes:
  gallery  b^ = t_b (B - 0),  B int8 in [-63, 63], t_b = max|b| / 63 (one scale per item)
  queries  q^ = s (Q - 128),  Q uint8,             s = max|q| / 127 over the batch
z~ = s t_b (Q - 128) . B + g(b), computed by ONNX Runtime's MatMulIntegerToFloat against the gallery codes
packed once per 65,536-item block (uint8 x int8 with 7-bit weights: the int16 pair sums of x86 without VNNI
cannot saturate, so the integer products are exact on every CPU; `integer_products_exact` checks it once).
For every item of a block, |z~ - (H - C(a))| <= E with
  E = |q| R + |q - q^| Bh + slack,   R = max |b - b^|,  Bh = max |b^| over the block,
H the float64 head's value, and slack a generous cover for the float32 evaluation of z~ and the float64
head's own rounding. Per query and category group, tau = the k-th largest z~ - E; every item with
z~ + E >= tau is a candidate, and the candidates contain every item the float64 head ranks in the top k
(ties included). The candidates are reranked with the head in float64, ties by gallery row.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from .similarity import Similarity

log = logging.getLogger(__name__)

BLOCK = 65536  # gallery items per packed block (one ONNX Runtime session each)
GALLERY_LEVELS = 63  # 7-bit symmetric gallery codes
QUERY_LEVELS = 127  # 8-bit query codes around the zero point 128
QUERY_ZERO = 128
# A multiple of every rounding the bound has to cover (float32 evaluation of z~: a few units of 2^-24 of the
# magnitudes involved; the float64 head: far less): the bound's terms times 2^-18.
SLACK = 2.0**-18


def head_logits(a: np.ndarray, b: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    """The similarity head in float64 for one query a [D] against items b [m, D]: w . (a - b)^2 + c, [m].
    The rerank's ranking value; row by row, so an item's value does not depend on the other rows."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)[None, :]
    return (d * d * w[None, :]).sum(axis=1) + c


def _onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return ort if hasattr(ort, "InferenceSession") else None


def _session(ort, codes_t: np.ndarray | None, scales: np.ndarray | None, bias: np.ndarray | None, threads: int):
    """A MatMulIntegerToFloat session: queries uint8 [n, D] x gallery codes int8 [D, m] (an initializer, so ONNX
    Runtime packs it once), times a_scale * b_scale[m], plus bias[m]. With codes_t None, every operand is an input
    (the exactness probe)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vi = helper.make_tensor_value_info
    inputs = [vi("q", TensorProto.UINT8, [None, None]), vi("q_scale", TensorProto.FLOAT, [])]
    inits = [numpy_helper.from_array(np.array(QUERY_ZERO, np.uint8), "q_zero"), numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
    if codes_t is None:
        inputs += [vi("b", TensorProto.INT8, [None, None]), vi("b_scale", TensorProto.FLOAT, [None]), vi("bias", TensorProto.FLOAT, [None])]
    else:
        assert scales is not None and bias is not None
        inits += [
            numpy_helper.from_array(codes_t, "b"),
            numpy_helper.from_array(scales.astype(np.float32), "b_scale"),
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
        ]
    node = helper.make_node(
        "MatMulIntegerToFloat", ["q", "b", "q_scale", "b_scale", "q_zero", "b_zero", "bias"], ["z"], domain="com.microsoft"
    )
    graph = helper.make_graph([node], "int8_scan", inputs, [vi("z", TensorProto.FLOAT, [None, None])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


_EXACT: bool | None = None
_EXACT_LOCK = threading.Lock()


def integer_products_exact() -> bool:
    """Whether this machine's ONNX Runtime computes the scan's integer products exactly, checked once on the
    extreme codes (query codes 0 and 255 against gallery codes -63 and 63: the largest int16 pair sums an
    x86 kernel without VNNI forms) and on random codes, against int64 numpy. False without ONNX Runtime."""
    global _EXACT
    with _EXACT_LOCK:
        if _EXACT is None:
            ort = _onnxruntime()
            if ort is None:
                _EXACT = False
                return False
            rng = np.random.default_rng(0)
            d = 256
            q = np.concatenate([np.full((1, d), 255), np.zeros((1, d)), rng.integers(0, 256, (6, d))]).astype(np.uint8)
            b = np.concatenate([np.full((d, 1), 63), np.full((d, 1), -63), rng.integers(-63, 64, (d, 30))], axis=1).astype(np.int8)
            ref = (q.astype(np.int64) - QUERY_ZERO) @ b.astype(np.int64)
            feed = {
                "q": q,
                "q_scale": np.array(1, np.float32),
                "b": b,
                "b_scale": np.ones(b.shape[1], np.float32),
                "bias": np.zeros(b.shape[1], np.float32),
            }
            got = _session(ort, None, None, None, 0).run(None, feed)[0]
            _EXACT = bool(np.array_equal(got.astype(np.int64), ref))
            if not _EXACT:
                log.warning("ONNX Runtime's integer products are not exact on this CPU: the gallery scans in float32 instead")
        return _EXACT


def available() -> bool:
    return _onnxruntime() is not None and integer_products_exact()


class _Block:
    """Int8 codes of gallery rows [start, start + count), packed in an ONNX Runtime session, and the block's bound terms."""

    def __init__(self, ort, emb: np.ndarray, gterm: np.ndarray, start: int, threads: int):
        b = np.asarray(emb, np.float32)
        self.start, self.count = start, len(b)
        amax = np.abs(b).max(axis=1)
        t32 = np.where(amax > 0, amax / np.float32(GALLERY_LEVELS), np.float32(1)).astype(np.float32)  # the kernel's scales
        codes = np.clip(np.rint(b / t32[:, None]), -GALLERY_LEVELS, GALLERY_LEVELS)
        bhat = codes * t32[:, None]  # float32: each element within 2^-24 |b^| of codes * t
        # The bound terms, computed in float32 and rounded up: a float32 sum of D squares is within (D + 2) 2^-24
        # of its value, and the residual's elements carry the 2^-24 |b^| of bhat's rounding.
        up = np.float32(1 + 2.0**-12)
        dif = b - bhat
        bhat_norm = float(np.sqrt(np.einsum("ij,ij->i", bhat, bhat)).max())
        self.r = float(np.sqrt(np.einsum("ij,ij->i", dif, dif)).max() * up) + 2.0**-22 * bhat_norm  # max |b - b^|
        self.bhat = bhat_norm * (1 + 2.0**-12)  # max |b^|
        self.bnorm = float(np.sqrt(np.einsum("ij,ij->i", b, b)).max() * up)  # max |b|
        self.gmax = float(np.abs(np.asarray(gterm, np.float32)).max())
        self.session = _session(ort, np.ascontiguousarray(codes.astype(np.int8).T), t32, np.asarray(gterm, np.float32), threads)

    def scores(self, q_codes: np.ndarray, q_scale: float) -> np.ndarray:
        return self.session.run(None, {"q": q_codes, "q_scale": np.array(q_scale, np.float32)})[0]


class Int8Scan:
    """The int8 codes of a gallery's embeddings, block by block; `sync` brings them up to the gallery's rows
    (blocks already full are kept, the last partial block is rebuilt), `topk` is the exact search."""

    def __init__(self, similarity: Similarity, threads: int = 0):
        ort = _onnxruntime()
        if ort is None:
            raise ImportError("the int8 gallery scan needs ONNX Runtime: pip install df2infer[cpu]")
        self._ort = ort
        self.similarity = similarity
        self.threads = threads
        self.blocks: list[_Block] = []

    @property
    def rows(self) -> int:
        return sum(b.count for b in self.blocks)

    def sync(self, emb: np.ndarray, gterm: np.ndarray) -> None:
        n = len(emb)
        if n < self.rows:  # the gallery was replaced by a smaller one: start over
            self.blocks = []
        if self.blocks and self.blocks[-1].count < BLOCK and self.rows < n:
            self.blocks.pop()
        for s in range(self.rows, n, BLOCK):
            self.blocks.append(_Block(self._ort, emb[s : s + BLOCK], gterm[s : s + BLOCK], s, self.threads))

    def topk(
        self, queries: np.ndarray, emb: np.ndarray, labels: np.ndarray, query_labels, k: int, groups: tuple[str, ...]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{group: (ids int64 [n, k], float64-head logits [n, k])} for query embeddings `queries` [n, D], exactly
        the float64 head's top k per group (ties by lower row); -1 / -inf pad. `emb`: the gallery's stored
        embeddings (the rerank reads the candidates' rows); call sync(emb, ...) first."""
        sim = self.similarity
        a = np.asarray(queries, np.float64)
        n = len(a)
        w, c = sim.w, sim.c
        q = -2.0 * a * w[None, :]  # float64
        s = float(np.abs(q).max()) / QUERY_LEVELS or 1.0
        s32 = float(np.float32(s))  # the scale the kernel uses
        q_codes = np.clip(np.rint(q / s32), -QUERY_LEVELS, QUERY_LEVELS) + QUERY_ZERO
        qhat = (q_codes - QUERY_ZERO) * s32
        qn = np.sqrt((q * q).sum(axis=1))
        qe = np.sqrt(((q - qhat) ** 2).sum(axis=1))  # |q - q^| per query
        qhn = np.sqrt((qhat * qhat).sum(axis=1))
        const = np.abs((a * a) @ w + c)  # |C(a)|, for the slack of the head's own rounding
        wmax = float(np.abs(w).max())
        an = np.sqrt((a * a).sum(axis=1))
        q_codes = q_codes.astype(np.uint8)
        if query_labels is None and groups != ("all",):
            raise ValueError("the category groups need the queries' labels")
        ql = np.zeros(n, np.int64) if query_labels is None else np.asarray(query_labels).reshape(-1)
        # candidate pools per group: lists of (ids, lower, upper) arrays per query; tau = k-th largest lower bound
        pools: dict[str, list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]] = {g: [[] for _ in range(n)] for g in groups}
        tau = {g: np.full(n, -np.inf) for g in groups}
        for blk in self.blocks:
            z = blk.scores(q_codes, s32)
            e = qn * blk.r + qe * blk.bhat
            e = e + SLACK * (qn * blk.bnorm + qhn * blk.bhat + blk.gmax + const + wmax * (an + blk.bnorm) ** 2 + 1.0)
            lab = labels[blk.start : blk.start + blk.count]
            for g in groups:
                if np.isneginf(tau[g]).any():  # fewer than k known in this group for some query: seed from this block
                    same = ql[:, None] == lab[None, :]
                    zg = z if g == "all" else np.where(same if g == "same" else ~same, z, np.float32(-np.inf))
                    if zg.shape[1] >= k:
                        kth = np.partition(zg, zg.shape[1] - k, axis=1)[:, zg.shape[1] - k].astype(np.float64)
                        tau[g] = np.maximum(tau[g], np.where(np.isneginf(kth), -np.inf, kth - e))
            floor = np.min(np.stack([tau[g] for g in groups]), axis=0) - e  # z~ >= tau - E  <=>  upper >= tau
            # compared in float32 against the floor rounded down (never drops an item); the pools re-check in float64
            floor32 = np.nextafter(floor.astype(np.float32), np.float32(-np.inf))
            rows, cols = np.divmod(np.flatnonzero(z >= floor32[:, None]), z.shape[1])  # (np.nonzero on 2-D: 30x slower)
            zz = z[rows, cols].astype(np.float64)
            ids = cols.astype(np.int64) + blk.start
            split = np.searchsorted(rows, np.arange(n + 1))
            for i in range(n):
                sl = slice(split[i], split[i + 1])
                if sl.start == sl.stop:
                    continue
                zi, ii = zz[sl], ids[sl]
                for g in groups:
                    if g == "all":
                        m = np.ones(len(ii), bool)
                    else:
                        m = (lab[ii - blk.start] == ql[i]) == (g == "same")
                    if m.any():
                        pools[g][i].append((ii[m], zi[m] - e[i], zi[m] + e[i]))
            for g in groups:
                for i in range(n):
                    p = pools[g][i]
                    if not p:
                        continue
                    ii, lo, hi = (np.concatenate(x) for x in zip(*p))
                    if len(lo) >= k:
                        tau[g][i] = max(tau[g][i], float(np.partition(lo, len(lo) - k)[len(lo) - k]))
                    keep = hi >= tau[g][i]
                    pools[g][i] = [(ii[keep], lo[keep], hi[keep])]
        out = {}
        for g in groups:
            ids_out = np.full((n, k), -1, np.int64)
            z_out = np.full((n, k), -np.inf, np.float64)
            for i in range(n):
                if not pools[g][i]:
                    continue
                ii = pools[g][i][0][0]
                if not len(ii):
                    continue
                h = head_logits(a[i], emb[ii], w, c)
                order = np.lexsort((ii, -h))[:k]
                ids_out[i, : len(order)], z_out[i, : len(order)] = ii[order], h[order]
            out[g] = (ids_out, z_out)
        return out
