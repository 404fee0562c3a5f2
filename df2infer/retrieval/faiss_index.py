"""FAISS indexes over a Gallery (needs `faiss-cpu`: pip install 'df2infer[retrieval]').

The similarity network's logit is an inner product of augmented vectors (similarity.py), so an
inner-product index over [b, w @ b^2] ranks exactly as the network does:

    kind     index                                   search
    flat     IndexFlatIP, float32                    exact
    flat16   IndexScalarQuantizer fp16, IP            exact on float16-rounded vectors
    hnsw     IndexHNSWFlat (M=32), L2 *               approximate (efSearch)
    ivf      IndexIVFFlat (nlist ~ 4 sqrt(n) <= 1024), IP **  approximate (nprobe)

*  A graph needs a metric: HNSW uses the standard reduction of maximum inner product to nearest
   neighbour (Bachrach et al. 2014): gallery x -> [x, sqrt(R^2 - |x|^2)], query q -> [q, 0], R =
   the largest gallery norm, so |q - x'|^2 = |q|^2 + R^2 - 2 q.x. (Inner-product HNSW on the raw
   vectors measured recall@20 0.54 on random data; with the reduction ~1.0.)
** IVF probes the lists whose k-means centroid scores best by inner product: the score is linear,
   so a centroid's score is its items' mean score. (With the L2 reduction instead, IVF measured
   recall@20 0.23 at 10^5 clustered items: centroid norms vary, and the coarse assignment follows
   them; with inner product, 1.0 at nprobe 32.)
Every kind re-scores its candidates exactly (logit = q . x from the gallery's stored columns), so the
reported probabilities are the network's and the approximation only decides which items are found.

    idx = FaissIndex.build(gallery, "ivf"); gallery.search(dets, k=20, index=idx)
    idx.save(path); FaissIndex.load(path, gallery)

Category groups of the ranking policy are searched with FAISS ID selectors (items of one category,
or not of it), so "same category first" costs two filtered searches per query category.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

KINDS = ("flat", "flat16", "hnsw", "ivf")


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("FAISS indexes need faiss-cpu: pip install 'df2infer[retrieval]' (or pip install faiss-cpu)") from e
    return faiss


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k (ids >= 0) found in its approximate top-k."""
    hits = total = 0
    for a, e in zip(approx_ids, exact_ids):
        e = e[e >= 0]
        hits += len(np.intersect1d(a[a >= 0], e))
        total += len(e)
    return hits / total if total else float("nan")


class FaissIndex:
    """An inner-product FAISS index over a gallery's augmented vectors (see module doc)."""

    def __init__(self, index, kind: str, gallery, params: dict):
        self.index = index
        self.kind = kind
        self.gallery = gallery
        self.labels = np.asarray(gallery.labels)
        self.params = dict(params)
        self._selectors: dict[int, tuple] = {}
        self.set_search_params(**{k: v for k, v in params.items() if k in ("nprobe", "ef_search")})

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls,
        gallery,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        train_size: int = 50_000,
        seed: int = 0,
        chunk: int = 100_000,
        ivf_metric: str = "ip",
    ) -> FaissIndex:
        faiss = _faiss()
        if kind not in KINDS:
            raise ValueError(f"FAISS index kind {kind!r}, expected one of {KINDS}")
        n, d = len(gallery), gallery.similarity.dim + 1
        if n == 0:
            raise ValueError("cannot build a FAISS index over an empty gallery")
        from .gallery import Gallery

        l2 = kind == "hnsw" or (kind == "ivf" and ivf_metric == "l2")
        radius = 0.0
        if l2:
            for s in range(0, n, chunk):
                a = Gallery.augmented(gallery.similarity, gallery.embeddings[s : s + chunk], gallery.gallery_term[s : s + chunk])
                radius = max(radius, float(np.sqrt((a.astype(np.float64) ** 2).sum(1).max())))

        def rows(s, e=None):  # rows s:e, or the rows of index array s
            sel = s if e is None else slice(s, e)
            a = Gallery.augmented(gallery.similarity, gallery.embeddings[sel], gallery.gallery_term[sel])
            if not l2:
                return a
            extra = np.sqrt(np.maximum(radius**2 - (a.astype(np.float64) ** 2).sum(1), 0.0)).astype(np.float32)
            return np.concatenate([a, extra[:, None]], 1)

        ip = faiss.METRIC_INNER_PRODUCT
        params: dict = {"radius": radius} if l2 else {}
        if l2:
            d += 1
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "flat16":
            index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m)
            index.hnsw.efConstruction = ef_construction
            params.update(hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        else:
            # ~4 sqrt(n) lists, at most 1024 (k-means training time on small CPUs); >= 39 training points per list
            nlist = int(nlist or max(1, min(n // 39, round(4 * np.sqrt(n)), 1024)))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist) if l2 else faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip)
            params.update(nlist=nlist, nprobe=nprobe)
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, min(n, max(train_size, 39 * index.nlist)), replace=False))
            index.train(np.ascontiguousarray(rows(sample)))
        for s in range(0, n, chunk):
            index.add(np.ascontiguousarray(rows(s, s + chunk)))
        return cls(index, kind, gallery, params)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        if nprobe is not None and self.kind == "ivf":
            self.index.nprobe = int(nprobe)
            self.params["nprobe"] = int(nprobe)
        if ef_search is not None and self.kind == "hnsw":
            self.index.hnsw.efSearch = int(ef_search)
            self.params["ef_search"] = int(ef_search)

    def _params(self, selector):
        faiss = _faiss()
        if selector is None:
            return None
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.index.hnsw.efSearch)
        return faiss.SearchParameters(sel=selector)

    def _selector(self, label: int, group: str):
        faiss = _faiss()
        if label not in self._selectors:
            ids = np.flatnonzero(self.labels == label).astype(np.int64)
            same = faiss.IDSelectorBatch(ids)
            self._selectors[label] = (ids, same, faiss.IDSelectorNot(same))  # ids kept alive with the selectors
        return self._selectors[label][1 if group == "same" else 2]

    def topk(self, queries_aug: np.ndarray, query_labels, k: int, groups: tuple[str, ...]) -> dict:
        """The policy's top-k primitive (see policy.TopK) on augmented queries [n, D + 1]."""
        qa = np.ascontiguousarray(queries_aug, np.float32)
        n = len(qa)
        q = np.concatenate([qa, np.zeros((n, 1), np.float32)], 1) if "radius" in self.params else qa
        out = {}
        for g in groups:
            ids = np.full((n, k), -1, np.int64)
            z = np.full((n, k), -np.inf, np.float32)
            if g == "all":
                zz, ii = self.index.search(q, k)
                ids[:], z[:] = ii, zz
            else:
                if query_labels is None:
                    raise ValueError("this ranking policy uses the query's category: pass query labels (or Detections)")
                ql = np.asarray(query_labels).reshape(-1)
                for lab in np.unique(ql):
                    rows = np.flatnonzero(ql == lab)
                    zz, ii = self.index.search(q[rows], k, params=self._params(self._selector(int(lab), g)))
                    ids[rows], z[rows] = ii, zz
            # exact logits of the candidates from the gallery's own columns (float32 arithmetic)
            safe = np.maximum(ids, 0)
            emb = np.asarray(self.gallery.embeddings[safe.ravel()], np.float32).reshape(n, k, -1)
            z = np.einsum("nkd,nd->nk", emb, qa[:, :-1]) + np.asarray(self.gallery.gallery_term)[safe]
            z[ids < 0] = -np.inf
            # FAISS leaves ties in any order; sort them by id like the exact numpy search
            from .gallery import topk_merge

            out[g] = topk_merge(ids, z, k)
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index (FAISS format) and a JSON sidecar (kind, parameters, size)."""
        faiss = _faiss()
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(p))
        Path(str(p) + ".json").write_text(json.dumps({"kind": self.kind, "params": self.params, "ntotal": len(self)}))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike, gallery) -> FaissIndex:
        """Read an index saved for `gallery` (refused when their sizes differ: rebuild after adds)."""
        faiss = _faiss()
        p = Path(path)
        side = Path(str(p) + ".json")
        if not p.is_file() or not side.is_file():
            raise FileNotFoundError(f"{p}: no FAISS index (and {side.name}) there; build one with FaissIndex.build")
        meta = json.loads(side.read_text())
        index = faiss.read_index(str(p))
        if index.ntotal != len(gallery):
            raise ValueError(f"{p}: index holds {index.ntotal} items, the gallery {len(gallery)}: rebuild the index")
        return cls(index, meta["kind"], gallery, meta["params"])
