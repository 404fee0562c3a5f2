"""Consumer-to-shop retrieval: the similarity network as a matrix product (similarity), galleries
(gallery), the ranking policy (policy), FAISS indexes (faiss_index, needs faiss-cpu), a Milvus-backed
gallery (vector_store, needs pymilvus + milvus-lite) and catalog indexing on Ray Data (ray_indexing,
needs ray[data]). The optional back ends are imported only by the modules that use them."""

from .gallery import Gallery, GalleryError, Match
from .policy import DEFAULT_POLICY, RankingPolicy
from .similarity import Similarity, match_probability

__all__ = ["DEFAULT_POLICY", "Gallery", "GalleryError", "Match", "RankingPolicy", "Similarity", "match_probability"]
