"""Match R-CNN's similarity network, run from the contract's weights, and a retrieval gallery.

The network scores a pair of embeddings a, b (each [D]):
    logits = W @ (a - b)^2 + bias        W [2, D], bias [2]
    p(match) = softmax(logits)[1] = sigmoid((W[1] - W[0]) @ (a - b)^2 + bias[1] - bias[0])
For all pairs at once, with w = W[1] - W[0] and c = bias[1] - bias[0]:
    z[i, j] = (a_i^2) @ w + (b_j^2) @ w - 2 (a_i * w) @ b_j + c
three matrix-vector/matrix products and no [n, m, D] tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from df2infer.contract import Contract


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def match_probability(a: np.ndarray, b: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """p(match) for every pair: a [n, D], b [m, D], weight [2, D], bias [2] -> float32 [n, m]."""
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    weight = np.asarray(weight, np.float64)
    bias = np.asarray(bias, np.float64).reshape(-1)
    if weight.shape != (2, a.shape[1]) or bias.shape != (2,) or b.shape[1] != a.shape[1]:
        raise ValueError(f"match_probability: a {a.shape}, b {b.shape}, weight {weight.shape}, bias {bias.shape}; "
                         "expected [n, D], [m, D], [2, D], [2]")
    w = weight[1] - weight[0]
    c = bias[1] - bias[0]
    z = (a * a) @ w
    z = z[:, None] + ((b * b) @ w)[None, :] - 2.0 * ((a * w) @ b.T) + c
    return _sigmoid(z).astype(np.float32)


class Similarity:
    """The similarity network of an artifact: `Similarity.from_contract(contract)(a, b)` -> [n, m]."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)

    @classmethod
    def from_contract(cls, contract: Contract) -> Similarity:
        if not contract.similarity_weight or not contract.similarity_bias:
            raise ValueError("this artifact's contract carries no similarity network weights (similarity_weight/bias)")
        return cls(np.asarray(contract.similarity_weight), np.asarray(contract.similarity_bias))

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return match_probability(a, b, self.weight, self.bias)


@dataclass
class Match:
    """One retrieved gallery item: its gallery index, probability, image id, box, category, score."""

    index: int
    probability: float
    image_id: object
    box: np.ndarray
    label: int
    score: float


class Gallery:
    """Items to retrieve from (e.g. shop images). add() detections, then query() with embeddings or
    detections to get each query's top-k gallery items by match probability."""

    def __init__(self, similarity: Similarity):
        self.similarity = similarity
        self._emb: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._ids: list = []
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, detections, image_id=None) -> None:
        """Add every item of a Detections (image_id defaults to its path or source index)."""
        if detections.embeddings is None:
            raise ValueError("these detections carry no embeddings")
        iid = image_id if image_id is not None else (detections.path if detections.path is not None else detections.source)
        self._emb.append(np.asarray(detections.embeddings, np.float32))
        self._boxes.append(np.asarray(detections.boxes, np.float32))
        self._labels.append(np.asarray(detections.labels, np.int32))
        self._scores.append(np.asarray(detections.scores, np.float32))
        self._ids.extend([iid] * len(detections))
        self._cache = None

    def _arrays(self):
        if self._cache is None:
            d = self.similarity.weight.shape[1]
            cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)  # noqa: E731
            self._cache = (cat(self._emb, (0, d)).astype(np.float32), cat(self._boxes, (0, 4)).astype(np.float32),
                           cat(self._labels, (0,)).astype(np.int32), cat(self._scores, (0,)).astype(np.float32))
        return self._cache

    def __len__(self) -> int:
        return len(self._ids)

    def query(self, queries, k: int = 20, same_category: bool = False, query_labels=None) -> list[list[Match]]:
        """Top-k gallery items per query. `queries` is a Detections or an embedding array [n, D];
        same_category=True keeps only gallery items of the query's category (labels from the
        Detections, or query_labels)."""
        if hasattr(queries, "embeddings"):
            query_labels = queries.labels if query_labels is None else query_labels
            queries = queries.embeddings
        emb, boxes, labels, scores = self._arrays()
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if len(emb) == 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        p = self.similarity(q, emb)
        if same_category:
            if query_labels is None:
                raise ValueError("same_category=True needs query labels")
            p = np.where(np.asarray(query_labels).reshape(-1, 1) == labels[None, :], p, -1.0)
        k = min(k, p.shape[1])
        top = np.argpartition(-p, k - 1, axis=1)[:, :k]
        out = []
        for i in range(len(q)):
            idx = top[i][np.argsort(-p[i, top[i]], kind="stable")]
            out.append([Match(int(j), float(p[i, j]), self._ids[j], boxes[j], int(labels[j]), float(scores[j]))
                        for j in idx if p[i, j] >= 0])
        return out
