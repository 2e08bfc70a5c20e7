"""One row per paper, whichever sources report it and in whatever order."""

import json
from datetime import date

import pytest
import time_machine

from papers.ingest import store_batch
from papers.models import Authorship, Paper, PaperSignal
from papers.services import fetch_from_source
from papers.sources.arxiv import ArxivApiSource, ArxivRssSource
from papers.sources.base import PaperRecord
from papers.sources.huggingface import HuggingFaceApiSource

pytestmark = pytest.mark.django_db


@pytest.fixture
def replay(fixture_path):
    def run(source, *parts):
        return fetch_from_source(source, from_file=fixture_path(*parts))

    return run


def test_hf_then_arxiv_merge_into_one_row_each_contributing_its_fields(replay):
    replay("hf", "hf", "daily_papers.json")
    report = replay("arxiv", "arxiv", "api_page.xml")
    assert report.updated >= 1
    paper = Paper.objects.get(arxiv_id="2501.08001")
    # from Hugging Face
    assert paper.upvotes == 87 and paper.num_comments == 4 and paper.github_stars == 412
    assert paper.code_url == "https://github.com/example/tiny-moe"
    assert paper.ai_summary and paper.ai_keywords and paper.organization == "ETH Zürich"
    assert paper.thumbnail_url and paper.hf_url
    # from arXiv
    assert paper.version == 2 and paper.categories == ["cs.LG", "cs.CL"]
    assert paper.pdf_url == "https://arxiv.org/pdf/2501.08001v2"
    assert paper.comment.startswith("v2:") and paper.doi == "10.1000/moe.2025.001"
    assert paper.source == "hf"  # the first to report it
    assert Paper.objects.filter(arxiv_id__startswith="2501.08001").count() == 1


def test_arxiv_then_hf_gives_the_same_row(replay):
    replay("arxiv", "arxiv", "api_page.xml")
    replay("hf", "hf", "daily_papers.json")
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert paper.upvotes == 87 and paper.version == 2 and paper.pdf_url.endswith("v2")
    assert paper.source == "arxiv"


def test_a_source_never_blanks_what_another_filled(replay):
    replay("hf", "hf", "daily_papers.json")
    replay("arxiv", "arxiv", "api_page.xml")
    replay("hf", "hf", "daily_papers_next_day.json")  # no ai_summary, no githubRepo
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert paper.ai_summary.startswith("A fixed routing rule")
    assert paper.code_url == "https://github.com/example/tiny-moe"
    assert paper.upvotes == 140 and paper.github_stars == 530 and paper.num_comments == 9


def test_an_unversioned_source_does_not_override_arxiv_text(replay):
    replay("arxiv", "arxiv", "api_page.xml")
    replay("hf", "hf", "daily_papers_next_day.json")
    assert Paper.objects.get(arxiv_id="2501.08001").title == (
        "Sparse Mixture-of-Experts at Scale: Routing Without Tears"
    )


def test_a_version_suffix_on_a_hf_id_does_not_make_hf_text_replace_arxiv_text(replay, tmp_path):
    hf_v2 = tmp_path / "daily_papers.json"
    hf_v2.write_text(
        json.dumps(
            [
                {
                    "paper": {
                        "id": "2501.08001v2",
                        "title": "Sparse MoE at Scale (as edited on Hugging Face)",
                        "authors": [{"name": "Zoë Müller"}, {"name": "Jiří Novák", "hidden": True}],
                        "upvotes": 90,
                    }
                }
            ]
        )
    )
    replay("arxiv", "arxiv", "api_page.xml")
    fetch_from_source("hf", from_file=hf_v2)
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert paper.title == "Sparse Mixture-of-Experts at Scale: Routing Without Tears"
    assert paper.author_names == ["Zoë Müller", "Jiří Novák", "李明"]
    assert (paper.version, paper.upvotes) == (2, 90)
    assert replay("arxiv", "arxiv", "api_page.xml").updated == 0  # nothing to put back


def test_newer_version_updates_title_abstract_version_and_authors_in_place(replay):
    replay("arxiv", "arxiv", "api_page.xml")
    report = replay("arxiv-rss", "arxiv", "rss_weekday.xml")
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert paper.version == 3
    assert paper.title.endswith("(Revised)")
    assert paper.abstract == "The third version of the mixture-of-experts paper."
    assert report.updated == 1 and report.created == 2
    assert Paper.objects.filter(title__startswith="Sparse Mixture").count() == 1


def test_the_pdf_link_follows_the_version_a_newer_announcement_brings(replay):
    """The API stored v2's link; RSS announces v3. Left on v2, the digest would show v3's title
    and abstract beside a PDF of v2, for good: the daily API fetch reads new submissions only."""
    replay("arxiv", "arxiv", "api_page.xml")
    replay("arxiv-rss", "arxiv", "rss_weekday.xml")
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert (paper.version, paper.pdf_url) == (3, "https://arxiv.org/pdf/2501.08001v3")
    assert Paper.objects.get(arxiv_id="2501.09002").pdf_url == "https://arxiv.org/pdf/2501.09002v1"  # a new one


@pytest.mark.parametrize("source", [ArxivRssSource(), ArxivApiSource()], ids=["rss", "api"])
def test_an_older_version_leaves_the_pdf_link_of_the_newer_one(replay, source):
    replay("arxiv", "arxiv", "api_page.xml")
    old = PaperRecord(key="2501.08001", version=1, title="Old title", pdf_url="https://arxiv.org/pdf/2501.08001v1")
    store_batch([old], source)
    assert Paper.objects.get(arxiv_id="2501.08001").pdf_url == "https://arxiv.org/pdf/2501.08001v2"


def test_older_version_never_downgrades(replay):
    source = ArxivApiSource()
    replay("arxiv", "arxiv", "api_page.xml")
    old = PaperRecord(key="2501.08001", version=1, title="Old title", abstract="Old abstract")
    result = store_batch([old], source)
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert (paper.version, paper.title) == (
        2,
        "Sparse Mixture-of-Experts at Scale: Routing Without Tears",
    )
    assert result.unchanged == 1


def test_duplicates_in_one_response_keep_the_newest_version(replay):
    report = replay("arxiv", "arxiv", "api_page.xml")
    assert ("2501.08001", "duplicate in this response") in report.skipped
    assert Paper.objects.get(arxiv_id="2501.08001").version == 2


def test_duplicates_in_one_hf_response_make_one_row(replay):
    report = replay("hf", "hf", "daily_papers.json")
    assert report.created == 5  # 2501.09103 too, its malformed upvotes dropped
    assert ("2501.08001", "duplicate in this response") in report.skipped
    assert Paper.objects.get(arxiv_id="2501.08001").upvotes == 87  # the first listing


def test_rss_replace_for_an_unknown_paper_is_skipped_not_created(replay):
    report = replay("arxiv-rss", "arxiv", "rss_weekday.xml")
    assert ("2401.00042", "update for a paper not in the database") in report.skipped
    assert not Paper.objects.filter(arxiv_id="2401.00042").exists()


def test_rss_cross_listing_is_added(replay):
    replay("arxiv-rss", "arxiv", "rss_weekday.xml")
    assert Paper.objects.get(arxiv_id="2501.09002").categories == ["math.OC", "cs.LG"]


def test_weekend_rss_run_is_ok_and_changes_nothing(replay):
    report = replay("arxiv-rss", "arxiv", "rss_weekend.xml")
    assert (report.created, report.updated, report.unchanged, report.skipped) == (0, 0, 0, [])
    assert Paper.objects.count() == 0


def test_authors_are_ordered_shared_rows(replay):
    replay("arxiv", "arxiv", "api_page.xml")
    paper = Paper.objects.get(arxiv_id="2501.08001")
    ordered = Authorship.objects.filter(paper=paper).order_by("position")
    assert [a.author.name for a in ordered] == ["Zoë Müller", "Jiří Novák", "李明"]
    replay("arxiv-rss", "arxiv", "rss_weekday.xml")  # same authors in v3
    assert paper.authors.count() == 3
    assert Paper.objects.get(arxiv_id="2501.08001").author_names == [
        "Zoë Müller",
        "Jiří Novák",
        "李明",
    ]


def test_withdrawn_papers_are_kept_and_flagged(replay):
    replay("hf", "hf", "daily_papers.json")
    replay("arxiv", "arxiv", "api_page.xml")
    assert Paper.objects.get(arxiv_id="2501.09102").withdrawn_at is not None  # HF withdrawnAt
    assert Paper.objects.get(arxiv_id="2501.08003").withdrawn_at is not None  # arXiv comment


def test_withdrawal_is_never_cleared_by_a_later_fetch(replay):
    replay("hf", "hf", "daily_papers.json")
    unflagged = PaperRecord(key="2501.09102", title="A Result That Did Not Hold", upvotes=13)
    store_batch([unflagged], HuggingFaceApiSource())
    assert Paper.objects.get(arxiv_id="2501.09102").withdrawn_at is not None


def test_html_in_titles_is_stored_verbatim(replay):
    replay("hf", "hf", "daily_papers.json")
    assert Paper.objects.get(arxiv_id="2501.09101").title.startswith(
        "Why <script>alert('x')</script>"
    )


def test_one_signal_per_paper_per_day_with_the_latest_values(replay):
    with time_machine.travel("2025-01-16 07:00Z", tick=False):
        replay("hf", "hf", "daily_papers.json")
        replay("hf", "hf", "daily_papers.json")  # a second fetch the same day
    with time_machine.travel("2025-01-17 07:00Z", tick=False):
        replay("hf", "hf", "daily_papers_next_day.json")
    signals = PaperSignal.objects.filter(paper__arxiv_id="2501.08001").order_by("date")
    assert [(s.date, s.upvotes, s.num_comments, s.github_stars) for s in signals] == [
        (date(2025, 1, 16), 87, 4, 412),
        (date(2025, 1, 17), 140, 9, 530),
    ]


def test_arxiv_sources_record_no_signals(replay):
    replay("arxiv", "arxiv", "api_page.xml")
    assert PaperSignal.objects.count() == 0


def test_refetching_the_same_response_leaves_rows_unchanged(replay):
    first = replay("arxiv", "arxiv", "api_page.xml")
    again = replay("arxiv", "arxiv", "api_page.xml")
    assert first.created == 3
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


def test_a_batch_costs_a_bounded_number_of_queries(django_assert_max_num_queries):
    records = [
        PaperRecord(
            key=f"2501.{n:05d}",
            version=1,
            title=f"Paper {n}",
            author_names=[f"Author {n}", "Shared"],
        )
        for n in range(300)
    ]
    with django_assert_max_num_queries(12):
        store_batch(records, ArxivApiSource())
    for record in records:
        record.version, record.title = 2, record.title + " v2"
    with django_assert_max_num_queries(12):
        result = store_batch(records, ArxivApiSource())
    assert result.updated == 300


def test_a_failure_while_storing_rolls_back_the_whole_batch(replay, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(
        "papers.ingest.record_signals", fail
    )  # after papers and authors are written
    with pytest.raises(RuntimeError):
        replay("hf", "hf", "daily_papers.json")
    assert Paper.objects.count() == 0 and Authorship.objects.count() == 0
    from papers.models import FetchRun

    run = FetchRun.objects.get()
    assert run.status == "failed" and run.error == "RuntimeError: disk full"


# --- Malformed optional fields: dropped when parsing, so nothing stored is lost ---------


@pytest.fixture
def hf_variant(fixture_path, tmp_path):
    """A copy of a recorded Hugging Face response with some paper fields of one item replaced."""

    def write(name, key, **paper_fields):
        items = json.loads(fixture_path("hf", name).read_text())
        for item in items:
            if item["paper"].get("id") == key:
                item["paper"].update(paper_fields)
        path = tmp_path / f"variant-{name}"
        path.write_text(json.dumps(items))
        return path

    return write


def signals_of(arxiv_id):
    signals = PaperSignal.objects.filter(paper__arxiv_id=arxiv_id).order_by("date")
    return [(s.date, s.upvotes, s.num_comments, s.github_stars) for s in signals]


def test_malformed_upvotes_keep_the_stored_upvotes_and_record_no_signal_that_day(replay, hf_variant):
    with time_machine.travel("2025-01-16 07:00Z", tick=False):
        replay("hf", "hf", "daily_papers.json")
    with time_machine.travel("2025-01-17 07:00Z", tick=False):
        report = fetch_from_source(
            "hf", from_file=hf_variant("daily_papers_next_day.json", "2501.08001", upvotes="140")
        )
    paper = Paper.objects.get(arxiv_id="2501.08001")
    assert paper.upvotes == 87  # Hugging Face's own earlier value: neither blanked nor zeroed
    assert (paper.num_comments, paper.github_stars) == (9, 530)  # the rest of the item landed
    assert report.dropped == [("2501.08001", "upvotes", "upvotes is not a non-negative integer: '140'")]
    assert (report.updated, report.skipped) == (1, [])
    assert signals_of("2501.08001") == [(date(2025, 1, 16), 87, 4, 412)]  # no row for the 17th


def test_malformed_stars_later_the_same_day_leave_that_days_signal_as_it_was(replay, hf_variant):
    with time_machine.travel("2025-01-16 07:00Z", tick=False):
        replay("hf", "hf", "daily_papers.json")
        fetch_from_source("hf", from_file=hf_variant("daily_papers.json", "2501.08001", githubStars=-1))
    assert Paper.objects.get(arxiv_id="2501.08001").github_stars == 412
    assert signals_of("2501.08001") == [(date(2025, 1, 16), 87, 4, 412)]
    assert signals_of("2501.09104") == [(date(2025, 1, 16), 25, 2, 0)]  # the others are recorded


def test_a_new_paper_with_malformed_upvotes_is_stored_without_a_signal_then_filled(replay, hf_variant):
    with time_machine.travel("2025-01-16 07:00Z", tick=False):
        replay("hf", "hf", "daily_papers.json")
    assert Paper.objects.get(arxiv_id="2501.09103").upvotes == 0  # the default: none reported
    assert signals_of("2501.09103") == []  # not a signal of zero upvotes
    with time_machine.travel("2025-01-17 07:00Z", tick=False):
        fetch_from_source("hf", from_file=hf_variant("daily_papers.json", "2501.09103", upvotes=6))
    assert Paper.objects.get(arxiv_id="2501.09103").upvotes == 6
    assert signals_of("2501.09103") == [(date(2025, 1, 17), 6, 0, 0)]


def test_a_malformed_revision_date_keeps_the_stored_one(replay, fixture_bytes, tmp_path):
    replay("arxiv", "arxiv", "api_page.xml")
    stored = Paper.objects.get(arxiv_id="2501.08001").revised_at
    page = fixture_bytes("arxiv", "api_page.xml").replace(
        b"<updated>2025-01-15T18:02:11Z</updated>", b"<updated>Wednesday</updated>"
    )
    (tmp_path / "api_page.xml").write_bytes(page)
    report = fetch_from_source("arxiv", from_file=tmp_path / "api_page.xml")
    assert report.dropped == [("2501.08001", "revised_at", "not a timestamp: 'Wednesday'")]
    assert Paper.objects.get(arxiv_id="2501.08001").revised_at == stored is not None


def test_a_publication_time_beyond_year_9999_in_utc_is_dropped_and_every_paper_reads_back(replay, hf_variant):
    """PostgreSQL stores 10000-01-01 UTC; Python cannot read it: stored, it broke every later fetch."""
    report = fetch_from_source(
        "hf", from_file=hf_variant("daily_papers.json", "2501.08001", publishedAt="9999-12-31T23:59:59-01:00")
    )
    assert ("2501.08001", "published_at", "timestamp out of range: '9999-12-31T23:59:59-01:00'") in report.dropped
    replay("hf", "hf", "daily_papers.json")  # reads the stored rows back
    assert Paper.objects.get(arxiv_id="2501.08001").published_at.isoformat() == "2025-01-14T09:30:00+00:00"


@pytest.mark.parametrize(
    "published, stored",
    [("2025-01-15T05:30:00+20:00", "2025-01-14T09:30:00+00:00"),  # PostgreSQL takes offsets to ±15:59
     ("2025-01-14T14:30:00+05:00:00.5", "2025-01-14T09:29:59.500000+00:00")],  # and whole seconds
)
def test_a_publication_time_with_an_offset_postgresql_refuses_is_stored_in_utc(hf_variant, published, stored):
    """Valid in Python; sent as it was, PostgreSQL refused the insert and with it the whole fetch."""
    report = fetch_from_source("hf", from_file=hf_variant("daily_papers.json", "2501.08001", publishedAt=published))

    assert [key for key, _, _ in report.dropped] == ["2501.09103"]  # the recording's own malformed upvotes
    assert Paper.objects.get(arxiv_id="2501.08001").published_at.isoformat() == stored
