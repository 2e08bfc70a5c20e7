"""``manage.py recommend``: what a subscriber with given interests and likes would get."""

import json

import pytest
from django.core.management import CommandError, call_command

from digest.models import Edition
from tests.digest.builders import TOPICS, built_edition, papers_on_topics

pytestmark = pytest.mark.django_db


def recommend(capsys, *args):
    call_command("recommend", *args)
    return capsys.readouterr().out


def recommend_json(capsys, *args):
    return json.loads(recommend(capsys, *args, "--json"))


def test_json_lists_the_best_first_with_id_title_score_and_reason(capsys):
    built_edition(papers=papers_on_topics())
    rows = recommend_json(capsys, "--interests", "graph neural networks", "--limit", "3")
    assert len(rows) == 3
    assert rows[0]["title"] == "Graph neural networks for molecules"
    assert rows[0]["reason"].startswith("matches your interests: graph neural networks")
    assert {"arxiv_id", "title", "score", "reason"} <= set(rows[0])
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_liked_papers_are_never_recommended_back_and_explain_the_others(capsys):
    papers = papers_on_topics(10)
    built_edition(papers=papers)
    liked = papers[2]  # graph neural networks
    rows = recommend_json(capsys, "--like", liked.arxiv_id, "--like", papers[3].title, "--limit", "5")
    assert liked.arxiv_id not in {r["arxiv_id"] for r in rows} and papers[3].arxiv_id not in {r["arxiv_id"] for r in rows}
    assert rows[0]["title"].startswith(("Graph neural networks", "Robot manipulation"))
    assert rows[0]["reason"].startswith("like “")


def test_the_send_threshold_does_not_apply(capsys):
    built_edition(papers=papers_on_topics())
    rows = recommend_json(capsys, "--interests", "medieval poetry manuscripts", "--limit", "4")
    assert len(rows) == 4


def test_the_all_pool_ranks_every_paper_not_only_the_latest_edition(capsys):
    built_edition(papers=papers_on_topics())
    Edition.objects.all().delete()
    papers_on_topics(8)  # more papers than any single edition holds now
    assert len(recommend_json(capsys, "--pool", "all", "--limit", "20")) == 13
    assert len(recommend_json(capsys, "--pool", "all", "--category", "cs.LG", "--limit", "2")) == 2


def test_without_an_edition_the_pool_is_what_todays_edition_would_hold(capsys):
    papers_on_topics()
    rows = recommend_json(capsys, "--limit", "10")
    assert len(rows) == len(TOPICS) and not Edition.objects.exists()


def test_the_text_output_shows_scores_and_why_lines(capsys):
    built_edition(papers=papers_on_topics())
    out = recommend(capsys, "--interests", "diffusion models", "--limit", "2")
    assert out.splitlines()[0].startswith(" 1. ")
    assert "why: matches your interests: diffusion models" in out


def test_an_unknown_or_ambiguous_liked_paper_is_an_error(capsys):
    papers_on_topics(10)
    with pytest.raises(CommandError, match="no paper matches"):
        call_command("recommend", "--like", "A paper nobody wrote")
    with pytest.raises(CommandError, match="several papers"):
        call_command("recommend", "--like", "neural networks for mol")
    with pytest.raises(CommandError, match="no paper matches '\u00b2'"):  # a digit to str.isdigit(), not to int()
        call_command("recommend", "--like", "\u00b2")


def test_an_unknown_category_is_an_error_naming_the_ones_readers_choose_from(settings):
    settings.ARXIV_CATEGORIES = ["cs.LG", "cs.CL"]
    with pytest.raises(CommandError, match=r"unknown category cs\.XX: .*\(cs\.LG, cs\.CL\)"):
        call_command("recommend", "--category", "cs.LG", "--category", "cs.XX")
