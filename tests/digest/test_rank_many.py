"""rank_many ranks a chunk of readers at once and must give exactly what rank_for gives each of them."""

import json
import random

import numpy as np
import pytest
from django.utils import timezone
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from digest import ranking
from digest.categories import CATEGORY_TOPICS
from digest.embedding import TfidfEmbedder, paper_text
from digest.ranking import Candidate, EditionRanker, RankRequest
from papers.models import Paper
from papers.sources.bundled import CORPUS_PATH
from subscriptions.models import Subscriber

PHRASES = [
    "large language models", "reasoning", "chain of thought", "reinforcement learning from human feedback",
    "diffusion models", "image generation", "video generation", "text-to-image", "3D reconstruction",
    "neural radiance fields", "gaussian splatting", "robotics", "embodied AI", "world models", "agents",
    "tool use", "retrieval augmented generation", "code generation", "mathematical reasoning",
    "vision language models", "multimodal", "speech recognition", "mixture of experts", "quantization",
    "efficient inference", "long context", "sparse attention", "graph neural networks", "benchmark",
    "alignment", "hallucination", "contrastive learning", "object detection", "in-context learning",
    "instruction tuning", "reward models", "scaling laws", "question answering", "summarization",
    # the topic phrase of cs.IR, as an interest: the same column weighted 1 and 0.7
    "information retrieval, search, recommendation, ranking",
    "the of and",  # no content words
    "zymurgy of quasicrystal xylophones",  # matches nothing
]
CODES = [*CATEGORY_TOPICS, "math.OC"]  # math.OC: a category without a topic phrase
NOTHING_MATCHES = "zymurgy of quasicrystal xylophones"


class DenseEmbedder:
    """Dense float32 vectors, as a sentence-embedding model gives."""

    dtype = np.float32

    def __init__(self):
        self.tfidf = TfidfEmbedder()

    def fit_transform(self, texts):
        return self.tfidf.fit_transform(texts).toarray().astype(self.dtype)

    def transform(self, texts):
        return self.tfidf.transform(texts).toarray().astype(self.dtype)


class Float64Embedder(DenseEmbedder):
    """Dense float64 vectors: the relevance of readers without categories is float64 too."""

    dtype = np.float64


def corpus_papers(count, rng):
    """Real papers from the bundled corpus, with random categories, arXiv ids out of pk order, and twins."""
    with open(CORPUS_PATH, encoding="utf-8") as corpus:
        items = [json.loads(line) for line, _ in zip(corpus, range(count))]
    items += items[:4]  # identical texts: exact relevance ties for the tie-break
    ids = rng.sample(range(10000, 99999), len(items))
    return [
        Paper(pk=pk, arxiv_id=f"2611.{ids[pk - 1]:05d}", title=item["title"], abstract=item["abstract"],
              categories=rng.sample(CODES, rng.choice((0, 1, 1, 2))), first_seen_at=timezone.now())
        for pk, item in enumerate(items, start=1)
    ]


def edition(papers, rng):
    """Candidates with few distinct trending scores (ties), and reasons with and without "trending:"."""
    scores = [rng.choice((0.0, 0.25, 0.5, 0.5, 1.0, 2.0, 3.0)) for _ in papers]
    for twin in range(4):  # twins trend alike, so their scores tie too
        scores[len(papers) - 4 + twin] = scores[twin]
    return [
        Candidate(p, s, f"trending: {int(10 * s)} upvotes" if s else "new today") for p, s in zip(papers, scores)
    ]


def subscriber(interests=(), categories=(), max_papers=10, always_send_top=False):
    return Subscriber(email="reader@example.org", interests=", ".join(interests), categories=list(categories),
                      max_papers=max_papers, always_send_top=always_send_top)


def random_request(rng, papers, outside):
    reader = subscriber(rng.sample(PHRASES, rng.randint(0, 4)), rng.sample(CODES, rng.randint(0, 2)),
                        rng.choice((5, 10, 20)), rng.random() < 0.5)
    exclude = rng.sample([p.pk for p in papers] + [10**6, 10**6 + 1], rng.randint(0, 30)) if rng.random() < 0.4 else ()
    if rng.random() < 0.1:
        pool = papers + outside
        return RankRequest(reader, exclude, liked=rng.sample(pool, rng.randint(0, 6)),
                           disliked=rng.sample(pool, rng.randint(0, 2)), ignored=rng.sample(papers, rng.randint(0, 3)))
    return RankRequest(reader, exclude)


def special_requests(papers):
    every_pk = [p.pk for p in papers]
    return [
        RankRequest(subscriber()),  # no profile: the trending list
        RankRequest(subscriber(max_papers=5), exclude_ids=every_pk[::2]),
        RankRequest(subscriber([], ["math.OC"])),  # only a category without a topic phrase: no columns
        RankRequest(subscriber([NOTHING_MATCHES])),  # the threshold leaves nothing
        RankRequest(subscriber([NOTHING_MATCHES], always_send_top=True), exclude_ids=every_pk[:3]),
        RankRequest(subscriber([NOTHING_MATCHES, "the of and"], always_send_top=True, max_papers=20)),
        RankRequest(subscriber(["diffusion models"], always_send_top=True), exclude_ids=every_pk),  # nothing open
        RankRequest(subscriber(["agents", "agents"], ["cs.AI", "cs.AI"])),  # repeated vectors
        RankRequest(subscriber(["diffusion models"]), ignored=papers[:2]),  # ignored alone changes nothing
        RankRequest(subscriber(["diffusion models"], max_papers=0)),
        RankRequest(subscriber([NOTHING_MATCHES], always_send_top=True, max_papers=0)),
    ]


def as_values(ranked):
    """Everything a RankedPaper says, floats by their bits."""
    return [(r.paper.pk, r.score.hex(), r.relevance.hex(), r.reason, r.trending.hex()) for r in ranked]


def reference(ranker, requests):
    return [
        as_values(ranker.rank_for(r.subscriber, exclude_ids=r.exclude_ids, liked=r.liked, disliked=r.disliked,
                                  ignored=r.ignored))
        for r in requests
    ]


@pytest.mark.parametrize("embedder", [
    "digest.embedding.TfidfEmbedder",
    "tests.digest.test_rank_many.DenseEmbedder",
    "tests.digest.test_rank_many.Float64Embedder",
])
@pytest.mark.parametrize("weight", [0.7, 1.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_rank_many_is_rank_for_for_every_reader(embedder, weight, seed, settings, monkeypatch):
    settings.DIGEST_EMBEDDER = embedder
    settings.DIGEST_RELEVANCE_WEIGHT = weight
    monkeypatch.setattr(ranking, "RANK_BLOCK", 64)  # several blocks per group
    rng = random.Random(seed)
    papers = corpus_papers(80, rng)
    outside = corpus_papers(90, random.Random(seed))[80:86]
    for n, paper in enumerate(outside):
        paper.pk, paper.arxiv_id = 1000 + n, f"2612.{n:05d}"
    ranker = EditionRanker(edition(papers, rng))
    requests = special_requests(papers) + [random_request(rng, papers, outside) for _ in range(400)]

    expected = reference(ranker, requests)
    assert [as_values(ranked) for ranked in ranker.rank_many(requests)] == expected


@pytest.mark.parametrize("embedder", ["digest.embedding.TfidfEmbedder", "tests.digest.test_rank_many.DenseEmbedder"])
def test_rank_many_first_then_rank_for_agree_too(embedder, settings):
    """On a fresh ranker rank_many computes the similarity columns; rank_for then reads the same ones.

    (A dense product's last bits depend on how many texts it multiplies at once,
    so both must read one ranker's cached columns to agree bit for bit.)
    """
    settings.DIGEST_EMBEDDER = embedder
    rng = random.Random(5)
    papers = corpus_papers(80, rng)
    ranker = EditionRanker(edition(papers, rng))
    requests = special_requests(papers) + [random_request(rng, papers, []) for _ in range(200)]
    results = [as_values(ranked) for ranked in ranker.rank_many(requests)]
    assert results == reference(ranker, requests)


def test_with_no_threshold_readers_matching_nothing_are_scored_by_trending_alone(monkeypatch):
    """Their best relevance is 0 and every paper passes: rank_for does not scale by the best relevance then."""
    monkeypatch.setattr(ranking, "RELEVANCE_THRESHOLD", 0.0)
    rng = random.Random(4)
    papers = corpus_papers(40, rng)
    ranker = EditionRanker(edition(papers, rng))
    requests = special_requests(papers) + [random_request(rng, papers, []) for _ in range(100)]
    assert [as_values(ranked) for ranked in ranker.rank_many(requests)] == reference(ranker, requests)


def test_the_random_readers_reach_every_route():
    """Guards the comparisons above: their readers get every kind of why-line, nothing, and fall back."""
    rng = random.Random(1)
    papers = corpus_papers(80, rng)
    ranker = EditionRanker(edition(papers, rng))
    requests = special_requests(papers) + [random_request(rng, papers, []) for _ in range(400)]
    results = ranker.rank_many(requests)
    reasons = [r.reason for ranked in results for r in ranked]
    assert any(not ranked for ranked in results)
    assert any(reason.startswith("matches your interests") for reason in reasons)
    assert any(reason.startswith("related to your interest in") for reason in reasons)
    assert any(reason.startswith("in cs.") for reason in reasons)
    assert any(reason.startswith("related to cs.") for reason in reasons)
    assert any(" · trending:" in reason for reason in reasons)
    assert any(r.liked or r.disliked for r in requests)
    assert len({ranked[0].score for ranked in results if ranked}) > 20


@pytest.mark.parametrize("seed", range(5))
def test_the_block_selection_is_best_for_every_row_even_with_ties_at_the_cut(seed):
    rng = np.random.default_rng(seed)
    papers = corpus_papers(60, random.Random(seed))
    ranker = EditionRanker(edition(papers, random.Random(seed)))
    scores = rng.choice([0.1, 0.2, 0.3, 0.5, 0.8], size=(300, len(papers)))  # ties everywhere
    eligible = rng.random((300, len(papers))) < rng.choice([0.05, 0.3, 1.0], size=(300, 1))
    limits = rng.choice([0, 1, 5, 10, 20], size=300).tolist()

    picks, counts = ranker.best_rows(scores, eligible, limits)

    assert [row.tolist() for row in picks] == [ranker.best(s, e, n) for s, e, n in zip(scores, eligible, limits)]
    assert counts == eligible.sum(axis=1).tolist()


def test_readers_without_a_profile_get_the_trending_list():
    rng = random.Random(3)
    papers = corpus_papers(30, rng)
    ranker = EditionRanker(edition(papers, rng))
    requests = [RankRequest(subscriber(max_papers=m), exclude_ids=[p.pk for p in papers[:k]])
                for m in (5, 10, 20) for k in (0, 3, 30)]
    ranked = ranker.rank_many(requests)
    assert [as_values(r) for r in ranked] == reference(ranker, requests)
    assert ranked[0] == ranker.top_trending(ranker.all_open, 5)


def test_an_edition_without_papers_ranks_nothing():
    requests = [RankRequest(subscriber(["diffusion models"], always_send_top=True)), RankRequest(subscriber())]
    assert EditionRanker([]).rank_many(requests) == [[], []]
    assert EditionRanker([]).rank_many([]) == []


def test_categories_with_one_topic_phrase_keep_their_own_why_lines(monkeypatch):
    """Two categories about the same topic have equal similarities: each reader's first one is named, as rank_for does."""
    from digest.categories import CATEGORY_TOPICS

    monkeypatch.setitem(CATEGORY_TOPICS, "cs.XV", ("Vision again", CATEGORY_TOPICS["cs.CV"][1]))
    monkeypatch.setattr(ranking, "RELEVANCE_THRESHOLD", 0.01)  # papers outside the categories pass too
    rng = random.Random(6)
    papers = corpus_papers(80, rng)
    for n, paper in enumerate(papers):
        paper.categories = ["cs.XV"] if n % 10 == 0 else []
    ranker = EditionRanker(edition(papers, rng))
    requests = [
        RankRequest(subscriber([], ["cs.XV", "cs.CV"], max_papers=20)),
        RankRequest(subscriber([], ["cs.CV", "cs.XV"], max_papers=20)),
        RankRequest(subscriber(["diffusion models"], ["cs.XV"], max_papers=20)),
    ] + [random_request(rng, papers, []) for _ in range(100)]

    results = ranker.rank_many(requests)

    assert [as_values(ranked) for ranked in results] == reference(ranker, requests)
    first, second = ({r.reason.split(" · ")[0] for r in ranked} for ranked in results[:2])
    assert "related to cs.XV (Vision again)" in first and "related to cs.CV (Computer vision)" in second
    assert "in cs.XV" in first & second


def own_words_requests(papers, rng, count):
    """Readers who each write two interests of their own, from the papers' titles: few phrases repeat."""
    title_words = [[w for w in p.title.lower().split() if w.isalpha()] for p in papers]
    title_words = [words for words in title_words if len(words) >= 2]

    def phrase():
        words = rng.choice(title_words)
        start = rng.randrange(len(words) - 1)
        return " ".join(words[start:start + 2])

    return [RankRequest(subscriber([phrase(), phrase()], rng.sample(CODES, rng.randint(0, 2)), always_send_top=True))
            for _ in range(count)]


def cache_sizes(ranker):
    return (len(ranker._text_similarity), len(ranker._phrase_hits), len(ranker._phrase_terms),
            len(ranker._in_categories), len(ranker._bonus), len(ranker._paper_similarity))


def test_a_ranker_forgets_readers_phrases_past_a_bound_and_ranks_them_alike(monkeypatch):
    """Interests in readers' own words grow with the readers: a ranker kept for the edition
    empties its per-phrase caches once one holds READER_KEYS_KEPT entries, between blocks
    and readers, and ranks every reader as a ranker that kept everything."""
    rng = random.Random(8)
    papers = corpus_papers(60, rng)
    candidates = edition(papers, rng)
    requests = own_words_requests(papers, rng, 600)
    kept_all = EditionRanker(candidates)
    expected = [as_values(ranked) for ranked in kept_all.rank_many(requests)]
    assert len(kept_all._text_similarity) > 300  # far more phrases than the bound below

    monkeypatch.setattr(ranking, "READER_KEYS_KEPT", 40)
    monkeypatch.setattr(ranking, "RANK_BLOCK", 25)  # at most 50 new phrases per block
    bounded = EditionRanker(candidates)
    sizes = []
    rank_block = bounded.rank_block
    monkeypatch.setattr(bounded, "rank_block", lambda *args: (rank_block(*args), sizes.append(cache_sizes(bounded)))[0])

    assert [as_values(ranked) for ranked in bounded.rank_many(requests)] == expected
    assert len(sizes) > 20 and max(max(s) for s in sizes) <= 40 + 50

    one_by_one = [as_values(bounded.rank_for(r.subscriber)) for r in requests[:200]]
    assert one_by_one == expected[:200]
    assert max(cache_sizes(bounded)) <= 40 + 2


def reference_model_probability(ranker, reader, liked, disliked, ignored):
    """The reader's model built the plain way: liked papers and interest phrases against disliked,
    ignored and unlabelled papers, on the terms of the positives (sparse vectors), class-balanced."""
    def rows(papers):
        return [ranker.paper_vectors[ranker.index[p.pk]:ranker.index[p.pk] + 1] if p.pk in ranker.index
                else ranker.embedder.transform([paper_text(p)]) for p in papers]

    labelled = {p.pk for p in (*liked, *disliked, *ignored)}
    unlabelled = [p for p in ranker.papers if p.pk not in labelled]
    positives = rows(liked) + [ranker.embedder.transform(list(reader.interest_terms))]
    negatives = rows(disliked) + rows(ignored) + rows(unlabelled)
    is_sparse = sparse.issparse(ranker.paper_vectors)
    features = (sparse.vstack if is_sparse else np.vstack)(positives + negatives)
    candidates = ranker.paper_vectors
    n_positive = len(liked) + len(reader.interest_terms)
    if is_sparse:
        features = features.tocsr()
        terms_liked = np.unique(features[:n_positive].nonzero()[1])
        features, candidates = features[:, terms_liked], candidates[:, terms_liked]
    labels = np.r_[np.ones(n_positive), np.zeros(len(negatives))]
    weights = np.r_[np.ones(n_positive), np.ones(len(disliked)), np.full(len(ignored), ranking.IGNORED_WEIGHT),
                    np.full(len(unlabelled), ranking.UNLABELLED_WEIGHT)]
    weights[labels == 0] *= weights[labels == 1].sum() / weights[labels == 0].sum()
    features, candidates = features.astype(np.float64), candidates.astype(np.float64)
    model = LogisticRegression(C=ranking.MODEL_C, solver="liblinear").fit(features, labels, sample_weight=weights)
    return model.predict_proba(candidates)[:, 1]


@pytest.mark.parametrize("embedder", ["digest.embedding.TfidfEmbedder", "tests.digest.test_rank_many.DenseEmbedder"])
def test_a_readers_model_is_fitted_on_their_votes_interests_and_the_unlabelled_papers(embedder, settings):
    """Liked papers inside and outside the edition, dislikes and ignored papers among them or not."""
    settings.DIGEST_EMBEDDER = embedder
    rng = random.Random(6)
    papers = corpus_papers(80, rng)
    outside = corpus_papers(95, random.Random(6))[80:95]
    for n, paper in enumerate(outside):
        paper.pk, paper.arxiv_id = 2000 + n, f"2612.{n:05d}"
    ranker = EditionRanker(edition(papers, rng))
    for _ in range(12):
        liked = rng.sample(papers + outside, rng.randint(5, 9))
        rest = [p for p in papers + outside if p not in liked]
        disliked = rng.sample(rest, rng.randint(0, 3))
        ignored = rng.sample([p for p in rest if p not in disliked], rng.randint(0, 4))
        reader = subscriber(rng.sample(PHRASES[:-2], rng.randint(1, 3)))
        expected = reference_model_probability(ranker, reader, liked, disliked, ignored)
        assert np.array_equal(ranker.model_probability(reader, liked, disliked, ignored), expected)


def test_a_chunks_voters_are_embedded_together_and_ranked_as_one_by_one(monkeypatch):
    """Voters' own phrases, voted papers and model rows are embedded a few dozen readers at a
    time, not once per reader; each voter still gets exactly what rank_for gives."""
    rng = random.Random(9)
    papers = corpus_papers(60, rng)
    outside = corpus_papers(80, random.Random(9))[60:80]
    for n, paper in enumerate(outside):
        paper.pk, paper.arxiv_id = 3000 + n, f"2613.{n:05d}"
    requests = [
        RankRequest(subscriber([f"{rng.choice(PHRASES[:-2])} for reader {n}"], rng.sample(CODES, 1)),
                    liked=rng.sample(papers + outside, rng.randint(1, 7)), disliked=rng.sample(outside, 1))
        for n in range(40)
    ]
    expected = reference(EditionRanker(edition(papers, random.Random(9))), requests)

    ranker = EditionRanker(edition(papers, random.Random(9)))
    calls = []
    transform = ranker.embedder.transform
    monkeypatch.setattr(ranker.embedder, "transform", lambda texts: (calls.append(len(texts)), transform(texts))[1])

    assert [as_values(ranked) for ranked in ranker.rank_many(requests)] == expected
    assert any(len(r.liked) >= ranking.MODEL_MIN_LIKES for r in requests)
    assert len(calls) <= 3 * -(-len(requests) // ranking.VOTERS_EMBEDDED_TOGETHER)
    assert sum(calls) >= len(requests)  # every reader's own phrase was embedded
