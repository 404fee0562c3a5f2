"""Match R-CNN's similarity network, run from the contract's weights, as one matrix product.

The network scores a pair of embeddings a, b (each [D]):
    logits = W @ (a - b)^2 + bias        W [2, D], bias [2]
    p(match) = softmax(logits)[1] = sigmoid(z),  z = w @ (a - b)^2 + c,
    w = W[1] - W[0],  c = bias[1] - bias[0].
Expanding the square,
    z = w @ a^2 + c  +  w @ b^2  -  2 (w * a) @ b
      = [-2 w*a, 1, w @ a^2 + c] . [b, w @ b^2, 1]
an inner product of (D + 2)-vectors. The gallery side [b, w @ b^2] is computed once when an item
is stored; a query needs one multiply. Top-k by z is top-k by probability (sigmoid is monotonic), so
any inner-product search (numpy, FAISS, a vector database) ranks exactly as the network does; the
query's own constant w @ a^2 + c is added back to the scores only to report probabilities.
"""

from __future__ import annotations

import numpy as np

from df2infer.contract import Contract
from df2infer.errors import MissingPartError


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function (float32 out for float32 in)."""
    z = np.asarray(z)
    out = np.empty_like(z, dtype=np.result_type(z.dtype, np.float32))
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def match_probability(a: np.ndarray, b: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """p(match) for every pair: a [n, D], b [m, D], weight [2, D], bias [2] -> float32 [n, m]
    (float64 arithmetic: the reference the fast paths are tested against)."""
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    weight = np.asarray(weight, np.float64)
    bias = np.asarray(bias, np.float64).reshape(-1)
    if weight.shape != (2, a.shape[1]) or bias.shape != (2,) or b.shape[1] != a.shape[1]:
        raise ValueError(
            f"match_probability: a {a.shape}, b {b.shape}, weight {weight.shape}, bias {bias.shape}; expected [n, D], [m, D], [2, D], [2]"
        )
    w = weight[1] - weight[0]
    c = bias[1] - bias[0]
    z = (a * a) @ w
    z = z[:, None] + ((b * b) @ w)[None, :] - 2.0 * ((a * w) @ b.T) + c
    return sigmoid(z).astype(np.float32)


class Similarity:
    """The similarity network of an artifact: `Similarity.from_contract(contract)(a, b)` -> [n, m].

    For search at scale: `gallery_term(b)` [m] and `query_vectors(a)` ([n, D], [n]) give
    z = query_vectors(a)[0] @ b.T + gallery_term(b)[None] + query_vectors(a)[1][:, None]."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32).reshape(-1)
        if self.weight.ndim != 2 or self.weight.shape[0] != 2 or self.bias.shape != (2,):
            raise ValueError(f"similarity weights: weight {self.weight.shape}, bias {self.bias.shape}; expected [2, D], [2]")
        w64 = self.weight.astype(np.float64)
        self.w = w64[1] - w64[0]  # float64 [D]
        self.c = float(self.bias[1]) - float(self.bias[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @staticmethod
    def in_contract(contract: Contract) -> bool:
        """Whether the artifact carries the similarity network (from_contract raises MissingPartError otherwise)."""
        return bool(contract.similarity_weight) and bool(contract.similarity_bias)

    @classmethod
    def from_contract(cls, contract: Contract) -> Similarity:
        if not contract.has("embeddings"):
            raise MissingPartError(
                f"retrieval refused: {contract.missing_head_reason('embeddings')}, so it gives no embeddings to match; "
                "retrieval needs a Match R-CNN with its matching network (docs/models.md)"
            )
        if not cls.in_contract(contract):
            raise MissingPartError("this artifact's contract carries no similarity network weights (similarity_weight/bias)")
        return cls(np.asarray(contract.similarity_weight), np.asarray(contract.similarity_bias))

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return match_probability(a, b, self.weight, self.bias)

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what}: embeddings of shape {x.shape}, expected [n, {self.dim}] (this similarity network's D)")
        return x

    def gallery_term(self, b: np.ndarray) -> np.ndarray:
        """w @ b^2 per gallery embedding, float32 [m] (computed in float64)."""
        b = self._check(b, "gallery").astype(np.float64)
        return ((b * b) @ self.w).astype(np.float32)

    def query_vectors(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(-2 w * a  float32 [n, D],  w @ a^2 + c  float32 [n]) for queries a [n, D]."""
        a = self._check(a, "query").astype(np.float64)
        return (-2.0 * a * self.w).astype(np.float32), ((a * a) @ self.w + self.c).astype(np.float32)

    def augment_gallery(self, b: np.ndarray) -> np.ndarray:
        """[b, w @ b^2]  float32 [m, D + 1]: the gallery side of the inner product."""
        b = self._check(b, "gallery")
        return np.concatenate([np.asarray(b, np.float32), self.gallery_term(b)[:, None]], axis=1)

    def augment_queries(self, a: np.ndarray) -> np.ndarray:
        """[-2 w * a, 1]  float32 [n, D + 1]: (augment_queries(a) @ augment_gallery(b).T) + query
        constant = the logit z; the constant (query_vectors(a)[1]) does not change a ranking."""
        q, _ = self.query_vectors(a)
        return np.concatenate([q, np.ones((len(q), 1), np.float32)], axis=1)

    def logits(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """z [n, m] as one float32 matrix product (the fast path; probabilities = sigmoid(z))."""
        q, qc = self.query_vectors(a)
        b = self._check(b, "gallery")
        return q @ np.asarray(b, np.float32).T + self.gallery_term(b)[None, :] + qc[:, None]

    def fingerprint(self) -> str:
        """Short hash of the weights: a gallery remembers the network it was built for."""
        import hashlib

        h = hashlib.sha256(self.weight.tobytes() + self.bias.tobytes()).hexdigest()
        return h[:16]
