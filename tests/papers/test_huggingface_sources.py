import json

import pytest

from papers.sources.base import SourceError
from papers.sources.huggingface import HuggingFaceApiSource, HuggingFacePageSource


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
    assert reasons["2501.09103"] == "upvotes is not a non-negative integer: 'lots'"
    assert len(batch.records) == 5  # duplicates are resolved when storing


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
