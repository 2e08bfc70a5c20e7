"""Operators look at papers, authors, daily signals and fetch runs; none of them is edited here."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from digest.models import BlockedPaper, EditionPaper
from digest.services import block_paper
from papers import admin as papers_admin
from papers.ingest import link_authors
from papers.models import Author, FetchRun, Paper, PaperSignal
from tests.factories import EditionFactory, FetchRunFactory, PaperFactory, PaperSignalFactory

pytestmark = pytest.mark.django_db

PAPERS = reverse("admin:papers_paper_changelist")
AUTHORS = reverse("admin:papers_author_changelist")
SIGNALS = reverse("admin:papers_papersignal_changelist")
RUNS = reverse("admin:papers_fetchrun_changelist")


def listed(admin_client, url, **params):
    response = admin_client.get(url, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def paper_with_authors(*names, **fields):
    paper = PaperFactory(author_names=list(names), **fields)
    link_authors([paper])
    return paper


def signals_of(paper, days):
    """A signal for each of the last ``days`` days, recorded as the days went: oldest first."""
    today = timezone.localdate()
    return [
        PaperSignalFactory(paper=paper, date=today - timedelta(days=day), upvotes=100 - day)
        for day in reversed(range(days))
    ]


# --- Papers -------------------------------------------------------------------------------


def test_the_paper_list_shows_ids_dates_organisation_upvotes_latest_signal_and_changes(admin_client):
    on_hf = PaperFactory(arxiv_id="2501.08001", hf_url="https://huggingface.co/papers/2501.08001",
                         organization="ETH Zürich", upvotes=87)
    bundled = PaperFactory(arxiv_id="corpus:symbolic-discovery-0123456789", arxiv_url="", hf_url="", upvotes=0)
    today = timezone.localdate()
    PaperSignalFactory(paper=on_hf, date=today - timedelta(days=2), upvotes=40)
    PaperSignalFactory(paper=on_hf, date=today, upvotes=87)

    response = admin_client.get(PAPERS)

    html = response.content.decode()
    rows = {p.pk: p for p in response.context["cl"].result_list}
    assert rows[on_hf.pk].latest_signal_day == today and rows[bundled.pk].latest_signal_day is None
    assert ('<a href="https://arxiv.org/abs/2501.08001">arXiv 2501.08001</a> · '
            '<a href="https://huggingface.co/papers/2501.08001">HF</a>') in html
    assert "corpus:symbolic" not in html  # a synthetic key is no arXiv id
    for header in ("Ids", "Published at", "Organization", "Upvotes", "Latest signal",
                   "First seen at", "Last changed", "Blocked"):
        assert header in html, header
    assert "ETH Zürich" in html and ">87<" in html


def test_papers_are_found_by_title_arxiv_id_in_any_form_or_author_name(admin_client):
    moe = paper_with_authors("Grace Hopper", "Alan Turing", arxiv_id="2501.08001", title="Tiny mixtures of experts")
    diffusion = paper_with_authors("Ada Lovelace", arxiv_id="2502.00002", title="Denoising diffusion, again")

    def found(term):
        return {p.pk for p in listed(admin_client, PAPERS, q=term)}

    assert found("mixtures of EXPERTS") == {moe.pk}
    for form in ("2501.08001", "2501.08001v3", "arXiv:2501.08001", "https://arxiv.org/abs/2501.08001v2"):
        assert found(form) == {moe.pk}, form
    assert found("lovelace") == {diffusion.pk}
    assert found("a") == {moe.pk, diffusion.pk}  # one row per paper however many authors match
    assert found("2501.0800") == set()  # ids match whole, not by prefix


def test_papers_are_filtered_by_source_and_first_seen_day(admin_client):
    now = timezone.now()
    fresh = PaperFactory(source="hf", first_seen_at=now)
    old = PaperFactory(source="arxiv", first_seen_at=now - timedelta(days=40))

    by_source = {p.pk for p in listed(admin_client, PAPERS, source="arxiv")}
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    past_week = {
        "first_seen_at__gte": str(midnight - timedelta(days=7)), "first_seen_at__lt": str(midnight + timedelta(days=1)),
    }
    this_week = {p.pk for p in listed(admin_client, PAPERS, **past_week)}
    page = admin_client.get(PAPERS).content.decode()

    assert by_source == {old.pk} and this_week == {fresh.pk}
    for name in ("hf", "hf-html", "arxiv", "arxiv-rss", "bundled"):
        assert f"?source={name}" in page, name


def test_a_papers_page_shows_its_authors_in_order_and_its_latest_signals_newest_first(admin_client):
    paper = paper_with_authors("Grace Hopper", "Alan Turing", "Ada Lovelace")
    signals_of(paper, papers_admin.SIGNALS_SHOWN + 5)

    response = admin_client.get(reverse("admin:papers_paper_change", args=[paper.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.index("Grace Hopper") < html.index("Alan Turing") < html.index("Ada Lovelace")
    hopper = Author.objects.get(name="Grace Hopper")
    assert f'href="{reverse("admin:papers_author_change", args=[hopper.pk])}"' in html
    today = timezone.localdate()
    shown = [f"<td>{today - timedelta(days=day)}</td>" for day in range(papers_admin.SIGNALS_SHOWN)]
    positions = [html.index(day) for day in shown]
    assert positions == sorted(positions)  # newest first
    assert f"<td>{today - timedelta(days=papers_admin.SIGNALS_SHOWN)}</td>" not in html
    assert f'href="{SIGNALS}?paper={paper.pk}"' in html


def test_a_papers_page_links_to_blocking_it_and_lists_its_editions(admin_client):
    paper = PaperFactory()
    edition = EditionFactory()
    EditionPaper.objects.create(edition=edition, paper=paper, rank=3, trending_score=0.5)
    page = reverse("admin:papers_paper_change", args=[paper.pk])

    before = admin_client.get(page).content.decode()
    block_paper(paper, "retracted by the authors")
    after = admin_client.get(page).content.decode()

    assert f'href="{reverse("admin:digest_blockedpaper_add")}?paper={paper.pk}"' in before
    assert f'href="{reverse("admin:digest_edition_change", args=[edition.pk])}"' in before and "rank 3)" in before
    entry = BlockedPaper.objects.get(paper=paper)
    assert "retracted by the authors" in after
    assert f'href="{reverse("admin:digest_blockedpaper_change", args=[entry.pk])}"' in after
    assert "rank 3, pulled)" in after


def test_the_block_link_opens_the_blocklist_form_with_the_paper_chosen(admin_client):
    paper = PaperFactory(title="A paper to keep out of digests")
    response = admin_client.get(reverse("admin:digest_blockedpaper_add"), {"paper": paper.pk})
    html = response.content.decode()
    assert response.status_code == 200
    assert f'name="paper" value="{paper.pk}"' in html and "A paper to keep out of digests" in html


def test_papers_are_shown_but_never_added_changed_or_deleted_here(admin_client):
    paper = PaperFactory(title="As ingested")
    change = reverse("admin:papers_paper_change", args=[paper.pk])

    page = admin_client.get(change)
    changed = admin_client.post(change, {"title": "Edited by hand", "arxiv_id": paper.arxiv_id, "source": "x"})
    added = admin_client.post(reverse("admin:papers_paper_add"), {"title": "New", "arxiv_id": "2601.1", "source": "x"})
    deleted = admin_client.post(reverse("admin:papers_paper_delete", args=[paper.pk]), {"post": "yes"})

    assert page.status_code == 200 and 'name="title"' not in page.content.decode()
    assert changed.status_code == added.status_code == deleted.status_code == 403
    assert list(Paper.objects.values_list("title", flat=True)) == ["As ingested"]


# --- Authors ------------------------------------------------------------------------------


def test_authors_are_listed_by_name_with_their_paper_count_and_link_to_their_papers(admin_client):
    first = paper_with_authors("Grace Hopper", "Alan Turing")
    second = paper_with_authors("Grace Hopper")
    paper_with_authors("Ada Lovelace")
    hopper = Author.objects.get(name="Grace Hopper")

    authors = listed(admin_client, AUTHORS)
    theirs = {p.pk for p in listed(admin_client, PAPERS, author=hopper.pk)}
    sidebar = admin_client.get(PAPERS, {"author": hopper.pk}).content.decode()

    assert [(a.name, a.paper_count) for a in authors] == [("Ada Lovelace", 1), ("Alan Turing", 1), ("Grace Hopper", 2)]
    assert theirs == {first.pk, second.pk}
    assert "Grace Hopper" in sidebar


def test_authors_are_searched_by_name_and_their_page_lists_their_papers(admin_client):
    paper = paper_with_authors("Grace Hopper", title="Compilers for everyone")
    paper_with_authors("Alan Turing")
    hopper = Author.objects.get(name="Grace Hopper")

    found = [a.name for a in listed(admin_client, AUTHORS, q="hop")]
    page = admin_client.get(reverse("admin:papers_author_change", args=[hopper.pk])).content.decode()

    assert found == ["Grace Hopper"]
    assert f'href="{reverse("admin:papers_paper_change", args=[paper.pk])}">Compilers for everyone</a>' in page
    assert f'href="{PAPERS}?author={hopper.pk}"' in page


def test_a_paper_list_filtered_on_an_author_id_that_is_not_a_number_is_refused(admin_client):
    response = admin_client.get(PAPERS, {"author": "1 OR 1=1"})
    assert response.status_code == 302 and "e=1" in response["Location"]


# --- Signals ------------------------------------------------------------------------------


def test_signals_are_listed_newest_first_and_filtered_by_day_and_paper(admin_client):
    one, other = PaperFactory(), PaperFactory()
    yesterday = timezone.localdate() - timedelta(days=1)
    older = [PaperSignalFactory(paper=one, date=day) for day in (yesterday - timedelta(days=1), yesterday)]
    today = PaperSignalFactory(paper=other)

    newest_first = listed(admin_client, SIGNALS)
    of_one = listed(admin_client, SIGNALS, paper=one.pk)
    of_today = listed(admin_client, SIGNALS, date__gte=timezone.localdate().isoformat())

    assert newest_first == [today, *reversed(older)]
    assert set(of_one) == set(older)
    assert {s.date for s in of_today} == {timezone.localdate()} and today in of_today


def test_signals_are_searched_by_their_papers_title_or_arxiv_id(admin_client):
    moe = PaperSignalFactory(paper=PaperFactory(arxiv_id="2501.08001", title="Tiny mixtures of experts"))
    PaperSignalFactory(paper=PaperFactory(title="Something else"))
    assert listed(admin_client, SIGNALS, q="mixtures") == listed(admin_client, SIGNALS, q="2501.08001v2") == [moe]


def test_a_signal_shows_its_paper_as_a_link_and_cannot_be_changed(admin_client):
    signal = PaperSignalFactory(upvotes=57)
    change = reverse("admin:papers_papersignal_change", args=[signal.pk])

    page = admin_client.get(change).content.decode()
    changed = admin_client.post(change, {"upvotes": 5000, "date": signal.date.isoformat(), "paper": signal.paper_id})
    deleted = admin_client.post(reverse("admin:papers_papersignal_delete", args=[signal.pk]), {"post": "yes"})

    assert f'href="{reverse("admin:papers_paper_change", args=[signal.paper_id])}"' in page
    assert "<select" not in page  # no list of every paper to pick from
    assert changed.status_code == deleted.status_code == 403
    assert PaperSignal.objects.get().upvotes == 57


# --- Fetch runs ---------------------------------------------------------------------------


def test_fetch_runs_show_source_times_counts_and_errors_filtered_by_source_and_status(admin_client):
    started = timezone.now() - timedelta(hours=1)
    ok = FetchRunFactory(source="arxiv", started_at=started, finished_at=started + timedelta(seconds=12.5))
    failed = FetchRunFactory(
        source="hf", status="failed", created=0, updated=0, unchanged=0,
        error="hf: rate limited (HTTP 429 Too Many Requests from https://huggingface.co/api/daily_papers?…)\nmore",
    )

    page = admin_client.get(RUNS).content.decode()

    assert listed(admin_client, RUNS, status__exact="failed") == [failed]
    assert listed(admin_client, RUNS, source="arxiv") == [ok]
    assert listed(admin_client, RUNS, q="429") == [failed]
    assert "12.5 s" in page and "rate limited (HTTP 429" in page and "\nmore" not in page
    for header in ("Source", "Status", "Started at", "Duration", "Created", "Updated", "Unchanged", "Skipped", "Error"):
        assert header in page, header


def test_a_failed_run_shows_its_whole_error_and_cannot_be_changed_or_deleted(admin_client):
    run = FetchRunFactory(status="failed", error="arxiv: connection broken\nwhile reading the response")
    change = reverse("admin:papers_fetchrun_change", args=[run.pk])

    page = admin_client.get(change).content.decode()
    changed = admin_client.post(change, {"status": "ok", "source": "arxiv", "error": ""})
    deleted = admin_client.post(reverse("admin:papers_fetchrun_delete", args=[run.pk]), {"post": "yes"})

    assert "while reading the response" in page
    assert changed.status_code == deleted.status_code == 403
    assert FetchRun.objects.get().status == "failed"


# --- Every page, and what it costs ---------------------------------------------------------


def some_of_everything(count):
    """``count`` papers with two authors and three days of signals each, a blocked one among
    them, in an edition, and ``count`` fetch runs."""
    papers = [
        paper_with_authors(f"Author {n}a", f"Author {n}b", title=f"Paper number {n}", source="hf")
        for n in range(count)
    ]
    for paper in papers:
        signals_of(paper, 3)
    edition = EditionFactory(date=timezone.localdate() - timedelta(days=Paper.objects.count()))
    for rank, paper in enumerate(papers, start=1):
        EditionPaper.objects.create(edition=edition, paper=paper, rank=rank, trending_score=1 / rank)
    block_paper(papers[0], "retracted")
    for n in range(count):
        FetchRunFactory(status="failed" if n % 3 else "ok", error="hf: timed out" if n % 3 else "")
    return papers


def every_page(papers):
    paper = papers[-1]
    return [
        PAPERS, f"{PAPERS}?q=Paper", f"{PAPERS}?q=Author", f"{PAPERS}?source=hf",
        f"{PAPERS}?author={Author.objects.first().pk}", f"{PAPERS}?_to_field=id&_popup=1",
        reverse("admin:papers_paper_change", args=[paper.pk]),
        AUTHORS, f"{AUTHORS}?q=author", reverse("admin:papers_author_change", args=[Author.objects.first().pk]),
        SIGNALS, f"{SIGNALS}?q=number", f"{SIGNALS}?paper={paper.pk}",
        reverse("admin:papers_papersignal_change", args=[PaperSignal.objects.first().pk]),
        RUNS, f"{RUNS}?status__exact=failed", f"{RUNS}?q=timed",
        reverse("admin:papers_fetchrun_change", args=[FetchRun.objects.first().pk]),
    ]


def test_every_papers_admin_page_renders_for_staff(admin_client):
    for url in every_page(some_of_everything(3)):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert response.context.get("cl") is None or response.context["cl"].result_count > 0, url


@pytest.mark.parametrize("list_url", [PAPERS, f"{PAPERS}?q=Paper", AUTHORS, SIGNALS, RUNS])
def test_a_list_takes_as_many_queries_for_thirty_rows_as_for_three(admin_client, list_url):
    def queries_for_a_page(count):
        some_of_everything(count)
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(list_url)
        assert response.status_code == 200
        return len(response.context["cl"].result_list), len(queries)

    few_rows, few_queries = queries_for_a_page(3)
    many_rows, many_queries = queries_for_a_page(27)

    assert many_rows >= 30 > few_rows
    assert many_queries == few_queries


def test_a_filtered_list_does_not_count_the_whole_table_as_well(admin_client):
    some_of_everything(3)
    for url, table in [
        (f"{PAPERS}?source=hf", "papers_paper"),
        (f"{SIGNALS}?date__gte=2000-01-01", "papers_papersignal"),
        (f"{AUTHORS}?q=author", "papers_author"),
        (f"{RUNS}?status__exact=failed", "papers_fetchrun"),
    ]:
        with CaptureQueriesContext(connection) as queries:
            admin_client.get(url)
        count_of_table = f'SELECT COUNT(*) AS "__count" FROM "{table}"'
        counts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(count_of_table)]
        assert len(counts) == 1 and " WHERE " in counts[0], (url, counts)
