"""Personal ranking: relevance, the final score, why-lines, feedback, the per-reader model."""

import numpy as np
import pytest
from django.utils import timezone

from digest.embedding import TfidfEmbedder
from digest.ranking import MODEL_MIN_LIKES, Candidate, EditionRanker
from papers.models import Paper
from subscriptions.models import Subscriber

TOPICS = {
    "diffusion": ("Denoising diffusion models for image generation",
                  "We train diffusion models that generate high resolution images from text."),
    "rlhf": ("Scaling reinforcement learning from human feedback",
             "RLHF aligns large language models with human preferences using a reward model."),
    "graphs": ("Graph neural networks for molecules",
               "Message passing graph neural networks predict molecular properties of drug candidates."),
    "robots": ("Robot manipulation with world models",
               "A robot learns manipulation skills by planning in a learned world model."),
    "attention": ("Efficient attention for long context language models",
                  "Sparse attention lets language models read long documents quickly."),
    "speech": ("Streaming speech recognition with transducers",
               "A transducer transcribes speech audio in real time on device."),
}
MORE_GRAPH_PAPERS = [
    ("Equivariant graph networks for protein structure", "Graph neural networks over protein residues and molecules."),
    ("Molecular property prediction with graph transformers", "Graph transformers predict properties of molecules."),
    ("Message passing on molecular graphs", "Neural message passing for chemistry and molecular graphs."),
    ("Generating molecules with graph diffusion", "A graph generative model proposes new drug molecules."),
    ("Graph neural networks for materials", "Crystal graphs and neural networks predict material properties."),
]


def make_paper(pk, title, abstract, **fields):
    return Paper(pk=pk, arxiv_id=f"2611.{pk:05d}", title=title, abstract=abstract,
                 first_seen_at=timezone.now(), **fields)


def edition_of(*papers, trending=None):
    """Candidates with trending scores falling in the given order (or as given)."""
    scores = trending or [1.0 / (i + 1) for i in range(len(papers))]
    return [Candidate(p, s, f"trending: {10 * (len(papers) - i)} upvotes") for i, (p, s) in enumerate(zip(papers, scores))]


@pytest.fixture
def topic_papers():
    return {key: make_paper(i + 1, *text) for i, (key, text) in enumerate(TOPICS.items())}


def reader(interests="", categories=(), max_papers=10, always_send_top=False):
    return Subscriber(email="reader@example.org", interests=interests, categories=list(categories),
                      max_papers=max_papers, always_send_top=always_send_top)


def test_reader_without_interests_gets_the_pure_trending_list(topic_papers):
    papers = list(topic_papers.values())
    ranked = EditionRanker(edition_of(*papers)).rank_for(reader(max_papers=3))
    assert [r.paper for r in ranked] == papers[:3]
    assert ranked[0].reason == "trending: 60 upvotes"


def test_a_paper_matching_an_interest_comes_first_and_says_which_terms(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader("graph neural networks"))
    assert ranked[0].paper == topic_papers["graphs"]
    assert ranked[0].reason.startswith("matches your interests: graph neural networks")


def test_each_interest_counts_on_its_own_so_more_interests_dilute_nothing(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    alone = ranker.rank_for(reader("speech recognition"))
    among_many = ranker.rank_for(reader("speech recognition, quantum chemistry, protein folding, poetry"))
    assert alone[0].paper == among_many[0].paper == topic_papers["speech"]
    assert alone[0].relevance == pytest.approx(among_many[0].relevance)


def test_final_score_weighs_relevance_against_trending(topic_papers, settings):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    settings.DIGEST_RELEVANCE_WEIGHT = 1.0
    by_relevance = ranker.rank_for(reader("speech recognition, robot manipulation"))
    settings.DIGEST_RELEVANCE_WEIGHT = 0.0
    by_trending = ranker.rank_for(reader("speech recognition, robot manipulation"))
    assert {by_relevance[0].paper, by_relevance[1].paper} == {topic_papers["speech"], topic_papers["robots"]}
    assert by_trending[0].paper == topic_papers["robots"]  # listed before speech: trends more
    assert by_relevance[0].score == pytest.approx(1.0)


def test_papers_in_a_readers_category_get_a_bonus_and_say_so(topic_papers):
    topic_papers["speech"].categories = ["eess.AS"]
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader(categories=["eess.AS"]))
    assert ranked[0].paper == topic_papers["speech"]
    assert ranked[0].reason.startswith("in eess.AS")


def test_a_liked_paper_brings_similar_ones_and_is_named_in_the_why_line(topic_papers):
    liked = make_paper(100, *MORE_GRAPH_PAPERS[0])
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader(), liked=[liked])
    assert ranked[0].paper == topic_papers["graphs"]
    assert ranked[0].reason.startswith(f"like “{liked.title}”, which you liked")


def test_liked_and_disliked_papers_are_never_offered_back(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader("graph neural networks, diffusion models"), liked=[topic_papers["graphs"]],
                             disliked=[topic_papers["diffusion"]], apply_threshold=False)
    offered = {r.paper for r in ranked}
    assert topic_papers["graphs"] not in offered and topic_papers["diffusion"] not in offered
    assert len(ranked) == len(topic_papers) - 2


def test_a_disliked_paper_pushes_similar_papers_down(topic_papers):
    similar_to_disliked = make_paper(100, "Diffusion models for video generation", "Video diffusion models generate clips.")
    candidates = edition_of(*topic_papers.values(), similar_to_disliked)
    ranker = EditionRanker(candidates)
    interested = reader("diffusion models, speech recognition")
    before = {r.paper.pk: r.relevance for r in ranker.rank_for(interested)}
    after = {r.paper.pk: r.relevance for r in ranker.rank_for(interested, disliked=[topic_papers["diffusion"]])}
    assert after[similar_to_disliked.pk] < before[similar_to_disliked.pk]
    assert after[topic_papers["speech"].pk] == pytest.approx(before[topic_papers["speech"].pk])


def test_already_sent_papers_are_excluded(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader(), exclude_ids={topic_papers["diffusion"].pk})
    assert topic_papers["diffusion"] not in {r.paper for r in ranked}


def test_nothing_relevant_means_nothing_to_send_unless_the_reader_wants_the_top_anyway(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    assert ranker.rank_for(reader("medieval poetry manuscripts")) == []
    fallback = ranker.rank_for(reader("medieval poetry manuscripts", always_send_top=True, max_papers=2))
    assert [r.paper for r in fallback] == [topic_papers["diffusion"], topic_papers["rlhf"]]
    assert all(r.reason.startswith("trending:") for r in fallback)


def test_the_threshold_can_be_lifted_for_previews(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    assert len(ranker.rank_for(reader("medieval poetry manuscripts"), apply_threshold=False)) == len(topic_papers)


def test_a_trending_paper_says_so_after_its_personal_reason(topic_papers):
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader("diffusion models"))
    assert ranked[0].reason == "matches your interests: diffusion models · trending: 60 upvotes"


def test_from_five_likes_a_per_reader_model_decides_relevance(topic_papers):
    liked = [make_paper(100 + i, *text) for i, text in enumerate(MORE_GRAPH_PAPERS)]
    assert len(liked) >= MODEL_MIN_LIKES
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    disliked = [topic_papers["attention"]]

    match = ranker.match(reader(), liked=liked, disliked=disliked)
    ranked = ranker.rank_for(reader(), liked=liked, disliked=disliked)

    graphs = ranker.index[topic_papers["graphs"].pk]
    assert 0.0 <= match.relevance.min() and match.relevance.max() <= 1.0  # probabilities
    assert match.relevance[graphs] == match.relevance.max() and match.passes[graphs]
    assert ranked[0].paper == topic_papers["graphs"]
    assert ranked[0].reason.startswith("like “")
    assert topic_papers["attention"] not in {r.paper for r in ranked}


def test_four_likes_still_use_similarity(topic_papers):
    liked = [make_paper(100 + i, *text) for i, text in enumerate(MORE_GRAPH_PAPERS[: MODEL_MIN_LIKES - 1])]
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    match = ranker.match(reader(), liked=liked)
    assert match.similarity is not None
    assert match.relevance.max() < 1.0 and match.relevance[ranker.index[topic_papers["graphs"].pk]] == match.relevance.max()


class DenseEmbedder:
    """A stand-in for a sentence-embedding model: dense vectors, counted fits."""

    fits = 0

    def __init__(self):
        self.tfidf = TfidfEmbedder()

    def fit_transform(self, texts):
        DenseEmbedder.fits += 1
        return self.tfidf.fit_transform(texts).toarray()

    def transform(self, texts):
        return self.tfidf.transform(texts).toarray()


def test_the_embedding_step_is_chosen_by_setting_and_runs_once_per_edition(topic_papers, settings):
    settings.DIGEST_EMBEDDER = "tests.digest.test_ranking.DenseEmbedder"
    DenseEmbedder.fits = 0
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    liked = [make_paper(100 + i, *text) for i, text in enumerate(MORE_GRAPH_PAPERS)]

    by_interest = ranker.rank_for(reader("speech recognition"))
    by_likes = ranker.rank_for(reader(), liked=liked)
    ranker.rank_for(reader("robot manipulation"), liked=liked[:2], disliked=[topic_papers["rlhf"]])

    assert isinstance(ranker.embedder, DenseEmbedder) and isinstance(ranker.paper_vectors, np.ndarray)
    assert DenseEmbedder.fits == 1
    assert by_interest[0].paper == topic_papers["speech"]
    assert by_likes[0].paper == topic_papers["graphs"]


def test_ties_go_to_the_lower_arxiv_id():
    a, b = make_paper(2, "Same words", "Identical text."), make_paper(1, "Same words", "Identical text.")
    ranked = EditionRanker(edition_of(a, b, trending=[1.0, 1.0])).rank_for(reader())
    assert [r.paper for r in ranked] == [b, a]


def test_a_reader_with_a_model_still_gets_the_papers_matching_their_interests(topic_papers):
    unrelated_likes = [make_paper(200 + i, f"Topic {i} of its own", f"Words about subject{i} only.") for i in range(6)]
    ranker = EditionRanker(edition_of(*topic_papers.values()))
    ranked = ranker.rank_for(reader("speech recognition"), liked=unrelated_likes)
    assert topic_papers["speech"] in {r.paper for r in ranked}


def test_a_reader_whose_likes_share_no_term_with_the_edition_gets_no_model_match_and_no_error(topic_papers):
    """Their model would have no feature at all: it finds nothing relevant, so the reader gets the
    trending list if they asked for it and nothing otherwise."""
    unrelated_likes = [make_paper(300 + i, f"Zymurgy {i}", f"Quasicrystal xylophones {i}.") for i in range(6)]
    ranker = EditionRanker(edition_of(*topic_papers.values()))

    match = ranker.match(reader(), liked=unrelated_likes)

    assert not match.relevance.any() and not match.passes.any()
    assert ranker.rank_for(reader(), liked=unrelated_likes) == []
    top = ranker.rank_for(reader(always_send_top=True, max_papers=2), liked=unrelated_likes)
    assert [r.paper for r in top] == [topic_papers["diffusion"], topic_papers["rlhf"]]
