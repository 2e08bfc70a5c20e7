import json
from dataclasses import replace

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
    assert report.created == 4
    assert report.skipped == [("item 3", "no title")]
    bad_counts = corpus_key("Bad Counts")  # negative upvotes: dropped, the paper kept
    assert report.dropped == [(bad_counts, "upvotes", "upvotes is not a non-negative integer: -3")]
    assert Paper.objects.get(arxiv_id=bad_counts).abstract == "Negative upvotes are malformed."
    lion = Paper.objects.get(arxiv_id=corpus_key("Symbolic Discovery of Optimization Algorithms"))
    assert lion.upvotes == 7 and lion.authors_count == 12 and lion.organization == "Google"
    assert lion.published_at.date().isoformat() == "2023-02-13"
    assert "Lion (EvoLved Sign Momentum)" in lion.abstract  # written Evo\textbf{Lved Sign Momentum}
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


def corpus_line(**fields):
    paper = {
        "title": "A Complete Corpus Paper",
        "abstract": "Every field present.",
        "authors_count": 4,
        "organization": "Example Lab",
        "published": "2024-05-01",
        "upvotes": 9,
    }
    return json.dumps({**paper, **fields})


@pytest.mark.parametrize(
    "name, value, field, reason",
    [
        ("authors_count", "4", "authors_count", "authors_count is not a non-negative integer: '4'"),
        ("authors_count", 4.5, "authors_count", "authors_count is not a non-negative integer: 4.5"),
        ("upvotes", True, "upvotes", "upvotes is not a non-negative integer: True"),
        ("organization", ["Example Lab"], "organization", "expected text, got list"),
        ("abstract", {"text": "x"}, "abstract", "expected text, got dict"),
    ],
)
def test_a_malformed_optional_corpus_field_is_dropped_and_the_paper_kept(caplog, name, value, field, reason):
    intact = BundledSource().parse(corpus_line().encode()).records[0]
    batch = BundledSource().parse(corpus_line(**{name: value}).encode())
    assert batch.skipped == []
    (record,) = batch.records
    assert replace(record, dropped={}) == replace(intact, **{field: None})
    assert batch.dropped == [(intact.key, field, reason)]
    assert f"dropped field source=bundled key={intact.key} field={field} reason={reason}" in caplog.messages


def test_a_malformed_publication_date_still_skips_a_corpus_paper():
    """The ranker counts a paper's age from its publication: without it, an old corpus paper
    would rank as if published when first seen, ahead of all the others."""
    batch = BundledSource().parse(corpus_line(published="May 2024").encode())
    assert batch.records == []
    assert batch.skipped == [(corpus_key("A Complete Corpus Paper"), "published is not a YYYY-MM-DD date: 'May 2024'")]


def test_a_reimport_with_a_malformed_count_keeps_the_stored_one(tmp_path):
    path = tmp_path / "papers.jsonl"
    path.write_text(corpus_line())
    fetch_from_source("bundled", from_file=path)
    path.write_text(corpus_line(authors_count=-4, upvotes="9", abstract="Revised."))
    report = fetch_from_source("bundled", from_file=path)
    paper = Paper.objects.get()
    assert (paper.authors_count, paper.upvotes) == (4, 9)  # the corpus owns them, yet kept
    assert paper.abstract == "Revised." and report.updated == 1
    assert [name for _, name, _ in report.dropped] == ["authors_count", "upvotes"]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_line_separator_inside_a_string_does_not_cut_its_corpus_line(tmp_path, separator):
    """JSON allows U+2028, U+2029 and U+0085 raw in a string, as json.dumps writes them with
    ensure_ascii=False (the bundled corpus is written so); a corpus line ends at a newline only.
    Cut there as well, the line would be "invalid JSON" and the whole corpus refused."""
    papers = [{"title": "First Paper"}, {"title": "Second Paper", "abstract": f"One sentence.{separator}Another."}]
    path = tmp_path / "papers.jsonl"
    path.write_text(
        "".join(json.dumps({**json.loads(corpus_line()), **paper}, ensure_ascii=False) + "\r\n" for paper in papers),
        encoding="utf-8",
    )

    report = fetch_from_source("bundled", from_file=path)

    assert report.created == 2
    assert Paper.objects.get(title="Second Paper").abstract == "One sentence. Another."


def test_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="bundled: cannot read"):
        BundledSource().load(from_file=tmp_path / "absent.jsonl")


def test_unknown_source_is_a_source_error_and_a_failed_run():
    with pytest.raises(SourceError, match="^nope: unknown source; choose from hf, arxiv"):
        fetch_from_source("nope")
    assert FetchRun.objects.get().status == FetchRun.Status.FAILED


def test_a_date_given_as_text_is_accepted_or_refused_clearly(fixture_path):
    path = fixture_path("bundled", "corpus_sample.jsonl")
    assert fetch_from_source("bundled", date="2025-01-15", from_file=path).created == 4
    with pytest.raises(SourceError, match="bundled: not a date"):
        fetch_from_source("bundled", date="15/01/2025", from_file=path)


def test_a_corpus_title_with_latex_is_stored_readable_under_the_key_of_the_title_as_written():
    """The key is made from the title as the corpus writes it, so that a paper stored before its
    LaTeX was made readable is the same paper, not a second one, when the corpus is read again."""
    written = r"Reflected Schr\"odinger Bridges"
    batch = BundledSource().parse(corpus_line(title=written).encode())
    (record,) = batch.records
    assert record.title == "Reflected Schrödinger Bridges"
    assert record.key == corpus_key(written) == BundledSource.key_of({"title": written})
