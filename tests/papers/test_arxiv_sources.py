import re
from datetime import date

import pytest

from papers.sources.arxiv import ArxivApiSource, ArxivRssSource, search_query, split_creators
from papers.sources.base import SourceError, split_arxiv_id


def api_records(fixture_bytes, name="api_page.xml"):
    return ArxivApiSource().parse(fixture_bytes("arxiv", name))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("http://arxiv.org/abs/2501.08001v2", ("2501.08001", 2)),
        ("2501.08001", ("2501.08001", None)),
        ("oai:arXiv.org:2501.0800v13", ("2501.0800", 13)),
        ("http://arxiv.org/abs/hep-th/9901001v1", ("hep-th/9901001", 1)),
        ("http://arxiv.org/abs/math.GT/0309136v2", ("math.GT/0309136", 2)),
    ],
)
def test_arxiv_ids_split_into_canonical_id_and_version(raw, expected):
    assert split_arxiv_id(raw) == expected


def test_api_entry_fields(fixture_bytes):
    moe = api_records(fixture_bytes).records[0]
    assert (moe.key, moe.version) == ("2501.08001", 2)
    assert moe.title == "Sparse Mixture-of-Experts at Scale: Routing Without Tears"
    assert moe.abstract.startswith("We study sparse mixture-of-experts language models and show")
    assert "\n" not in moe.abstract and "  " not in moe.abstract
    assert "$\\mathcal{O}(\\log n)$" in moe.abstract  # longer math is left as written
    assert moe.author_names == ["Zoë Müller", "Jiří Novák", "李明"]
    assert moe.primary_category == "cs.LG" and moe.categories == ["cs.LG", "cs.CL"]
    assert moe.pdf_url == "https://arxiv.org/pdf/2501.08001v2"
    assert moe.arxiv_url == "https://arxiv.org/abs/2501.08001"
    assert moe.comment == "v2: fixed Table 3; 14 pages, 6 figures"
    assert moe.journal_ref == "ICML 2025" and moe.doi == "10.1000/moe.2025.001"
    assert moe.published_at.isoformat() == "2025-01-14T09:30:00+00:00"
    assert moe.revised_at.isoformat() == "2025-01-15T18:02:11+00:00"
    assert moe.withdrawn_at is None


def test_primary_category_comes_first_even_when_listed_later(fixture_bytes):
    cross = api_records(fixture_bytes).records[1]
    assert cross.categories == ["stat.ML", "cs.LG"]


def test_html_in_api_titles_is_kept_as_text(fixture_bytes):
    cross = api_records(fixture_bytes).records[1]
    assert cross.title == "On the <b>Bold</b> Claims of α-Divergence Training & Friends"  # $\\alpha$ read as LaTeX
    assert '<script>alert("x")</script>' in cross.abstract


def test_withdrawal_comment_flags_the_paper(fixture_bytes):
    withdrawn = api_records(fixture_bytes).records[2]
    assert withdrawn.withdrawn_at == withdrawn.revised_at


def test_withdrawal_comment_flags_the_paper_even_without_its_dates(fixture_bytes):
    page = fixture_bytes("arxiv", "api_page.xml").decode()
    undated = re.sub(r"\s*<(updated|published)>[^<]*</\1>", "", page.split("<entry>", 1)[1])
    page = page.split("<entry>", 1)[0] + "<entry>" + undated
    withdrawn = ArxivApiSource().parse(page.encode()).records[2]
    assert withdrawn.revised_at is None and withdrawn.published_at is None
    assert withdrawn.withdrawn_at is not None


def test_a_malformed_revision_date_is_dropped_and_the_entry_kept(fixture_bytes, caplog):
    page = fixture_bytes("arxiv", "api_page.xml").replace(
        b"<updated>2025-01-15T08:00:00Z</updated>", b"<updated>last Tuesday</updated>"
    )
    batch = ArxivApiSource().parse(page)
    withdrawn = {r.key: r for r in batch.records}["2501.08003"]
    assert withdrawn.revised_at is None
    assert withdrawn.published_at.isoformat() == "2024-12-20T10:00:00+00:00"
    assert withdrawn.withdrawn_at == withdrawn.published_at  # the date it still has
    assert withdrawn.version == 3 and withdrawn.comment.startswith("This paper has been withdrawn")
    assert batch.dropped == [("2501.08003", "revised_at", "not a timestamp: 'last Tuesday'")]
    assert [key for key, _ in batch.skipped] == ["http://arxiv.org/abs/not-an-id"]
    assert (
        "dropped field source=arxiv key=2501.08003 field=revised_at reason=not a timestamp: 'last Tuesday'"
        in caplog.messages
    )


def test_a_malformed_publication_date_still_skips_the_entry(fixture_bytes):
    """The ranker counts a paper's age from its publication, and arXiv is the reference for it:
    kept without it, the paper would rank in its edition as if published when first seen."""
    page = fixture_bytes("arxiv", "api_page.xml").replace(
        b"<published>2024-12-20T10:00:00Z</published>", b"<published>20 Dec 2024</published>"
    )
    batch = ArxivApiSource().parse(page)
    assert "2501.08003" not in {r.key for r in batch.records}
    assert ("http://arxiv.org/abs/2501.08003v3", "not a timestamp: '20 Dec 2024'") in batch.skipped
    assert batch.dropped == []


def test_entry_with_a_broken_id_is_skipped(fixture_bytes):
    assert [key for key, _ in api_records(fixture_bytes).skipped] == [
        "http://arxiv.org/abs/not-an-id"
    ]


@pytest.mark.parametrize(
    "fixture, problem",
    [
        ("api_truncated.xml", "arxiv: invalid XML (truncated or corrupt response)"),
        ("api_error.xml", "arxiv: API error: max_results must be non-negative"),
        ("rss_weekday.xml", "arxiv: the response is not an arXiv Atom feed"),
    ],
)
def test_unusable_api_responses_raise_naming_the_source(fixture_bytes, fixture, problem):
    with pytest.raises(SourceError) as caught:
        api_records(fixture_bytes, fixture)
    assert str(caught.value).startswith(problem)


def test_rss_feed_with_bytes_not_in_its_declared_encoding_is_refused_not_garbled(fixture_bytes):
    stray_byte = fixture_bytes("arxiv", "rss_weekday.xml").replace(b"Broken.", b"Broken \xff.")
    with pytest.raises(SourceError, match="declared as utf-8, but parsed as iso-8859-2"):
        ArxivRssSource().parse(stray_byte)


def test_empty_body_is_not_an_empty_feed():
    with pytest.raises(SourceError, match="arxiv-rss: the response is not an arXiv RSS feed"):
        ArxivRssSource().parse(b"")


def test_search_query_joins_categories_and_limits_to_a_day():
    assert search_query(["cs.LG", "stat.ML"]) == "cat:cs.LG OR cat:stat.ML"
    assert search_query(["cs.LG"], date(2025, 1, 15)) == (
        "(cat:cs.LG) AND submittedDate:[202501150000 TO 202501152359]"
    )


def test_rss_announce_types(fixture_bytes):
    batch = ArxivRssSource().parse(fixture_bytes("arxiv", "rss_weekday.xml"))
    kinds = {(r.key, r.version): r.update_only for r in batch.records}
    assert kinds[("2501.09001", 1)] is False  # new
    assert kinds[("2501.09002", 1)] is False  # cross
    assert kinds[("2501.08001", 3)] is True  # replace
    assert kinds[("2401.00042", 4)] is True  # replace-cross


def test_rss_item_fields(fixture_bytes):
    new = ArxivRssSource().parse(fixture_bytes("arxiv", "rss_weekday.xml")).records[0]
    assert new.author_names == ["Søren Kierkegaard", "Émilie du Châtelet", "Ngũgĩ wa Thiong'o"]
    assert new.abstract == "We propose tiny experts that route tokens cheaply. Code is released."
    assert new.categories == ["cs.LG", "cs.CL"]
    assert new.published_at.isoformat() == "2025-01-16T05:00:00+00:00"


def test_rss_item_without_an_id_is_skipped(fixture_bytes):
    batch = ArxivRssSource().parse(fixture_bytes("arxiv", "rss_weekday.xml"))
    assert [key for key, _ in batch.skipped] == ["https://arxiv.org/"]


FEED_DATE = b"<pubDate>Thu, 16 Jan 2025 00:00:00 -0500</pubDate>"


def with_item_date(feed, item, date):
    """The feed with the ``item``-th item's (from 1) pubDate replaced by ``date``."""
    parts = feed.split(b"<item>")
    parts[item] = parts[item].replace(FEED_DATE, b"<pubDate>" + date + b"</pubDate>", 1)
    return b"<item>".join(parts)


@pytest.mark.parametrize(
    "date, reason",
    [
        # feedparser brings a date with an offset into UTC itself, out of Python's years here
        (b"9999-12-31T23:59:59-01:00", "timestamp out of range: year 10000"),
        (b"0001-01-01T00:30:00+01:00", "timestamp out of range: year 0"),
        (b"last Tuesday", "not a date: 'last Tuesday'"),  # feedparser reads neither RFC 822 nor ISO 8601
    ],
)
def test_an_rss_item_date_that_cannot_be_used_is_dropped_and_the_feeds_date_stands_in(
    fixture_bytes, caplog, date, reason
):
    feed = fixture_bytes("arxiv", "rss_weekday.xml")

    batch = ArxivRssSource().parse(with_item_date(feed, 2, date))

    dated = [(r.key, r.published_at) for r in ArxivRssSource().parse(feed).records]
    assert [(r.key, r.published_at) for r in batch.records] == dated  # the item's date was the feed's
    assert batch.dropped == [("2501.09002", "published_at", reason)]
    assert f"dropped field source=arxiv-rss key=2501.09002 field=published_at reason={reason}" in caplog.messages


@pytest.mark.parametrize(
    "date, reason",
    [(b"9999-12-31T23:59:59-01:00", "timestamp out of range: year 10000"), (b"someday", "not a date: 'someday'")],
)
def test_a_feed_date_that_cannot_be_used_is_logged_and_the_items_keep_their_own_dates(
    fixture_bytes, caplog, date, reason
):
    feed = fixture_bytes("arxiv", "rss_weekday.xml")
    undated = feed.replace(FEED_DATE, b"<pubDate>" + date + b"</pubDate>", 1)

    batch = ArxivRssSource().parse(undated)

    assert batch.records == ArxivRssSource().parse(feed).records
    assert f"feed date ignored source=arxiv-rss reason={reason}" in caplog.messages


def test_weekend_rss_feed_is_empty_not_an_error(fixture_bytes):
    batch = ArxivRssSource().parse(fixture_bytes("arxiv", "rss_weekend.xml"))
    assert batch.records == [] and batch.skipped == []


@pytest.mark.parametrize(
    "creators, names",
    [
        ("A. One, B. Two, C. Three", ["A. One", "B. Two", "C. Three"]),
        ("A. One, B. Two and C. Three", ["A. One", "B. Two", "C. Three"]),
        ("Alexander Sandberg", ["Alexander Sandberg"]),
        ("", []),
    ],
)
def test_dc_creator_is_split_into_names(creators, names):
    assert split_creators(creators) == names


def test_api_parser_never_expands_external_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    payload = f"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY leak SYSTEM "file://{secret}">]>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry><id>http://arxiv.org/abs/2501.00001v1</id><title>Leak &leak; here</title></entry>
</feed>""".encode()
    batch = ArxivApiSource().parse(payload)
    assert all("TOP-SECRET" not in (r.title + (r.abstract or "")) for r in batch.records)
