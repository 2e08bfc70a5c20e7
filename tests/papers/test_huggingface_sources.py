import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import time_machine

from papers.sources.base import SourceError
from papers.sources.huggingface import HuggingFaceApiSource, HuggingFacePageSource

FETCHED_AT = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def parse_api(fixture_bytes, name="daily_papers.json"):
    return HuggingFaceApiSource().parse(fixture_bytes("hf", name))


def by_key(batch):
    return {r.key: r for r in batch.records}


def test_api_item_takes_upvotes_from_the_paper_and_the_rest_of_the_optional_fields(fixture_bytes):
    moe = parse_api(fixture_bytes).records[0]
    assert moe.key == "2501.08001" and moe.version is None
    assert moe.upvotes == 87 and moe.num_comments == 4 and moe.github_stars == 412
    assert moe.code_url == "https://github.com/example/tiny-moe"
    assert moe.project_url == "https://example.org/tiny-moe"
    assert moe.organization == "ETH Zürich"
    assert moe.ai_keywords == ["mixture-of-experts", "routing", "sparse models"]
    assert moe.ai_summary.startswith("A fixed routing rule")
    assert moe.thumbnail_url.endswith("/2501.08001.png")
    assert moe.hf_url == "https://huggingface.co/papers/2501.08001"
    assert (
        moe.published_at.isoformat() == "2025-01-14T09:30:00+00:00"
    )  # arXiv date, not featured day


def test_hidden_authors_are_left_out_and_non_ascii_names_kept(fixture_bytes):
    moe = parse_api(fixture_bytes).records[0]
    assert moe.author_names == ["Zoë Müller", "Jiří Novák", "李明"]
    assert moe.authors_count == 3


def test_missing_optional_fields_are_none_not_blank_strings(fixture_bytes):
    minimal = by_key(parse_api(fixture_bytes))["2501.09101"]
    assert minimal.ai_summary is None and minimal.code_url is None
    assert minimal.organization is None and minimal.thumbnail_url is None
    assert minimal.github_stars is None


def test_html_and_latex_in_titles_stay_as_text_with_whitespace_normalised(fixture_bytes):
    minimal = by_key(parse_api(fixture_bytes))["2501.09101"]
    assert minimal.title == (
        "Why <script>alert('x')</script> Tags Belong in Titles: A Study of $\\LaTeX$ & HTML"
    )


def test_the_two_characters_xml_forbids_beyond_controls_are_replaced_in_text_and_urls():
    """U+FFFE and U+FFFF are not XML 1.0 characters: kept in a title, they would make every
    private Atom feed listing that digest unreadable. Replaced like a lone surrogate; a link
    holding one is dropped."""
    item = {
        "paper": {
            "id": "2501.09202",
            "title": "Attention \uffff is all \ufffe you need",
            "summary": "We study attention.\uffff",
            "authors": [{"name": "Ada\ufffe", "hidden": False}],
            "githubRepo": "https://github.com/example/\uffffrepo",
            "publishedAt": "2025-01-15T17:00:00.000Z",
            "upvotes": 3,
        },
        "numComments": 0,
    }

    (record,) = HuggingFaceApiSource().parse(json.dumps([item]).encode()).records

    assert record.title == "Attention \ufffd is all \ufffd you need"
    assert record.abstract == "We study attention.\ufffd"
    assert record.author_names == ["Ada\ufffd"]
    assert record.code_url is None


def test_bidi_overrides_are_dropped_from_text_and_right_to_left_text_kept():
    """An unclosed right-to-left override would reverse whatever follows the title in a subject,
    a preheader or an admin list; Arabic or Hebrew needs no such control to read right."""
    item = {
        "paper": {
            "id": "2501.09201",
            "title": "Spoofed \u202etitle\u202c and \u2067isolated\u2069 text",
            "summary": "\u0646\u0645\u0648\u0630\u062c \u0644\u063a\u0648\u064a \u202ekept?",
            "authors": [{"name": "\u202eRLO Author", "hidden": False}],
            "publishedAt": "2025-01-15T17:00:00.000Z",
            "upvotes": 3,
        },
        "title": "Spoofed \u202etitle\u202c and \u2067isolated\u2069 text",
        "numComments": 0,
    }

    (record,) = HuggingFaceApiSource().parse(json.dumps([item]).encode()).records

    assert record.title == "Spoofed title and isolated text"
    assert record.abstract == "\u0646\u0645\u0648\u0630\u062c \u0644\u063a\u0648\u064a kept?"
    assert record.author_names == ["RLO Author"]


def test_withdrawn_at_is_read(fixture_bytes):
    assert (
        by_key(parse_api(fixture_bytes))["2501.09102"]
        .withdrawn_at.isoformat()
        .startswith("2025-01-15T10:00")
    )


def test_non_http_links_are_dropped(fixture_bytes):
    record = by_key(parse_api(fixture_bytes))["2501.09104"]
    assert record.code_url is None
    assert record.organization == "navy"  # falls back to the short name


def test_malformed_items_are_skipped_with_reasons(fixture_bytes):
    batch = parse_api(fixture_bytes)
    reasons = dict(batch.skipped)
    assert reasons["item 4"] == "paper.id is not an arXiv id: None"
    assert "2501.09103" not in reasons  # only its upvotes are malformed: they are dropped
    assert len(batch.records) == 6  # duplicates are resolved when storing


def test_malformed_upvotes_in_the_recorded_response_are_dropped_and_the_paper_kept(fixture_bytes):
    batch = parse_api(fixture_bytes)
    bad_upvotes = by_key(batch)["2501.09103"]
    assert bad_upvotes.upvotes is None and bad_upvotes.title == "Bad upvotes"
    assert batch.dropped == [("2501.09103", "upvotes", "upvotes is not a non-negative integer: 'lots'")]


def complete_item(**paper_fields):
    """A Hugging Face item with every field this parser reads, ``paper_fields`` replacing some."""
    paper = {
        "id": "2501.09301",
        "title": "A Complete Item",
        "summary": "Every field present.",
        "authors": [{"name": "Ada Lovelace", "hidden": False}],
        "publishedAt": "2025-01-14T09:30:00.000Z",
        "upvotes": 12,
        "githubRepo": "https://github.com/example/complete",
        "githubStars": 30,
        "ai_summary": "All there.",
        "ai_keywords": ["completeness"],
        "organization": {"name": "ex", "fullname": "Example Lab"},
    }
    item = {"paper": {**paper, **paper_fields}, "title": "A Complete Item", "numComments": 2}
    return item


def parse_items(*items):
    return HuggingFaceApiSource().parse(json.dumps(items).encode())


@pytest.mark.parametrize(
    "where, name, value, blanked, reason",
    [
        ("paper", "upvotes", "12", ["upvotes"], "upvotes is not a non-negative integer: '12'"),
        ("paper", "githubStars", -1, ["github_stars"], "githubStars is not a non-negative integer: -1"),
        ("item", "numComments", 1.5, ["num_comments"], "numComments is not a non-negative integer: 1.5"),
        ("paper", "publishedAt", 1736847000, ["published_at"], "not a timestamp: 1736847000"),
        ("paper", "publishedAt", "9999-12-31T23:59:59-01:00", ["published_at"],
         "timestamp out of range: '9999-12-31T23:59:59-01:00'"),
        ("paper", "publishedAt", "0001-01-01T00:30:00+01:00", ["published_at"],
         "timestamp out of range: '0001-01-01T00:30:00+01:00'"),
        ("paper", "authors", "Ada Lovelace", ["author_names", "authors_count"], "paper.authors is not a list"),
        ("paper", "summary", 42, ["abstract"], "expected text, got int"),
        ("paper", "ai_summary", ["All", "there"], ["ai_summary"], "expected text, got list"),
        ("paper", "organization", {"fullname": 7}, ["organization"], "expected text, got int"),
    ],
)
def test_a_malformed_optional_field_is_dropped_and_the_paper_kept(caplog, where, name, value, blanked, reason):
    (intact,) = parse_items(complete_item()).records
    item = complete_item()
    (item["paper"] if where == "paper" else item)[name] = value

    batch = parse_items(item)

    assert batch.skipped == []
    (record,) = batch.records
    field = blanked[0]
    assert all(getattr(record, blank) is None for blank in blanked)
    assert replace(record, dropped={}) == replace(intact, **dict.fromkeys(blanked))  # the rest intact
    assert record.dropped == {field: reason}
    assert batch.dropped == [("2501.09301", field, reason)]
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped field")]
    assert warnings == [f"dropped field source=hf key=2501.09301 field={field} reason={reason}"]


def test_each_malformed_optional_field_of_one_item_is_dropped_and_logged_once(caplog):
    batch = parse_items(complete_item(upvotes=-5, githubStars="many", ai_summary=[2025]))
    (record,) = batch.records
    assert (record.upvotes, record.github_stars, record.ai_summary) == (None, None, None)
    assert record.num_comments == 2 and record.author_names == ["Ada Lovelace"]
    assert [name for _, name, _ in batch.dropped] == ["upvotes", "github_stars", "ai_summary"]
    assert len([r for r in caplog.records if r.getMessage().startswith("dropped field")]) == 3


@pytest.mark.parametrize("value", ["yesterday", [2025], True, 1736847000])
def test_a_malformed_withdrawal_time_still_flags_the_paper_withdrawn_as_of_the_fetch(caplog, value):
    (intact,) = parse_items(complete_item()).records
    with time_machine.travel(FETCHED_AT, tick=False):
        batch = parse_items(complete_item(withdrawnAt=value))

    (record,) = batch.records
    assert record.withdrawn_at == FETCHED_AT
    assert replace(record, dropped={}, withdrawn_at=None) == intact
    reason = f"not a timestamp: {value!r}"
    assert batch.dropped == [("2501.09301", "withdrawn_at", reason)]
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped field")]
    assert warnings == [f"dropped field source=hf key=2501.09301 field=withdrawn_at reason={reason}"]


@pytest.mark.parametrize("value", [None, ""])
def test_a_null_or_empty_withdrawal_time_means_not_withdrawn(value):
    batch = parse_items(complete_item(withdrawnAt=value))
    assert batch.records[0].withdrawn_at is None
    assert batch.dropped == []


def test_a_dropped_field_is_logged_on_one_printable_line(caplog):
    batch = parse_items(complete_item(upvotes="\x1b[31m12\n\u202e"))
    assert batch.records[0].upvotes is None
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped field")]
    assert logged.startswith("dropped field source=hf key=2501.09301 field=upvotes reason=upvotes is")
    assert logged.isprintable()


def test_a_malformed_title_still_skips_the_item():
    batch = parse_items(complete_item(title=["A", "list"]), {"paper": {"id": "2501.09302", "title": "Kept"}})
    assert [r.key for r in batch.records] == ["2501.09302"]
    assert batch.skipped == [("2501.09301", "expected text, got list")]
    assert batch.dropped == []


@pytest.mark.parametrize(
    "fixture, problem",
    [
        ("daily_papers_truncated.json", "hf: invalid JSON (truncated or corrupt response)"),
        ("error_object.json", "hf: API error: Invalid date: 2025-13-01"),
    ],
)
def test_unusable_api_responses_raise_one_line_naming_the_source(fixture_bytes, fixture, problem):
    with pytest.raises(SourceError) as caught:
        parse_api(fixture_bytes, fixture)
    assert str(caught.value).startswith(problem)
    assert "\n" not in str(caught.value)


def test_a_json_object_that_is_not_a_list_is_refused():
    with pytest.raises(SourceError, match="hf: expected a list of papers, got a JSON dict"):
        HuggingFaceApiSource().parse(b'{"papers": []}')


def test_papers_page_data_props_give_the_same_records_as_the_api(fixture_bytes):
    page = HuggingFacePageSource().parse(fixture_bytes("hf", "papers_page.html"))
    api = parse_api(fixture_bytes)
    assert [r.key for r in page.records] == ["2501.08001", "2501.09101", "2501.09102"]
    assert page.records == api.records[:3]


def test_papers_page_is_read_as_utf8_even_without_a_meta_charset(fixture_bytes):
    page = fixture_bytes("hf", "papers_page.html").replace(b'<meta charset="utf-8">', b"")
    moe = HuggingFacePageSource().parse(page).records[0]
    assert moe.author_names == ["Zoë Müller", "Jiří Novák", "李明"]
    assert moe.organization == "ETH Zürich"


@pytest.mark.parametrize(
    "payload, problem",
    [
        ("papers_page_without_data.html", "hf-html: the page has no DailyPapers data"),
        (b"", "hf-html: not an HTML page"),
        (
            b'<div data-target="DailyPapers" data-props="{&quot;dailyPapers&quot;: [">x</div>',
            "hf-html: the DailyPapers data is not valid JSON",
        ),
        (
            b'<div data-target="DailyPapers" data-props="{&quot;other&quot;: 1}">x</div>',
            "hf-html: the DailyPapers data has no list of papers",
        ),
    ],
)
def test_pages_without_usable_data_raise_naming_the_source(fixture_bytes, payload, problem):
    body = fixture_bytes("hf", payload) if isinstance(payload, str) else payload
    with pytest.raises(SourceError) as caught:
        HuggingFacePageSource().parse(body)
    assert str(caught.value).startswith(problem)
