"""Step 3 and 4, clustering and classification, with scikit-learn.

Vectors: the model endpoint's embeddings when one is configured, else TF-IDF over the facet
summaries reduced with truncated SVD (LSA); either way L2-normalised, so Euclidean k-means
ranks like cosine similarity and a distance is `1 - cosine similarity` in [0, 2].

Number of topics, the stated criterion: k-means (k-means++, `n_init=3`, seeded) for every k in
[min_topics, max_topics] on a seeded sample of at most FIT_SAMPLE summaries; the k with the
highest mean silhouette score (on at most SILHOUETTE_SAMPLE of them) wins; ties go to the smaller
k. A topic smaller than `min_topic_size` is dissolved. Noise stays unassigned, by two rules:
- its simplified silhouette `1 - d1/d2` (d1, d2: distances to the nearest and second-nearest
  centroid) is below NOISE_SILHOUETTE: it is about as far from its topic as from the next one;
- or d1 exceeds the noise radius, median + 3 x 1.4826 x MAD of the fitted summaries' d1 (a robust
  outlier rule; it bites where the topics are tight, e.g. embeddings of paraphrases).

Names: from the model (a few summaries nearest the centroid, asked for a 2 to 5 word name) or,
without one, the three heaviest terms of the topic's class-based TF-IDF.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bt_flywheel.core.ids import content_hash

FIT_SAMPLE = 5_000
SILHOUETTE_SAMPLE = 3_000
MAX_FEATURES = 5_000
SVD_COMPONENTS = 100
UNASSIGNED = "Unassigned"
NOISE_SILHOUETTE = 0.1

Embedder = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Topic:
    id: str
    name: str
    size: int
    terms: list[str]
    examples: list[str] = field(default_factory=list)


@dataclass
class TopicMap:
    """A fitted topic map: how to turn a summary into a vector, the topics and their centroids."""

    id: str
    facet: str
    vectors: str                       # tfidf | embedding:<model>
    seed: int
    k_scores: dict[int, float]         # silhouette per k tried
    noise_silhouette: float
    noise_radius: float
    topics: list[Topic]
    centroids: np.ndarray              # (k, d), unit rows
    vocabulary: dict[str, int] = field(default_factory=dict)   # tfidf only
    idf: np.ndarray | None = None
    components: np.ndarray | None = None                       # SVD components (tfidf only)
    naming: str = "top_terms"          # top_terms | model:<name>

    # ---- vectors
    def vectorize(self, texts: Sequence[str], embed: Embedder | None = None) -> np.ndarray:
        if self.vectors == "tfidf":
            matrix = _tfidf_from(self.vocabulary, self.idf).transform(list(texts))
            dense = matrix @ self.components.T if self.components is not None else matrix.toarray()
            return _unit(np.asarray(dense, dtype=np.float64))
        if embed is None:
            raise ValueError(f"topic map {self.id} uses {self.vectors}; classifying needs that model")
        return _unit(np.asarray(embed(texts), dtype=np.float64))

    # ---- step 4
    def classify(self, vectors: np.ndarray) -> list[dict[str, Any]]:
        """Each vector's nearest topic and distance; beyond the noise radius it stays unassigned."""
        if len(vectors) == 0:
            return []
        distances = np.clip(1.0 - vectors @ self.centroids.T, 0.0, 2.0)
        order = np.argsort(distances, axis=1, kind="stable")
        rows = np.arange(len(vectors))
        nearest = distances[rows, order[:, 0]]
        second = distances[rows, order[:, 1]] if len(self.topics) > 1 else np.full(len(vectors), 2.0)
        silhouette = np.where(second > 0, 1.0 - nearest / np.maximum(second, 1e-12), 0.0)
        return [{"topic": self.topics[int(j)], "distance": round(float(d), 6), "silhouette": round(float(s), 6),
                 "assigned": bool(s >= self.noise_silhouette and d <= self.noise_radius)}
                for j, d, s in zip(order[:, 0].tolist(), nearest.tolist(), silhouette.tolist(), strict=True)]

    # ---- persistence (JSON for what a person reads, npz for the arrays)
    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "facet": self.facet, "vectors": self.vectors, "seed": self.seed,
                "criterion": "max mean silhouette over k (k-means, seeded); noise: 1 - d1/d2 < noise_silhouette "
                             "or d1 > noise_radius (median + 3*1.4826*MAD of fitted d1)",
                "k_scores": {str(k): v for k, v in self.k_scores.items()}, "noise_silhouette": self.noise_silhouette,
                "noise_radius": self.noise_radius,
                "naming": self.naming, "vocabulary": self.vocabulary,
                "topics": [{"id": t.id, "name": t.name, "size": t.size, "terms": t.terms, "examples": t.examples}
                           for t in self.topics]}

    def arrays(self) -> bytes:
        buffer = io.BytesIO()
        extra = {}
        if self.idf is not None:
            extra["idf"] = self.idf
        if self.components is not None:
            extra["components"] = self.components
        np.savez(buffer, centroids=self.centroids, **extra)
        return buffer.getvalue()

    @classmethod
    def load(cls, document: dict[str, Any], arrays: bytes) -> TopicMap:
        with np.load(io.BytesIO(arrays)) as data:
            centroids = data["centroids"]
            idf = data["idf"] if "idf" in data else None
            components = data["components"] if "components" in data else None
        topics = [Topic(t["id"], t["name"], int(t["size"]), list(t["terms"]), list(t.get("examples") or []))
                  for t in document["topics"]]
        return cls(id=document["id"], facet=document["facet"], vectors=document["vectors"], seed=int(document["seed"]),
                   k_scores={int(k): float(v) for k, v in document["k_scores"].items()},
                   noise_silhouette=float(document["noise_silhouette"]),
                   noise_radius=float(document["noise_radius"]), topics=topics, centroids=centroids,
                   vocabulary={str(k): int(v) for k, v in (document.get("vocabulary") or {}).items()},
                   idf=idf, components=components, naming=document.get("naming", "top_terms"))


@dataclass
class FitOptions:
    seed: int = 0
    min_topics: int = 2
    max_topics: int = 12
    min_topic_size: int = 5
    embed: Embedder | None = None
    embedding_model: str | None = None
    namer: Callable[[list[str]], str | None] | None = None   # sample summaries -> a name (model naming)
    namer_model: str | None = None


def fit_topic_map(ids: Sequence[str], texts: Sequence[str], *, facet: str, options: FitOptions) -> TopicMap:
    """Cluster summaries (ids[i] -> texts[i]) into a topic map."""
    from threadpoolctl import threadpool_limits

    # BLAS/OpenMP threads that spin against each other on a shared 2-core machine cost more than
    # they give on a 10k-row fit: one thread, predictable and deterministic
    with threadpool_limits(limits=1):
        return _fit_topic_map(ids, texts, facet=facet, options=options)


def _fit_topic_map(ids: Sequence[str], texts: Sequence[str], *, facet: str, options: FitOptions) -> TopicMap:
    if len(texts) < max(options.min_topics, 2) * 2:
        raise ValueError(f"only {len(texts)} summaries; too few to cluster")
    rng = np.random.default_rng(options.seed)
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")  # the sample must not depend on input order
    if len(texts) > FIT_SAMPLE:
        order = order[np.sort(rng.choice(len(order), size=FIT_SAMPLE, replace=False))]
    sample = order
    fit_texts = [texts[i] for i in sample]
    tfidf, terms_matrix = _fit_tfidf(fit_texts)
    components = None
    if options.embed is not None:
        vectors = _unit(np.asarray(options.embed(fit_texts), dtype=np.float64))
        kind = f"embedding:{options.embedding_model or 'model'}"
    else:
        vectors, components = _lsa(terms_matrix, options.seed)
        kind = "tfidf"
    k_scores, labels, centers = _choose_k(vectors, options)
    topics, centroids, member_sets = _topics_from(labels, centers, vectors, options.min_topic_size)
    radius = _noise_radius(1.0 - np.max(vectors @ centroids.T, axis=1))
    map_id = content_hash(json.dumps([facet, kind, options.seed, sorted(str(i) for i in ids)]), 16)
    names = _name_topics(member_sets, terms_matrix, tfidf, fit_texts, vectors, centroids, options)
    built = []
    for index, (members, (name, terms, examples)) in enumerate(zip(member_sets, names, strict=True)):
        built.append(Topic(id=content_hash(f"{map_id}|{index}|{name}", 16), name=name, size=len(members),
                           terms=terms, examples=examples))
    vocabulary = {str(t): int(i) for t, i in tfidf.vocabulary_.items()} if kind == "tfidf" else {}
    return TopicMap(id=map_id, facet=facet, vectors=kind, seed=options.seed, k_scores=k_scores,
                    noise_silhouette=NOISE_SILHOUETTE, noise_radius=round(radius, 6), topics=built, centroids=centroids,
                    vocabulary=vocabulary, idf=tfidf.idf_ if kind == "tfidf" else None, components=components,
                    naming=f"model:{options.namer_model}" if options.namer else "top_terms")


def _fit_tfidf(texts: Sequence[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, max_features=MAX_FEATURES,
                                 min_df=2 if len(texts) >= 50 else 1, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        matrix = vectorizer.fit_transform(list(texts))
    except ValueError:  # every text is stop words or empty: keep whatever tokens there are
        vectorizer = TfidfVectorizer(sublinear_tf=True, max_features=MAX_FEATURES, token_pattern=r"(?u)\b\w+\b")
        matrix = vectorizer.fit_transform(list(texts))
    return vectorizer, matrix


def _tfidf_from(vocabulary: dict[str, int], idf: np.ndarray | None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, vocabulary=vocabulary,
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    vectorizer.idf_ = idf
    return vectorizer


def _lsa(matrix, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    from sklearn.decomposition import TruncatedSVD

    n_components = min(SVD_COMPONENTS, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if n_components < 2:
        return _unit(matrix.toarray()), None
    svd = TruncatedSVD(n_components=n_components, random_state=seed, algorithm="randomized", n_iter=7)
    reduced = svd.fit_transform(matrix)
    return _unit(reduced), svd.components_


def _choose_k(vectors: np.ndarray, options: FitOptions) -> tuple[dict[int, float], np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    distinct = len(np.unique(np.round(vectors, 9), axis=0))
    upper = max(options.min_topics, min(options.max_topics, n // max(options.min_topic_size, 1), n - 1, distinct))
    scores: dict[int, float] = {}
    best: tuple[float, int, np.ndarray, np.ndarray] | None = None
    for k in range(options.min_topics, upper + 1):
        model = KMeans(n_clusters=k, n_init=3, random_state=options.seed).fit(vectors)
        if len(set(model.labels_.tolist())) < 2:
            continue
        score = float(silhouette_score(vectors, model.labels_, sample_size=min(n, SILHOUETTE_SAMPLE),
                                       random_state=options.seed))
        scores[k] = round(score, 6)
        if best is None or score > best[0] + 1e-9:
            best = (score, k, model.labels_.copy(), model.cluster_centers_.copy())
    if best is None:
        raise ValueError("every summary is the same; nothing to cluster")
    return scores, best[2], best[3]


def _topics_from(labels: np.ndarray, centers: np.ndarray, vectors: np.ndarray, min_size: int
                 ) -> tuple[list[None], np.ndarray, list[np.ndarray]]:
    """Keep clusters of at least min_size, largest first (ties by first member); unit centroids."""
    groups = [np.flatnonzero(labels == j) for j in range(len(centers))]
    kept = [g for g in groups if len(g) >= min_size] or [max(groups, key=len)]
    kept.sort(key=lambda g: (-len(g), int(g[0])))
    centroids = _unit(np.vstack([vectors[g].mean(axis=0) for g in kept]))
    return [None] * len(kept), centroids, kept


def _noise_radius(distances: np.ndarray) -> float:
    median = float(np.median(distances))
    mad = float(np.median(np.abs(distances - median)))
    return min(median + 3.0 * 1.4826 * mad, 2.0)


def _name_topics(member_sets: list[np.ndarray], terms_matrix, tfidf, texts: Sequence[str], vectors: np.ndarray,
                 centroids: np.ndarray, options: FitOptions) -> list[tuple[str, list[str], list[str]]]:
    vocabulary = np.asarray(tfidf.get_feature_names_out())
    names = []
    used: set[str] = set()
    for index, members in enumerate(member_sets):
        weights = np.asarray(terms_matrix[members].sum(axis=0)).ravel()
        top = [str(vocabulary[i]) for i in np.argsort(-weights, kind="stable")[:5] if weights[i] > 0]
        closeness = vectors[members] @ centroids[index]
        nearest = members[np.argsort(-closeness, kind="stable")[:5]]
        examples = [texts[i] for i in nearest]
        name = options.namer(examples) if options.namer else None
        name = (name or " / ".join(top[:3]) or f"topic {index + 1}").strip()
        if name in used:  # two topics may not share a label: SQL groups by it
            name = f"{name} ({index + 1})"
        used.add(name)
        names.append((name, top, examples[:3]))
    return names


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms
