import pytest

from papers.models import FetchRun, Paper
from papers.services import fetch_from_source
from papers.sources.base import SourceError
from papers.sources.bundled import BundledSource, corpus_key

pytestmark = pytest.mark.django_db


def test_corpus_key_is_slug_plus_sha1_of_normalised_lowercased_title():
    key = corpus_key("Attention Is  All\nYou Need")
    # sha1("attention is all you need") starts with 37f63852cd
    assert key == "corpus:attention-is-all-you-need-37f63852cd"
    assert key == corpus_key("attention is all you need")


def test_corpus_key_cuts_the_slug_to_sixty_characters():
    key = corpus_key("A " * 100 + "very long title")
    slug, _, digest = key.removeprefix("corpus:").rpartition("-")
    assert len(slug) <= 60 and not slug.endswith("-")
    assert len(digest) == 10


def test_whole_bundled_corpus_imports_all_papers_then_reimports_unchanged():
    first = fetch_from_source("bundled")
    assert (first.created, first.updated, first.skipped) == (415, 0, [])
    again = fetch_from_source("bundled")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 415)
    assert Paper.objects.count() == 415
    assert Paper.objects.filter(arxiv_id__startswith="corpus:").count() == 415
    assert list(FetchRun.objects.values_list("status", flat=True)) == ["ok", "ok"]


def test_bundled_sample_keeps_good_lines_and_skips_malformed_ones_with_reasons(fixture_path):
    report = fetch_from_source("bundled", from_file=fixture_path("bundled", "corpus_sample.jsonl"))
    assert report.created == 3
    reasons = dict(report.skipped)
    assert reasons["item 3"] == "no title"
    assert "upvotes" in reasons[corpus_key("Bad Counts")]
    lion = Paper.objects.get(arxiv_id=corpus_key("Symbolic Discovery of Optimization Algorithms"))
    assert lion.upvotes == 7 and lion.authors_count == 12 and lion.organization == "Google"
    assert lion.published_at.date().isoformat() == "2023-02-13"
    assert r"\textbf{Lved" in lion.abstract
    assert lion.source == "bundled"


def test_bundled_abstract_whitespace_is_normalised(fixture_path):
    fetch_from_source("bundled", from_file=fixture_path("bundled", "corpus_sample.jsonl"))
    paper = Paper.objects.get(title="Gradient Descent Happens in a Tiny Subspace")
    assert "a significant amount" in paper.abstract


def test_html_in_bundled_titles_is_stored_as_plain_text(fixture_path):
    fetch_from_source("bundled", from_file=fixture_path("bundled", "corpus_sample.jsonl"))
    paper = Paper.objects.get(upvotes=120)
    assert paper.title == "When <b>Attention</b> Is Not Enough: x < y & z"
    assert paper.abstract == "Tags are data: <script>alert(1)</script>"


def test_truncated_corpus_fails_whole_and_writes_nothing(fixture_path):
    with pytest.raises(SourceError, match=r"^bundled: invalid JSON on line 2"):
        fetch_from_source("bundled", from_file=fixture_path("bundled", "corpus_truncated.jsonl"))
    assert Paper.objects.count() == 0
    run = FetchRun.objects.get()
    assert run.status == FetchRun.Status.FAILED and "line 2" in run.error


def test_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="bundled: cannot read"):
        BundledSource().load(from_file=tmp_path / "absent.jsonl")


def test_unknown_source_is_a_source_error_and_a_failed_run():
    with pytest.raises(SourceError, match="^nope: unknown source; choose from hf, arxiv"):
        fetch_from_source("nope")
    assert FetchRun.objects.get().status == FetchRun.Status.FAILED


def test_a_date_given_as_text_is_accepted_or_refused_clearly(fixture_path):
    path = fixture_path("bundled", "corpus_sample.jsonl")
    assert fetch_from_source("bundled", date="2025-01-15", from_file=path).created == 3
    with pytest.raises(SourceError, match="bundled: not a date"):
        fetch_from_source("bundled", date="15/01/2025", from_file=path)
