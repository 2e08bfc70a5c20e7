"""Personal ranking: which of an edition's papers each reader gets, and why.

The papers of an edition are embedded once (``digest.embedding``; TF-IDF by
default) and every reader is ranked against those vectors.

Relevance, before a reader has MODEL_MIN_LIKES likes: the cosine similarity
of each paper to the reader's profile, a set of vectors: one per interest
phrase, one per liked paper, and (weighted CATEGORY_TOPIC_WEIGHT) one per
arXiv category's topic phrase. A paper is as relevant as its best match, so
listing more interests never dilutes any of them; papers in one of the
reader's categories get CATEGORY_BONUS; papers like one the reader disliked
lose DISLIKE_PENALTY × that similarity. A paper passes the send threshold
at RELEVANCE_THRESHOLD.

Relevance from MODEL_MIN_LIKES likes on, as arxiv-sanity does: a small
logistic regression per reader, fitted on the fly in the edition's vector
space: liked papers and interest phrases are the positives; disliked papers,
papers we sent that got no vote ("ignored", weighted lower) and the rest of
the edition (weighted lower still) the negatives, the two sides balanced.
With TF-IDF the model only sees the terms of the positives (what the reader
likes is described by the words of what they liked), which keeps a fit to a
few milliseconds. Relevance is the model's probability that the reader likes
the paper and orders the papers; a paper is worth sending when the model is
confident (MODEL_THRESHOLD) or its similarity passes RELEVANCE_THRESHOLD,
since a model fitted on a handful of likes is rarely confident about new papers.

The final score:

    score = w · relevance / max(relevance) + (1 − w) · trending / max(trending)

with w = settings.DIGEST_RELEVANCE_WEIGHT for a reader with any profile and
0 (the pure trending list) for a reader without interests, categories or likes.

``rank_for`` ranks one reader; ``rank_many`` ranks a chunk of readers with the
same arithmetic on readers × papers arrays, and gives the same results.
"""

from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

import numpy as np
from django.conf import settings
from scipy import sparse
from scipy.special import expit

from subscriptions.models import split_interests

from .categories import category_label, category_topic
from .embedding import load_embedder, paper_text, similarities, terms
from .reader_models import fit_logistic, model_rows

RELEVANCE_THRESHOLD = 0.08
MODEL_THRESHOLD = 0.5
MODEL_MIN_LIKES = 5
MODEL_C = 4.0
IGNORED_WEIGHT = 0.5
UNLABELLED_WEIGHT = 0.1
CATEGORY_BONUS = 0.25
CATEGORY_TOPIC_WEIGHT = 0.7
PROFILE_WEIGHTS = {"interest": 1.0, "category": CATEGORY_TOPIC_WEIGHT, "liked": 1.0}  # per ProfileVector kind
DISLIKE_PENALTY = 0.5
WHY_TERMS_SHOWN = 3
RANK_BLOCK = 1000  # readers ranked together by rank_many: a few readers × papers arrays of this many rows
# A ranker's caches keyed by what readers wrote or chose (interest phrases, voted papers, category
# sets) are emptied between readers once one holds this many entries: readers write interests in
# their own words, so the distinct phrases grow with the readers (about 4 KB each, kept per edition).
READER_KEYS_KEPT = 2_000
# Voters whose phrases and voted papers rank_many embeds in one go (see embed_profiles_of): few
# enough that their keys fit in the caches above with room to spare.
VOTERS_EMBEDDED_TOGETHER = 32


def stack_rows(*matrices):
    """The rows of the given matrices (None ones skipped) as one matrix, sparse or dense like them."""
    present = [m for m in matrices if m is not None]
    if not present:
        return None
    return sparse.vstack(present).tocsr() if sparse.issparse(present[0]) else np.vstack(present)


def in_canonical_form(matrix):
    """A sparse matrix with each row's columns in order (a copy; TF-IDF rows come unordered),
    as a reader's model is fitted on them (``reader_models.direct_fit``); a dense one as it is."""
    if not sparse.issparse(matrix) or matrix.has_canonical_format:
        return matrix
    matrix = matrix.copy()
    matrix.sum_duplicates()
    return matrix


def row_bytes(matrix):
    """Each row of a matrix as bytes: hashable, equal for equal rows, without a Python tuple per row."""
    matrix = np.ascontiguousarray(matrix)
    return matrix.view(np.dtype((np.void, matrix.itemsize * matrix.shape[1]))).ravel().tolist()


@dataclass(frozen=True)
class Candidate:
    """A paper an edition offers, with its trending score and why-line."""

    paper: object
    trending_score: float
    trending_reason: str


class RankedPaper(NamedTuple):
    """A paper picked for a reader. A tuple: a digest is ten or twenty of these per reader."""

    paper: object
    score: float
    relevance: float
    reason: str
    trending: float = 0.0


@dataclass(frozen=True)
class ProfileVector:
    """One thing a reader cares about: an interest phrase, a category, or a liked paper."""

    kind: str  # "interest", "category" or "liked"
    label: str
    weight: float


@dataclass(frozen=True)
class RankRequest:
    """One reader for ``EditionRanker.rank_many``: what ``rank_for`` takes besides the defaults."""

    subscriber: object
    exclude_ids: object = ()
    liked: object = ()
    disliked: object = ()
    ignored: object = ()


@dataclass
class Match:
    """How one reader's profile meets every paper of the edition."""

    relevance: np.ndarray
    passes: np.ndarray
    similarity: np.ndarray | None  # papers × profile vectors, weighted
    vectors: list


def interest_terms(subscriber):
    """``Subscriber.interest_terms`` as the cached tuple, without a list copy per call."""
    return split_interests(subscriber.interests)


class EditionRanker:
    """Ranks one edition for many readers: the paper vectors are computed once.

    ``candidates`` are EditionPaper rows or ``Candidate`` objects (anything with
    ``paper``, ``trending_score`` and ``trending_reason``).
    """

    def __init__(self, candidates):
        self.entries = [c for c in candidates if not c.paper.withdrawn_at]
        self.papers = [c.paper for c in self.entries]
        self.index = {p.pk: i for i, p in enumerate(self.papers)}
        self.embedder = load_embedder()
        self.paper_vectors = None
        if self.papers:
            self.paper_vectors = self.embedder.fit_transform([paper_text(p) for p in self.papers])
        top = max((c.trending_score for c in self.entries), default=0.0) or 1.0
        self.trending = np.array([c.trending_score / top for c in self.entries], dtype=np.float64)
        self.pks = np.array([p.pk for p in self.papers], dtype=np.int64)
        by_arxiv_id = sorted(range(len(self.papers)), key=lambda i: self.papers[i].arxiv_id)
        self.tie_break = np.empty(len(self.papers), dtype=np.int64)
        self.tie_break[by_arxiv_id] = np.arange(len(self.papers))
        self.by_tie_break = np.array(by_arxiv_id, dtype=np.intp)
        self._trending_order = None
        self._trending_picks = None
        self.paper_columns = self.paper_vectors.tocsc() if sparse.issparse(self.paper_vectors) else None
        self._text_vectors = {}
        self._edition_rows = None
        self._paper_terms = {}
        self._in_category = {}
        self._in_categories = {}
        self._bonus = {}
        self._phrase_terms = {}
        self._phrase_hits = {}
        # Cosine similarity of every paper to one profile text or one paper, computed
        # once per ranker: readers share interests, so most of a chunk is lookups.
        self._text_similarity = {}
        self._paper_similarity = {}
        self.all_open = np.ones(len(self.papers), dtype=bool)

    def keep_reader_caches_bounded(self, room=0):
        """Empty each cache keyed by readers' phrases, votes or categories that holds
        READER_KEYS_KEPT entries (less ``room``, for entries about to be added). Only
        called between readers: a cache is never emptied while a reader's ranking uses it."""
        for cache in (self._text_vectors, self._text_similarity, self._paper_similarity, self._phrase_hits,
                      self._phrase_terms, self._in_categories, self._bonus):
            if len(cache) + room >= READER_KEYS_KEPT:
                cache.clear()

    # --- vectors, cached for the life of the ranker -----------------------

    def text_rows(self, texts):
        """Each text's vector as a one-row matrix, embedded once."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_vectors]
        if missing:
            for text, row in zip(missing, self._rows(self.embedder.transform(missing))):
                self._text_vectors[text] = row
        return [self._text_vectors[t] for t in texts]

    def paper_rows(self, papers):
        """Each paper's vector as a one-row matrix: a row of the edition matrix, or embedded (once)
        in its space. A reader's model stacks its rows once, not once per kind of paper."""
        if self._edition_rows is None:
            self._edition_rows = self._rows(in_canonical_form(self.paper_vectors))
        index = self.index
        outside = iter(self.text_rows(self.outside_texts(papers)))
        return [self._edition_rows[index[p.pk]] if p.pk in index else next(outside) for p in papers]

    def outside_texts(self, papers):
        """The texts of those of ``papers`` not in the edition: they are embedded like phrases."""
        return [paper_text(p) for p in papers if p.pk not in self.index]

    def vectors_of(self, papers):
        """Vectors of any papers, in order, as one matrix (``paper_rows`` stacked)."""
        return stack_rows(*self.paper_rows(papers)) if papers else None

    @staticmethod
    def _rows(matrix):
        return [matrix[i] if sparse.issparse(matrix) else matrix[i : i + 1] for i in range(matrix.shape[0])]


    def paper_terms(self, i):
        """The paper's terms in order, space-separated and padded, for whole-phrase lookups."""
        if i not in self._paper_terms:
            self._paper_terms[i] = f" {' '.join(terms(paper_text(self.papers[i])))} "
        return self._paper_terms[i]

    # --- relevance --------------------------------------------------------

    @staticmethod
    def profile_vectors(subscriber, liked):
        keys = EditionRanker.profile_keys(subscriber) + [("liked", paper.title) for paper in liked]
        return [ProfileVector(kind, label, PROFILE_WEIGHTS[kind]) for kind, label in keys]

    @staticmethod
    def profile_text(vector):
        """The text an interest or category vector embeds: the phrase, or the category's topic phrase."""
        return vector.label if vector.kind == "interest" else category_topic(vector.label)

    def text_similarities(self, texts):
        """Similarity columns (one per text, papers long), computed in one product for the missing ones.

        The texts are embedded together and their vectors not kept: splitting an
        embedding into a sparse matrix per text costs more than the product.
        """
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_similarity]
        if missing:
            columns = self.similarity_to(self.embedder.transform(missing))
            for j, text in enumerate(missing):
                self._text_similarity[text] = np.ascontiguousarray(columns[:, j])
        return [self._text_similarity[t] for t in texts]

    def paper_similarities(self, papers):
        missing = [p for p in {p.pk: p for p in papers}.values() if p.pk not in self._paper_similarity]
        if missing:
            columns = self.similarity_to(self.vectors_of(missing))
            for j, paper in enumerate(missing):
                self._paper_similarity[paper.pk] = np.ascontiguousarray(columns[:, j])
        return [self._paper_similarity[p.pk] for p in papers]

    def profile_similarity(self, vectors, liked):
        """papers × profile vectors, unweighted: the cached columns of each text and liked paper."""
        texts = [self.profile_text(v) for v in vectors if v.kind != "liked"]
        columns = self.text_similarities(texts) + self.paper_similarities(liked)
        return np.column_stack(columns) if columns else None

    def in_category(self, code):
        if code not in self._in_category:
            self._in_category[code] = np.array([code in (p.categories or []) for p in self.papers], dtype=bool)
        return self._in_category[code]

    def in_categories(self, codes):
        """Whether each paper is in any of ``codes`` (a tuple)."""
        if codes not in self._in_categories:
            member = np.zeros(len(self.papers), dtype=bool)
            for code in codes:
                member |= self.in_category(code)
            self._in_categories[codes] = member
        return self._in_categories[codes]

    def category_bonus(self, subscriber):
        return self.categories_bonus(tuple(subscriber.categories)) if subscriber.categories else 0.0

    def categories_bonus(self, codes):
        """CATEGORY_BONUS for the papers in any of ``codes`` (a non-empty tuple), float64."""
        if codes not in self._bonus:
            self._bonus[codes] = CATEGORY_BONUS * self.in_categories(codes)
        return self._bonus[codes]

    def similarity_to(self, matrix):
        """Cosine similarity of every paper to each row of ``matrix`` (papers × rows).

        With sparse vectors only the columns ``matrix`` uses are multiplied.
        """
        if self.paper_columns is None or not sparse.issparse(matrix):
            return similarities(self.paper_vectors, matrix)
        matrix = matrix.tocsr()
        used = np.unique(matrix.indices)
        return np.asarray(self.paper_columns[:, used] @ matrix[:, used].T.toarray())

    def match(self, subscriber, liked=(), disliked=(), ignored=()):
        """Relevance of every paper for one reader (see the module docstring)."""
        liked, disliked = list(liked), list(disliked)
        vectors = self.profile_vectors(subscriber, liked)
        similarity = self.profile_similarity(vectors, liked)
        cosine = np.zeros(len(self.papers))
        if similarity is not None:
            weights = np.array([v.weight for v in vectors])
            if (weights != 1.0).any():
                similarity = similarity * weights
            cosine = similarity.max(axis=1)
        cosine = cosine + self.category_bonus(subscriber)
        if disliked:
            cosine = cosine - DISLIKE_PENALTY * np.column_stack(self.paper_similarities(disliked)).max(axis=1)
        if len(liked) >= MODEL_MIN_LIKES:
            relevance = self.model_probability(subscriber, liked, disliked, list(ignored))
            passes = (relevance >= MODEL_THRESHOLD) | (cosine >= RELEVANCE_THRESHOLD)
            return Match(relevance, passes, similarity, vectors)
        return Match(cosine, cosine >= RELEVANCE_THRESHOLD, similarity, vectors)

    def model_probability(self, subscriber, liked, disliked, ignored):
        """P(reader likes paper) from a per-reader logistic regression (arxiv-sanity style)."""
        voted_on = np.fromiter((p.pk for p in (*liked, *disliked, *ignored)), dtype=np.int64)
        unlabelled = np.flatnonzero(~np.isin(self.pks, voted_on))  # edition rows, in order
        positives = self.paper_rows(liked) + self.text_rows(interest_terms(subscriber))
        voted = self.paper_rows([*disliked, *ignored])
        if not voted and not len(unlabelled):
            return np.full(len(self.papers), 1.0)
        n_positive = len(positives)
        if sparse.issparse(self.paper_vectors):
            # With TF-IDF the model sees only the terms of the positives (module docstring).
            features, candidates = model_rows(self.paper_columns, positives + voted, n_positive, unlabelled)
            if not features.shape[1]:  # nothing the reader liked shares a term with the edition
                return np.zeros(len(self.papers))
        else:
            candidates = self.paper_vectors.astype(np.float64, copy=False)
            features = np.vstack([*positives, *voted, candidates[unlabelled]]).astype(np.float64, copy=False)
        labels = np.r_[np.ones(n_positive), np.zeros(features.shape[0] - n_positive)]
        weights = np.r_[
            np.ones(n_positive),
            np.ones(len(disliked)),
            np.full(len(ignored), IGNORED_WEIGHT),
            np.full(len(unlabelled), UNLABELLED_WEIGHT),
        ]
        weights[labels == 0] *= weights[labels == 1].sum() / weights[labels == 0].sum()
        coefficients, intercept = fit_logistic(features, labels, weights, MODEL_C)
        # predict_proba's positive column: for two classes, the logistic function of the decision function.
        return expit(candidates @ coefficients + intercept)

    # --- ranking ----------------------------------------------------------

    def rank_for(self, subscriber, *, exclude_ids=(), liked=(), disliked=(), ignored=(),
                 limit=None, apply_threshold=True):
        """The papers ``subscriber`` gets, best first: an empty list means nothing worth sending.

        Papers in ``exclude_ids`` (already sent) and the reader's voted papers
        are never offered. ``apply_threshold=False`` ranks without the send
        threshold (previews, the ``recommend`` command).
        """
        if not self.papers:
            return []
        self.keep_reader_caches_bounded()
        limit = limit or subscriber.max_papers
        liked, disliked = list(liked), list(disliked)
        excluded = set(exclude_ids) | {p.pk for p in (*liked, *disliked)}
        if excluded:
            open_ = ~np.isin(self.pks, np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
        else:
            open_ = self.all_open
        has_profile = bool(interest_terms(subscriber) or subscriber.categories or liked)
        if not has_profile:
            return self.top_trending(open_, limit)
        match = self.match(subscriber, liked, disliked, ignored)
        eligible = open_ & match.passes if apply_threshold else open_
        if not eligible.any():
            return self.top_trending(open_, limit) if apply_threshold and subscriber.always_send_top else []
        weight = settings.DIGEST_RELEVANCE_WEIGHT
        top_relevance = match.relevance[open_].max()
        relative = match.relevance / top_relevance if top_relevance > 0 else np.zeros(len(self.papers))
        scores = weight * relative + (1 - weight) * self.trending
        return [
            RankedPaper(self.papers[i], float(scores[i]), float(match.relevance[i]),
                        self.why(subscriber, i, match, liked), float(self.trending[i]))
            for i in self.best(scores, eligible, limit)
        ]

    def top_trending(self, eligible, limit):
        return [self.trending_pick(i) for i in self.best(self.trending, eligible, limit)]

    def trending_pick(self, i):
        return RankedPaper(self.papers[i], float(self.trending[i]), 0.0, self.entries[i].trending_reason,
                           float(self.trending[i]))

    def best(self, scores, eligible, limit):
        """Indices of the ``limit`` best eligible papers; ties go to the lower arXiv id."""
        order = np.lexsort((self.tie_break, -scores))
        return [int(i) for i in order[eligible[order]][:limit]]

    # --- many readers at once ---------------------------------------------

    def rank_many(self, readers):
        """``rank_for`` for each of ``readers`` (RankRequest), with numpy over blocks of readers.

        Returns one list of RankedPaper per reader, in order, equal to what
        ``rank_for(subscriber, exclude_ids=…, liked=…, disliked=…, ignored=…)`` returns
        (default limit, send threshold on). Readers with likes or dislikes go
        through ``rank_for``: their model and penalties are per reader.
        """
        readers = list(readers)
        if not self.papers:
            return [[] for _ in readers]
        results = [None] * len(readers)
        groups = {}
        voters = [n for n, request in enumerate(readers) if request.liked or request.disliked]
        for start in range(0, len(voters), VOTERS_EMBEDDED_TOGETHER):
            together = voters[start : start + VOTERS_EMBEDDED_TOGETHER]
            self.embed_profiles_of([readers[n] for n in together])
            for n in together:
                request = readers[n]
                results[n] = self.rank_for(
                    request.subscriber, exclude_ids=request.exclude_ids, liked=request.liked,
                    disliked=request.disliked, ignored=request.ignored,
                )
        for n, request in enumerate(readers):
            if results[n] is None:
                groups.setdefault(self.arithmetic_group(request.subscriber), []).append(n)
        for group, members in groups.items():
            for start in range(0, len(members), RANK_BLOCK):
                block = members[start : start + RANK_BLOCK]
                self.keep_reader_caches_bounded()
                for n, ranked in zip(block, self.rank_block(group, [readers[n] for n in block])):
                    results[n] = ranked
        return results

    def embed_profiles_of(self, requests):
        """What ``rank_for`` embeds for these voters, embedded together ahead of them: their
        phrases' and voted papers' similarity columns, and their models' rows. One embedding
        call per kind for a few dozen readers instead of one per reader: each call costs
        scikit-learn's checks, more than the few texts it embeds."""
        texts, voted, model_texts = [], [], []
        for request in requests:
            texts += [self.profile_text(v) for v in self.profile_vectors(request.subscriber, ())]
            voted += [*request.liked, *request.disliked]
            if len(request.liked) >= MODEL_MIN_LIKES:
                model_texts += interest_terms(request.subscriber)
                model_texts += self.outside_texts([*request.liked, *request.disliked, *request.ignored])
        self.keep_reader_caches_bounded(room=max(len(texts), len(voted), len(model_texts)))
        self.text_similarities(texts)
        self.paper_similarities(voted)
        self.text_rows(model_texts)

    @staticmethod
    def arithmetic_group(subscriber):
        """Which readers ``rank_for`` computes alike: "trending" (no profile), "plain" or "categories".

        Without categories a reader's relevance stays in the embedding's dtype
        (float32 for TF-IDF); the category bonus makes it float64. The two are
        ranked in separate blocks so that every float is the one ``rank_for`` gets.
        """
        if subscriber.categories:
            return "categories"
        return "plain" if interest_terms(subscriber) else "trending"

    def rank_block(self, group, requests):
        """``rank_many`` for readers of one arithmetic group, at most RANK_BLOCK of them."""
        open_ = self.open_rows(requests)
        subscribers = [request.subscriber for request in requests]
        if group == "trending":
            return [self.trending_list(row, subscriber.max_papers) for row, subscriber in zip(open_, subscribers)]
        vectors, index = self.profile_slots(subscribers)
        columns = self.profile_columns(vectors, group == "plain")
        category_sets, category_of = self.category_sets(subscribers)
        bonus = None if group == "plain" else self.bonus_rows(category_sets)[category_of]
        relevance = self.relevance_rows(columns, index, bonus)
        eligible = open_ & (relevance >= RELEVANCE_THRESHOLD)
        scores = self.score_rows(relevance, open_)
        picks, counts = self.best_rows(scores, eligible, [subscriber.max_papers for subscriber in subscribers])
        lengths = [len(row) for row in picks]
        rows, papers = np.repeat(np.arange(len(picks)), lengths), np.concatenate(picks)
        slots = index[rows]
        nearest = self.nearest_vectors(columns, slots, papers)
        categories = self.shared_categories(category_sets, category_of[rows], papers)
        reasons = self.why_lines(vectors, slots, papers, nearest, category_sets, categories)
        ranked = self.ranked_papers(papers, scores[rows, papers], relevance[rows, papers], reasons)
        bounds = np.r_[0, np.cumsum(lengths)].tolist()
        return [
            ranked[bounds[r] : bounds[r + 1]] if counts[r] else self.nothing_eligible(subscriber, open_[r])
            for r, subscriber in enumerate(subscribers)
        ]

    def nothing_eligible(self, subscriber, open_row):
        """What ``rank_for`` gives a reader no paper passes for: the trending list, if they asked for it."""
        return self.trending_list(open_row, subscriber.max_papers) if subscriber.always_send_top else []

    def ranked_papers(self, papers, scores, relevance, reasons):
        """A RankedPaper for each picked paper, with its score, relevance and why-line."""
        return list(map(
            RankedPaper, map(self.papers.__getitem__, papers.tolist()), scores.tolist(), relevance.tolist(),
            reasons, self.trending[papers].tolist(),
        ))

    def open_rows(self, requests):
        """readers × papers, False where the paper is among the reader's ``exclude_ids`` (``np.isin`` in bulk)."""
        excluded = [set(request.exclude_ids) for request in requests]
        counts = [len(ids) for ids in excluded]
        if not any(counts):
            return np.ones((len(requests), len(self.papers)), dtype=bool)
        ids = np.fromiter(chain.from_iterable(excluded), dtype=np.int64, count=sum(counts))
        rows = np.repeat(np.arange(len(requests)), counts)
        distinct, slot_of_paper = np.unique(self.pks, return_inverse=True)
        slot = np.minimum(np.searchsorted(distinct, ids), len(distinct) - 1)
        hit = distinct[slot] == ids
        closed = np.zeros((len(requests), len(distinct)), dtype=bool)
        closed[rows[hit], slot[hit]] = True
        return ~closed[:, slot_of_paper]

    def trending_list(self, open_row, limit):
        """``top_trending(open_row, limit)``, from the edition's trending order (sorted once).

        The RankedPapers are made once too: they are the same for every reader.
        """
        if self._trending_order is None:
            self._trending_order = np.array(self.best(self.trending, self.all_open, None), dtype=np.intp)
            self._trending_picks = [self.trending_pick(i) for i in range(len(self.papers))]
        order = self._trending_order
        return list(map(self._trending_picks.__getitem__, order[open_row[order]][:limit].tolist()))

    def profile_slots(self, subscribers):
        """The block's distinct profile vectors, and each reader's as positions in that list.

        ``index`` (readers × most profile vectors) lists a reader's in ``profile_vectors``
        order, padded with ``len(vectors)``. The vectors are told apart by kind and label
        (ProfileVector's own hash is slow Python).
        """
        positions = {}
        rows = [
            [positions.setdefault(key, len(positions)) for key in self.profile_keys(subscriber)]
            for subscriber in subscribers
        ]
        lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
        index = np.full((len(rows), max(1, lengths.max(initial=0))), len(positions), dtype=np.intp)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        index[np.repeat(np.arange(len(rows)), lengths), np.arange(len(starts)) - starts] = np.fromiter(
            chain.from_iterable(rows), dtype=np.intp, count=len(starts)
        )
        return [ProfileVector(kind, label, PROFILE_WEIGHTS[kind]) for kind, label in positions], index

    @staticmethod
    def profile_keys(subscriber):
        """(kind, label) of the reader's interest and category vectors, in order: interest
        phrases, then the categories that have a topic phrase."""
        keys = [("interest", term) for term in interest_terms(subscriber)]
        if subscriber.categories:
            keys += [("category", code) for code in subscriber.categories if category_topic(code)]
        return keys

    def profile_columns(self, vectors, plain):
        """The weighted similarity columns of the block's profile vectors, as rows of one matrix.

        ``columns`` (vectors × papers) holds the values of ``match()``'s weighted
        similarity: float64, or the similarities' own dtype for ``plain`` readers (no
        categories, so no weights). Its last row is -inf, the padding of ``profile_slots``'s
        index, so padding never wins a max.
        """
        similarity = self.text_similarities([self.profile_text(vector) for vector in vectors])
        dtype = similarity[0].dtype if plain else np.float64
        columns = np.full((len(vectors) + 1, len(self.papers)), -np.inf, dtype=dtype)
        for row, vector, column in zip(columns, vectors, similarity):
            row[:] = column if vector.weight == 1.0 else column.astype(np.float64) * vector.weight
        return columns

    @staticmethod
    def category_sets(subscribers):
        """The block's distinct category lists (as tuples), and each reader's position in that list."""
        positions = {}
        of_reader = [positions.setdefault(tuple(reader.categories or ()), len(positions)) for reader in subscribers]
        return list(positions), np.array(of_reader, dtype=np.intp)

    def bonus_rows(self, category_sets):
        """``categories_bonus`` of each of the category lists of a block of readers with categories."""
        return np.stack([self.categories_bonus(codes) for codes in category_sets])

    def relevance_rows(self, columns, index, bonus):
        """readers × papers relevance, as ``match()`` computes it: the best column, plus the category bonus.

        Readers with categories get float64 (their ``bonus`` rows are), ``plain`` ones
        (``bonus`` None) the columns' dtype.
        """
        cosine = columns[index[:, 0]]
        for k in range(1, index.shape[1]):
            np.maximum(cosine, columns[index[:, k]], out=cosine)
        if bonus is None:
            return cosine + 0.0
        cosine[index[:, 0] == len(columns) - 1] = 0.0  # no profile vectors: match() starts from zeros
        return cosine + bonus

    def score_rows(self, relevance, open_):
        """``rank_for``'s scores, a row per reader: relevance over its best open paper's, with trending.

        A row whose best open relevance is not above 0 is divided by 1 where ``rank_for``
        takes zeros: with a threshold of 0 or more its eligible papers have relevance 0,
        so they score the same.
        """
        weight = settings.DIGEST_RELEVANCE_WEIGHT
        top = np.where(open_, relevance, relevance.dtype.type(-np.inf)).max(axis=1, keepdims=True)
        relative = relevance / np.where(top > 0, top, relevance.dtype.type(1))
        return weight * relative + (1 - weight) * self.trending

    def best_rows(self, scores, eligible, limits):
        """``best()`` for every row: the ``limit`` best eligible papers, ties to the lower arXiv id.

        The columns are put in tie-break order, so ordering by -score with ties to the
        lower column settles ties as ``best``'s lexsort does; ineligible papers sort last.
        Returns the picks and the number of eligible papers of each row.
        """
        key = np.where(eligible, -scores, np.inf)[:, self.by_tie_break]
        wanted = max((len(self.papers) if limit is None else limit for limit in limits), default=1)
        order = self.by_tie_break[self.smallest_first(key, max(1, wanted))]
        counts = eligible.sum(axis=1).tolist()
        return [order[r, :count][:limit] for r, (count, limit) in enumerate(zip(counts, limits))], counts

    @staticmethod
    def smallest_first(key, wanted):
        """Per row, the columns of the ``wanted`` smallest keys in order, ties to the lower column.

        A partition finds them and only they are sorted; a row whose ``wanted``-th
        key ties with a key left outside is sorted in full instead. (When that key
        is inf, every finite key is inside, and inf ones are never picked.)
        """
        if wanted >= key.shape[1]:
            return np.argsort(key, axis=1, kind="stable")
        found = np.argpartition(key, wanted - 1, axis=1)[:, :wanted]
        values = np.take_along_axis(key, found, axis=1)
        found = np.take_along_axis(found, np.lexsort((found, values)), axis=1)
        cut = values.max(axis=1, keepdims=True)
        crossed = (np.count_nonzero(key <= cut, axis=1) > wanted) & (cut[:, 0] < np.inf)
        if crossed.any():
            found[crossed] = np.argsort(key[crossed], axis=1, kind="stable")[:, :wanted]
        return found

    @staticmethod
    def nearest_vectors(columns, slots, papers):
        """For each pick (its reader's ``index`` row, its paper), the nearest of the block's vectors, or -1.

        As ``nearest_profile_vector``: the first maximum of the weighted similarities, if above 0.
        """
        values = columns[slots, papers[:, None]]
        best = values.argmax(axis=1)
        picks = np.arange(len(papers))
        return np.where(values[picks, best] > 0, slots[picks, best], -1)

    def shared_categories(self, category_sets, categories, papers):
        """Per pick, its reader's category list, or -1 if the paper is in none of them.

        A why-line depends on the reader's categories only through the ones the paper shares.
        """
        in_categories = np.stack([self.in_categories(codes) for codes in category_sets])
        return np.where(in_categories[categories, papers], categories, -1)

    def why_lines(self, vectors, slots, papers, nearest, category_sets, categories):
        """``why()`` for every pick, given its reader's ``index`` row, nearest vector and category list (or -1).

        A line depends only on the matched phrases shown, or else on the nearest
        vector and the reader's categories, and on the paper: each distinct one is
        made once per block.
        """
        shown = self.shown_phrases(vectors, slots, papers)
        matched = shown[:, 0] >= 0
        keys = np.column_stack([shown, np.where(matched, -1, nearest), np.where(matched, -1, categories), papers])
        hashable = row_bytes(keys)
        lines = {
            key: self.block_line(vectors, category_sets, *keys[n].tolist())
            for key, n in dict(zip(hashable, range(len(hashable)))).items()
        }
        return list(map(lines.__getitem__, hashable))

    def block_line(self, vectors, category_sets, *key):
        """The why-line of a ``why_lines`` key: shown phrases' vectors, nearest vector, category list, paper."""
        *shown, nearest, categories, i = key
        matched = [vectors[v].label for v in shown if v >= 0]
        vector = vectors[nearest] if nearest >= 0 else None
        codes = category_sets[categories] if categories >= 0 else ()
        return self.with_trending(i, self.describe(codes, i, matched, vector))

    def shown_phrases(self, vectors, slots, papers):
        """Per pick, the first WHY_TERMS_SHOWN interest phrases of its reader that the paper contains.

        As positions in ``vectors``, padded with -1.
        """
        matched = self.phrase_states(vectors, slots, papers) == 2
        shown = matched & (np.cumsum(matched, axis=1) <= WHY_TERMS_SHOWN)
        first = np.argsort(~shown, axis=1, kind="stable")[:, :WHY_TERMS_SHOWN]
        return np.where(np.take_along_axis(shown, first, axis=1), np.take_along_axis(slots, first, axis=1), -1)

    def phrase_states(self, vectors, slots, papers):
        """Whether each pick's paper contains each of its reader's vectors' phrases: 2 yes, 1 no.

        Category vectors and padding are never contained. The ``phrase_hits`` not
        known yet are searched for, as ``matched_phrases`` would.
        """
        phrases = {v: vector.label for v, vector in enumerate(vectors) if vector.kind == "interest"}
        known = np.ones((len(vectors) + 1, len(self.papers)), dtype=np.uint8)
        for v, phrase in phrases.items():
            known[v] = np.frombuffer(self.phrase_hits(phrase), dtype=np.uint8)
        pick_papers = np.broadcast_to(papers[:, None], slots.shape)
        states = known[slots, pick_papers]
        unknown = states == 0
        if unknown.any():
            for pair in np.unique(slots[unknown] * len(self.papers) + pick_papers[unknown]).tolist():
                v, i = divmod(pair, len(self.papers))
                known[v, i] = self.search_phrase(phrases[v], self.phrase_hits(phrases[v]), i)
            states[unknown] = known[slots[unknown], pick_papers[unknown]]
        return states

    # --- why-lines --------------------------------------------------------

    def why(self, subscriber, i, match, liked):
        return self.with_trending(i, self.personal_reason(subscriber, i, match, liked))

    def with_trending(self, i, reason):
        trending = self.entries[i].trending_reason
        if trending.startswith("trending:") and reason != trending:
            return f"{reason} · {trending}"
        return reason

    def personal_reason(self, subscriber, i, match, liked):
        """Interest terms the paper contains; else the liked paper, category or interest it is closest to."""
        matched = self.matched_interests(subscriber, i)
        nearest = None if matched else self.nearest_profile_vector(i, match)
        return self.describe(subscriber.categories, i, matched, nearest)

    def describe(self, categories, i, matched, nearest):
        """The personal why-line from the matched interest phrases, else the nearest profile vector (or None)."""
        if matched:
            return "matches your interests: " + ", ".join(matched[:WHY_TERMS_SHOWN])
        if nearest is not None and nearest.kind == "liked":
            return f"like “{nearest.label}”, which you liked"
        shared = sorted(set(categories or []) & set(self.papers[i].categories or []))
        if shared:
            return "in " + ", ".join(shared)
        if nearest is not None and nearest.kind == "interest":
            return f"related to your interest in {nearest.label}"
        if nearest is not None and nearest.kind == "category":
            return f"related to {nearest.label} ({category_label(nearest.label)})"
        return self.entries[i].trending_reason

    def matched_interests(self, subscriber, i):
        """The interest phrases the paper contains, word for word (stemmed, stop words aside)."""
        return self.matched_phrases(interest_terms(subscriber), i)

    def matched_phrases(self, phrases, i):
        """The phrases paper ``i`` contains."""
        hits = [self.phrase_hits(phrase) for phrase in phrases]
        return [phrase for phrase, known in zip(phrases, hits) if (known[i] or self.search_phrase(phrase, known, i)) == 2]

    def phrase_hits(self, phrase):
        """Whether each paper contains ``phrase``, as far as asked: a byte per paper, 0 unknown, 1 no, 2 yes.

        Readers share phrases, and a substring search of a whole paper costs a microsecond.
        """
        hits = self._phrase_hits.get(phrase)
        if hits is None:
            hits = self._phrase_hits[phrase] = bytearray(len(self.papers))
        return hits

    def search_phrase(self, phrase, hits, i):
        needle = self.phrase_needle(phrase)
        hits[i] = 2 if needle and needle in self.paper_terms(i) else 1
        return hits[i]

    def phrase_needle(self, phrase):
        """`` term term `` for a phrase (None without content words), cached."""
        if phrase not in self._phrase_terms:
            phrase_terms = terms(phrase)
            self._phrase_terms[phrase] = f" {' '.join(phrase_terms)} " if phrase_terms else None
        return self._phrase_terms[phrase]

    @staticmethod
    def nearest_profile_vector(i, match):
        if match.similarity is None:
            return None
        best = int(match.similarity[i].argmax())
        return match.vectors[best] if match.similarity[i, best] > 0 else None
