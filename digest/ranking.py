"""Personal ranking: which of an edition's papers each subscriber gets, and why.

Relevance is the cosine similarity between a subscriber profile and each
paper, in a vector space fitted once per edition (TF-IDF by default; any
class with ``fit_transform``/``transform``/``analyze`` named by
settings.DIGEST_EMBEDDER can replace it). The profile is the subscriber's
interest text and arXiv categories, pulled towards papers they liked and
away from papers they disliked.

    final = w · relevance + (1 − w) · trending / max(trending)

with w = settings.DIGEST_RELEVANCE_WEIGHT for a subscriber with interests,
and 0 (pure trending) for one without.
"""

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

RELEVANCE_THRESHOLD = 0.08
CATEGORY_BONUS = 0.25
LIKE_WEIGHT = 0.5
DISLIKE_WEIGHT = 0.5


@dataclass(frozen=True)
class RankedPaper:
    paper: object
    score: float
    relevance: float
    reason: str


class TfidfEmbedder:
    """TF-IDF over titles, abstracts and keywords, fitted on one edition's papers."""

    def __init__(self):
        self.vectorizer = TfidfVectorizer(
            stop_words="english", sublinear_tf=True, ngram_range=(1, 2), min_df=1, dtype=np.float32
        )

    def fit_transform(self, texts):
        return normalize(self.vectorizer.fit_transform(texts))

    def transform(self, texts):
        return normalize(self.vectorizer.transform(texts))

    def analyze(self, text):
        """The unigram tokens of ``text``, as the vectorizer sees them."""
        return [t for t in self.vectorizer.build_analyzer()(text) if " " not in t]


def paper_text(paper):
    keywords = " ".join(paper.ai_keywords or [])
    return f"{paper.title}. {paper.title}. {paper.abstract} {keywords}"


def load_embedder():
    return import_string(settings.DIGEST_EMBEDDER)()


class EditionRanker:
    """Ranks one edition for many subscribers; the paper vectors are computed once."""

    def __init__(self, edition_entries):
        self.entries = [e for e in edition_entries if not e.paper.withdrawn_at]
        self.papers = [e.paper for e in self.entries]
        self.embedder = load_embedder()
        self.index = {p.pk: i for i, p in enumerate(self.papers)}
        if self.papers:
            self.paper_vectors = self.embedder.fit_transform([paper_text(p) for p in self.papers])
            self.paper_tokens = [set(self.embedder.analyze(paper_text(p))) for p in self.papers]
        top = max((e.trending_score for e in self.entries), default=0.0) or 1.0
        self.trending = np.array([e.trending_score / top for e in self.entries], dtype=np.float32)

    def profile_vector(self, subscriber, liked=(), disliked=()):
        text = " ".join([subscriber.interests, *subscriber.categories])
        vector = self.embedder.transform([text]).toarray()[0]
        liked_texts = [paper_text(p) for p in liked]
        if liked_texts:
            vector = vector + LIKE_WEIGHT * self.embedder.transform(liked_texts).toarray().mean(axis=0)
        disliked_texts = [paper_text(p) for p in disliked]
        if disliked_texts:
            vector = vector - DISLIKE_WEIGHT * self.embedder.transform(disliked_texts).toarray().mean(axis=0)
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector

    def relevance(self, subscriber, liked=(), disliked=()):
        if not self.papers:
            return np.zeros(0, dtype=np.float32)
        scores = np.asarray(self.paper_vectors @ self.profile_vector(subscriber, liked, disliked))
        wanted = set(subscriber.categories or [])
        if wanted:
            bonus = [CATEGORY_BONUS if wanted & set(p.categories or []) else 0.0 for p in self.papers]
            scores = scores + np.array(bonus, dtype=np.float32)
        return scores.ravel()

    def matched_terms(self, subscriber, paper_index):
        tokens = self.paper_tokens[paper_index]
        matched = []
        for term in subscriber.interest_terms:
            term_tokens = self.embedder.analyze(term)
            if term_tokens and all(t in tokens for t in term_tokens):
                matched.append(term)
        return matched

    def why(self, subscriber, i, liked):
        paper = self.papers[i]
        terms = self.matched_terms(subscriber, i)
        if terms:
            return "matches your interests: " + ", ".join(terms)
        categories = sorted(set(subscriber.categories or []) & set(paper.categories or []))
        if categories:
            return "in " + ", ".join(categories)
        if liked:
            nearest = max(liked, key=lambda p: self._similarity_to(p, i))
            return f"like “{nearest.title}”, which you liked"
        return self.entries[i].trending_reason

    def _similarity_to(self, other_paper, i):
        vector = self.embedder.transform([paper_text(other_paper)])
        return float((self.paper_vectors[i] @ vector.T).toarray()[0, 0])

    def rank_for(self, subscriber, *, exclude_ids=(), liked=(), disliked=(), limit=None,
                 apply_threshold=True):
        """The papers ``subscriber`` gets, best first: an empty list means nothing worth sending."""
        limit = limit or subscriber.max_papers
        excluded = set(exclude_ids) | {p.pk for p in liked} | {p.pk for p in disliked}
        has_profile = bool(subscriber.interests.strip() or subscriber.categories or liked)
        relevance = self.relevance(subscriber, liked, disliked) if has_profile else None
        weight = settings.DIGEST_RELEVANCE_WEIGHT if has_profile else 0.0
        ranked = []
        for i, paper in enumerate(self.papers):
            if paper.pk in excluded:
                continue
            rel = float(relevance[i]) if relevance is not None else 0.0
            if has_profile and apply_threshold and rel < RELEVANCE_THRESHOLD:
                continue
            score = weight * rel + (1 - weight) * float(self.trending[i])
            reason = self.why(subscriber, i, liked) if has_profile else self.entries[i].trending_reason
            ranked.append(RankedPaper(paper, score, rel, reason))
        ranked.sort(key=lambda r: (-r.score, r.paper.arxiv_id))
        if not ranked and has_profile and subscriber.always_send_top and apply_threshold:
            return self.top_trending(excluded, limit)
        return ranked[:limit]

    def top_trending(self, excluded, limit):
        return [
            RankedPaper(e.paper, float(self.trending[i]), 0.0, e.trending_reason)
            for i, e in enumerate(self.entries)
            if e.paper.pk not in excluded
        ][:limit]
