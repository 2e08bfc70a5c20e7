"""Every paper source parser, fed hostile responses.

A parser may answer with records (and skipped items) or with one SourceError;
never with any other exception. What it stores is whole or nothing: either
every record of the batch becomes a row, or (on a SourceError) none does.
"""

import json
import time
from datetime import timedelta
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from papers.models import Author, FetchRun, Paper, PaperSignal
from papers.services import fetch_from_source
from papers.sources import get_source
from papers.sources.base import ParsedBatch, SourceError

from .strategies import HARDENING, hf_items, hostile_text, json_bytes, json_values, timestamps

SOURCES = ["hf", "hf-html", "arxiv", "arxiv-rss", "bundled"]
XML_ILLEGAL = {chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}


def parse_or_source_error(name, payload):
    """The parse result, or None when the source refused the payload with a SourceError."""
    try:
        batch = get_source(name).parse(payload)
    except SourceError as error:
        assert error.source == name and str(error).startswith(f"{name}: ")
        return None
    assert isinstance(batch, ParsedBatch)
    return batch


def is_xml_text(text):
    return not any(ch in XML_ILLEGAL or 0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def hf_page(items):
    props = json.dumps({"dailyPapers": items})
    return (
        "<!doctype html><html><body><main>"
        f'<div data-target="DailyPapers" data-props={quoteattr(props)}></div>'
        "</main></body></html>"
    ).encode("utf-8", "surrogatepass")


def element(tag, text):
    """``<tag>text</tag>``, or nothing for a value the entry leaves out (None)."""
    return "" if text is None else f"<{tag}>{escape(text)}</{tag}>"


def atom_feed(entries):
    body = "".join(
        "<entry>"
        f"<id>http://arxiv.org/abs/{escape(arxiv_id)}</id>"
        f"<title>{escape(title)}</title><summary>{escape(summary)}</summary>"
        f"<author><name>{escape(author)}</name></author>"
        f'<arxiv:primary_category term={quoteattr(category)}/>'
        f"<arxiv:comment>{escape(summary)}</arxiv:comment>"
        f"{element('published', published)}"
        "</entry>"
        for arxiv_id, title, summary, author, category, published in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        f"{body}</feed>"
    ).encode("utf-8", "surrogatepass")


def rss_feed(entries, feed_date=None):
    items = "".join(
        "<item>"
        f"<title>{escape(title)}</title>"
        f"<link>https://arxiv.org/abs/{escape(arxiv_id)}</link>"
        f"<description>arXiv:{escape(arxiv_id)} Announce Type: {escape(kind)} Abstract: "
        f"{escape(summary)}</description>"
        f"<guid isPermaLink=\"false\">oai:arXiv.org:{escape(arxiv_id)}</guid>"
        f"<category>{escape(category)}</category>"
        f"<dc:creator>{escape(author)}</dc:creator>"
        f"{element('pubDate', date)}"
        f"<arxiv:announce_type>{escape(kind)}</arxiv:announce_type>"
        "</item>"
        for arxiv_id, title, summary, author, category, kind, date in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom"><channel><title>cs.LG updates</title>'
        f"{element('pubDate', feed_date)}{items}</channel></rss>"
    ).encode("utf-8", "surrogatepass")


xml_ids = st.one_of(st.from_regex(r"\A\d{4}\.\d{5}(v\d)?\Z"), hostile_text)


# --- Any bytes at all ---------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
@HARDENING
@given(payload=st.binary(max_size=2000))
def test_every_parser_answers_any_bytes_with_records_or_a_source_error(name, payload):
    parse_or_source_error(name, payload)


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe\xfd",
        b"\xc3\x28 not utf-8 \xa0\xa1",
        b"\x00" * 64,
        b"\xef\xbb\xbf",
        "[{\"paper\": {\"id\": \"2501.00001\", \"title\": \"caf\xe9\"}}]".encode("latin-1"),
        b"<html>",
        b"<?xml version='1.0' encoding='klingon'?><feed/>",
        b"null",
        b'{"error": "Internal error"}',
    ],
    ids=[
        "empty", "invalid-utf8", "broken-utf8-sequence", "nul-bytes", "bom-only",
        "latin1-json", "unclosed-html", "unknown-encoding", "json-null", "error-object",
    ],
)
def test_every_parser_refuses_invalid_utf8_and_empty_bodies_cleanly(name, payload):
    parse_or_source_error(name, payload)


# --- Deep nesting and huge payloads ---------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_hf_api_parser_refuses_deeply_nested_json_with_a_source_error(depth):
    with pytest.raises(SourceError, match="^hf: "):
        get_source("hf").parse(b"[" * depth + b"]" * depth)


def test_hf_page_parser_refuses_deeply_nested_embedded_json_with_a_source_error():
    nested = "[" * 100_000 + "]" * 100_000
    page = f'<div data-target="DailyPapers" data-props="{nested}"></div>'.encode()
    with pytest.raises(SourceError, match="^hf-html: "):
        get_source("hf-html").parse(page)


def test_bundled_corpus_refuses_a_deeply_nested_line_with_a_source_error():
    with pytest.raises(SourceError, match="^bundled: invalid JSON on line 2"):
        get_source("bundled").parse(b'{"title": "fine"}\n' + b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("name", ["arxiv", "arxiv-rss"])
def test_xml_parsers_refuse_deeply_nested_documents_with_a_source_error(name):
    root = b"<feed xmlns='http://www.w3.org/2005/Atom'>" if name == "arxiv" else b"<rss version='2.0'><channel>"
    end = b"</feed>" if name == "arxiv" else b"</channel></rss>"
    payload = root + b"<x>" * 50_000 + b"</x>" * 50_000 + end
    parse_or_source_error(name, payload)  # a SourceError or an empty batch, in bounded time


@pytest.mark.parametrize("name", ["arxiv", "arxiv-rss"])
def test_xml_parsers_neither_expand_entity_bombs_nor_read_local_files(name):
    entities = '<!ENTITY a0 "' + "a" * 50 + '">' + "".join(
        f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE x [{entities}<!ENTITY f SYSTEM "file:///etc/passwd">]>'
    if name == "arxiv":
        body = (
            '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2501.00001v1'
            "</id><title>t &a9; &f;</title></entry></feed>"
        )
    else:
        body = (
            '<rss version="2.0"><channel><item><title>t &a9; &f;</title>'
            "<guid>oai:arXiv.org:2501.00001v1</guid></item></channel></rss>"
        )
    started = time.monotonic()
    batch = parse_or_source_error(name, (bomb + body).encode())
    assert time.monotonic() - started < 5
    titles = [r.title for r in batch.records] if batch else []
    assert all(len(t) < 1000 and "root:" not in t for t in titles)


def test_hf_api_parser_reads_a_20_mb_response_of_5000_items():
    item = {
        "paper": {"id": "2501.{:05d}", "title": "T" * 200, "summary": "word " * 700},
        "numComments": 3,
    }
    items = []
    for n in range(5000):
        copy = json.loads(json.dumps(item))
        copy["paper"]["id"] = f"2501.{n:05d}"
        items.append(copy)
    payload = json.dumps(items).encode()
    assert len(payload) > 18_000_000

    started = time.monotonic()
    batch = get_source("hf").parse(payload)

    assert len(batch.records) == 5000 and not batch.skipped
    assert time.monotonic() - started < 10


def test_arxiv_parser_reads_a_huge_abstract_and_keeps_it_whole():
    summary = "gradient " * 200_000  # 1.8 MB of one abstract
    batch = get_source("arxiv").parse(
        atom_feed([("2501.00001v1", "Title", summary, "A. Author", "cs.LG", "2026-01-05T00:00:00Z")])
    )
    assert len(batch.records) == 1 and len(batch.records[0].abstract) == len(summary.strip())


# --- Hostile items -------------------------------------------------------------


@HARDENING
@given(items=st.lists(hf_items, max_size=6))
def test_hf_api_parser_skips_or_cleans_hostile_items(items):
    batch = parse_or_source_error("hf", json_bytes(items))
    assert batch is not None  # a list is always a valid response
    assert len(batch.records) + len(batch.skipped) == len(items)
    for record in batch.records:
        assert_clean_record(record)


@HARDENING
@given(items=st.lists(hf_items, max_size=4))
def test_hf_page_parser_skips_or_cleans_hostile_items(items):
    batch = parse_or_source_error("hf-html", hf_page(items))
    assert batch is not None
    assert len(batch.records) + len(batch.skipped) == len(items)
    for record in batch.records:
        assert_clean_record(record)


@HARDENING
@given(props=json_values)
def test_hf_page_parser_answers_any_embedded_json_with_records_or_a_source_error(props):
    page = f'<div data-target="DailyPapers" data-props={quoteattr(json.dumps(props))}></div>'
    parse_or_source_error("hf-html", page.encode("utf-8", "surrogatepass"))


atom_entries = st.lists(
    st.tuples(xml_ids, hostile_text, hostile_text, hostile_text, hostile_text, timestamps),
    max_size=4,
)


@HARDENING
@given(entries=atom_entries)
def test_arxiv_atom_parser_skips_or_cleans_hostile_entries(entries):
    batch = parse_or_source_error("arxiv", atom_feed(entries))
    texts = [t for entry in entries for t in entry if t is not None]
    if all(is_xml_text(t) for t in texts):
        assert batch is not None, "a well-formed feed must parse"
        assert len(batch.records) + len(batch.skipped) == len(entries)
    for record in batch.records if batch else []:
        assert_clean_record(record)


# feedparser reads RFC 822 dates and ISO 8601 ones, and brings either into UTC itself.
rss_dates = st.one_of(
    timestamps,
    st.sampled_from(["Thu, 16 Jan 2025 00:00:00 -0500", "Fri, 31 Dec 9999 23:59:59 -0100",
                     "Mon, 01 Jan 0001 00:30:00 +0100", "Thu, 16 Jan 2025 25:00:00 GMT"]),
)
rss_entries = st.lists(
    st.tuples(
        xml_ids,
        hostile_text,
        hostile_text,
        hostile_text,
        hostile_text,
        st.one_of(st.sampled_from(["new", "cross", "replace", "replace-cross"]), hostile_text),
        rss_dates,
    ),
    max_size=4,
)


@HARDENING
@given(entries=rss_entries, feed_date=rss_dates)
def test_arxiv_rss_parser_skips_or_cleans_hostile_items(entries, feed_date):
    batch = parse_or_source_error("arxiv-rss", rss_feed(entries, feed_date))
    for record in batch.records if batch else []:
        assert_clean_record(record)


def assert_clean_record(record):
    assert record.key and len(record.key) <= 100
    for name in ("title", "abstract", "organization", "ai_summary", "comment", "journal_ref", "doi"):
        value = getattr(record, name)
        if value is not None:
            assert_storable_text(value)
    for name in ("arxiv_url", "pdf_url", "hf_url", "code_url", "project_url", "thumbnail_url"):
        value = getattr(record, name)
        if value is not None:
            assert value.startswith(("http://", "https://")) and len(value) <= 500
            assert_storable_text(value)
    for names in (record.author_names, record.ai_keywords, record.categories):
        for value in names or []:
            assert_storable_text(value)
    for name in ("published_at", "revised_at", "withdrawn_at"):
        value = getattr(record, name)
        assert value is None or value.utcoffset() == timedelta(0)  # in UTC: years 1-9999 there
    for name in ("upvotes", "num_comments", "github_stars", "authors_count"):
        value = getattr(record, name)
        assert value is None or 0 <= value <= 2**31 - 1


def assert_storable_text(value):
    """Text PostgreSQL can store and a mail header or page cannot be broken by."""
    assert isinstance(value, str) and value == value.strip()
    assert "\x00" not in value
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in value), "lone surrogate"
    assert "\ufffe" not in value and "\uffff" not in value, "not an XML 1.0 character (the private feed)"
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value), "control character"
    assert not any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in value), "bidi control"


# --- Stored whole or not at all ------------------------------------------------------


@pytest.mark.django_db
@HARDENING
@given(items=st.lists(hf_items, min_size=1, max_size=5))
def test_hf_fetch_of_hostile_items_stores_every_parsed_record_or_raises_source_error(
    items, tmp_path_factory
):
    path = tmp_path_factory.mktemp("hf") / "daily_papers.json"
    path.write_bytes(json_bytes(items))
    papers_before = Paper.objects.count()

    try:
        report = fetch_from_source("hf", from_file=str(path))  # anything but SourceError fails the test
    except SourceError as exc:  # only when not one item could be read: nothing is stored
        assert str(exc).startswith("hf: could not read ")
        assert Paper.objects.count() == papers_before
        assert FetchRun.objects.order_by("-pk").first().status == "failed"
        return

    assert report.created + report.updated + report.unchanged > 0
    assert Paper.objects.count() - papers_before == report.created
    assert report.created + report.updated + report.unchanged + len(report.skipped) >= len(items)
    assert FetchRun.objects.filter(pk=report.run_id, status="ok").exists()
    for paper in Paper.objects.order_by("-pk")[: report.created]:
        for value in (paper.title, paper.abstract, paper.organization, *paper.author_names):
            assert "\x00" not in value


@pytest.mark.django_db
@HARDENING
@given(entries=atom_entries)
def test_arxiv_fetch_of_hostile_entries_stores_every_parsed_record_or_raises_source_error(
    entries, tmp_path_factory
):
    path = tmp_path_factory.mktemp("arxiv") / "page.xml"
    path.write_bytes(atom_feed(entries))
    papers_before = Paper.objects.count()
    try:
        report = fetch_from_source("arxiv", from_file=str(path))
    except SourceError:
        assert Paper.objects.count() == papers_before
        assert FetchRun.objects.filter(source="arxiv", status="failed").exists()
        return
    assert Paper.objects.count() - papers_before == report.created


@pytest.mark.django_db
def test_a_batch_that_fails_while_storing_leaves_no_rows_behind(monkeypatch, tmp_path):
    items = [
        {"paper": {"id": f"2501.{n:05d}", "title": f"Paper {n}", "upvotes": n,
                   "authors": [{"name": f"Author {n}"}]}}
        for n in range(50)
    ]
    path = tmp_path / "daily_papers.json"
    path.write_bytes(json.dumps(items).encode())

    def broken(*args, **kwargs):
        raise RuntimeError("database went away while recording signals")

    monkeypatch.setattr("papers.ingest.record_signals", broken)
    with pytest.raises(RuntimeError):
        fetch_from_source("hf", from_file=str(path))

    assert (Paper.objects.count(), Author.objects.count(), PaperSignal.objects.count()) == (0, 0, 0)
    run = FetchRun.objects.get()
    assert run.status == "failed" and "database went away" in run.error
