"""Personal ranking: which of an edition's papers each subscriber gets, and why.

Relevance is the cosine similarity between a subscriber's profile and each
paper, in a vector space fitted once per edition (TF-IDF by default; any
class with ``fit_transform``/``transform``/``analyze`` named by
settings.DIGEST_EMBEDDER can replace it). The profile is one vector per
interest phrase (plus their arXiv categories), pulled towards papers they
liked and away from papers they disliked; a paper scores its best match, so
listing more interests never dilutes any of them. Papers in one of the
subscriber's arXiv categories get a bonus.

    final = w · relevance / max(relevance) + (1 − w) · trending / max(trending)

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

    def profile_vectors(self, subscriber, liked=(), disliked=()):
        """One unit vector per interest phrase (and one for the categories), each pulled
        towards liked papers and away from disliked ones."""
        texts = subscriber.interest_terms or [subscriber.interests]
        if subscriber.categories:
            texts = [*texts, " ".join(subscriber.categories)]
        vectors = self.embedder.transform(texts).toarray()
        if liked:
            liked_mean = self.embedder.transform([paper_text(p) for p in liked]).toarray().mean(axis=0)
            vectors = np.vstack([vectors + LIKE_WEIGHT * liked_mean, liked_mean])
        if disliked:
            vectors = vectors - DISLIKE_WEIGHT * self.embedder.transform(
                [paper_text(p) for p in disliked]
            ).toarray().mean(axis=0)
        return normalize(vectors)

    def relevance_by_phrase(self, subscriber, liked=(), disliked=()):
        """Cosine similarity of every paper to every profile vector: (papers × phrases)."""
        return np.asarray(self.paper_vectors @ self.profile_vectors(subscriber, liked, disliked).T)

    def relevance(self, subscriber, liked=(), disliked=()):
        """A paper is as relevant as its best-matching interest: phrases do not dilute each other."""
        if not self.papers:
            return np.zeros(0, dtype=np.float32)
        scores = self.relevance_by_phrase(subscriber, liked, disliked).max(axis=1)
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
        closest = self.closest_interest(subscriber, i)
        if closest:
            return f"related to your interest in {closest}"
        return self.entries[i].trending_reason

    def closest_interest(self, subscriber, i):
        terms = subscriber.interest_terms
        if not terms:
            return ""
        similarities = (self.paper_vectors[i] @ self.embedder.transform(terms).T).toarray()[0]
        return terms[int(similarities.argmax())] if similarities.max() > 0 else ""

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
        top_relevance = float(relevance.max()) if relevance is not None and len(relevance) else 0.0
        ranked = []
        for i, paper in enumerate(self.papers):
            if paper.pk in excluded:
                continue
            rel = float(relevance[i]) if relevance is not None else 0.0
            if has_profile and apply_threshold and rel < RELEVANCE_THRESHOLD:
                continue
            relative = rel / top_relevance if top_relevance > 0 else 0.0
            score = weight * relative + (1 - weight) * float(self.trending[i])
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
