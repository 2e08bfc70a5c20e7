"""How an interest's words meet a paper's: hyphens, plurals and the words left out.

One function, ``digest.embedding.terms``, feeds both the relevance score and the
"matches your interests" why-line, so each case checks whether the paper is picked and
what its line says."""

from django.utils import timezone

from digest.ranking import Candidate, EditionRanker, RankRequest
from papers.models import Paper
from subscriptions.models import Subscriber

BACKGROUND = [
    ("Denoising diffusion models for image generation",
     "We train diffusion models that generate high resolution images from text."),
    ("Scaling reinforcement learning from human feedback",
     "RLHF aligns large language models with human preferences using a reward model."),
    ("Graph neural networks for molecules",
     "Message passing graph neural networks predict molecular properties of drug candidates."),
    ("Robot manipulation with world models",
     "A robot learns manipulation skills by planning in a learned world model."),
    ("Efficient attention for long context language models",
     "Sparse attention lets language models read long documents quickly."),
    ("Streaming speech recognition with transducers",
     "A transducer transcribes speech audio in real time on device."),
]


def ranker_with(*extra):
    """An edition of the background papers (ids 1–6) and ``extra`` ones (ids 50, 51, …)."""
    texts = [(i + 1, text) for i, text in enumerate(BACKGROUND)] + [(50 + i, text) for i, text in enumerate(extra)]
    papers = [Paper(pk=pk, arxiv_id=f"2611.{pk:05d}", title=title, abstract=abstract, first_seen_at=timezone.now())
              for pk, (title, abstract) in texts]
    return EditionRanker([Candidate(p, 1.0 / (i + 1), "new today") for i, p in enumerate(papers)])


def reader(interests):
    return Subscriber(email="reader@example.org", interests=interests, categories=[], max_papers=10)


def why_lines(ranked):
    return {r.paper.pk: r.reason.split(" · ")[0] for r in ranked}


def test_an_interest_meets_its_word_inside_a_hyphenated_one():
    ranker = ranker_with(("LLM-based agents for web navigation", "Agents that navigate websites by clicking."))
    alone = why_lines(ranker.rank_for(reader("LLM")))
    in_a_chunk = why_lines(ranker.rank_many([RankRequest(reader("LLM"))])[0])
    assert alone[50] == in_a_chunk[50] == "matches your interests: LLM"


def test_a_hyphenated_phrase_and_the_same_words_apart_are_one_phrase():
    ranker = ranker_with(("Vision-Language Models for Visual Question Answering",
                          "We evaluate vision-language models on visual question answering benchmarks."))
    assert why_lines(ranker.rank_for(reader("vision language models")))[50] == (
        "matches your interests: vision language models"
    )


def test_a_topic_word_is_not_left_out_of_a_phrase():
    """"fire detection" read as "detection" matched every detection paper, and said so."""
    ranker = ranker_with(("Open-vocabulary object detection with transformers", "Detect objects named by text."),
                         ("Wildfire and fire detection from satellite images", "Fire detection at scale."))
    lines = why_lines(ranker.rank_for(reader("fire detection, part segmentation")))
    assert lines.get(50, "").startswith("matches your interests") is False
    assert lines[51] == "matches your interests: fire detection"


def test_plurals_in_ies_and_es_meet_their_singular():
    ranker = ranker_with(("Ontology alignment with large language models", "We align an ontology with LLMs."),
                         ("Sparse Gaussian Process regression at scale", "Inducing points make inference fast."),
                         ("A dialogue system for customer support", "Task oriented dialogue with retrieval."))
    lines = why_lines(ranker.rank_for(reader("ontologies, Gaussian processes, dialogue systems")))
    assert lines[50] == "matches your interests: ontologies"
    assert lines[51] == "matches your interests: Gaussian processes"
    assert lines[52] == "matches your interests: dialogue systems"


def test_an_edition_with_no_word_to_go_by_still_ranks_by_trending():
    """Titles in other scripts, or of stop words only: TF-IDF has no vocabulary, which raised
    for every reader of the edition."""
    papers = [Paper(pk=pk, arxiv_id=f"2611.{pk:05d}", title=title, abstract="", first_seen_at=timezone.now())
              for pk, title in ((1, "扩散模型"), (2, "The"))]
    ranker = EditionRanker([Candidate(p, 1.0 / p.pk, "new today") for p in papers])
    assert [r.paper.pk for r in ranker.rank_for(reader(""))] == [1, 2]
    assert ranker.rank_for(reader("diffusion models")) == []
