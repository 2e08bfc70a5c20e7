"""arXiv: the query API (Atom, paginated) and the daily announcement RSS feed.

The RSS feed is parsed with feedparser (HTML sanitising off: titles and
abstracts are plain text, and whatever markup they contain is data). The API's
Atom pages are parsed with lxml: they are large (2,000 entries is one morning's
fetch) and feedparser alone needs more than a second per 2,000 entries, over the
whole budget of an unchanged re-import (see docs/sources.md). arXiv asks for at
least 3 seconds between calls: settings.ARXIV_MIN_INTERVAL_SECONDS.
"""

import io
import logging
import re

import feedparser
from django.conf import settings
from django.utils import timezone
from lxml import etree

from .base import (
    BadValue,
    OptionalFields,
    PaperRecord,
    ParsedBatch,
    SkipItem,
    Source,
    clean_names,
    clean_prose,
    clean_text,
    clean_url,
    parse_timestamp,
    printable,
    split_arxiv_id,
    struct_time_to_datetime,
)
from .http import HttpClient

log = logging.getLogger(__name__)
ABS_URL = "https://arxiv.org/abs/{}"
PDF_URL = "https://arxiv.org/pdf/{}"
WITHDRAWN_RE = re.compile(
    r"^\s*(?:this (?:paper|submission|article) has been withdrawn|withdrawn\b)", re.I
)
RSS_PREFIX_RE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*(?:Abstract:\s*)?", re.I)
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
# No entity expansion, no network: a response is data, never instructions to the parser.
XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
ADDING_TYPES = {"new", "cross"}
UPDATING_TYPES = {"replace", "replace-cross"}


class ArxivSource(Source):
    def client(self):
        return HttpClient(self.name, min_interval=settings.ARXIV_MIN_INTERVAL_SECONDS)


class ArxivApiSource(ArxivSource):
    name = "arxiv"
    authoritative_fields = frozenset(
        {
            "primary_category",
            "categories",
            "arxiv_url",
            "comment",
            "journal_ref",
            "doi",
            "published_at",
            "revised_at",
        }
    )

    def fetch(self, *, date=None, categories=None, on_progress=None):
        """Newest submissions first, page by page, up to settings.ARXIV_MAX_RESULTS."""
        client = self.client()
        query = search_query(categories or settings.ARXIV_CATEGORIES, date)
        limit = settings.ARXIV_MAX_RESULTS
        batch, start, asked_again = ParsedBatch(), 0, False
        while start < limit:
            params = {
                "search_query": query,
                "sortBy": "submittedDate",
                "sortOrder": "descending",
                "start": start,
                "max_results": min(settings.ARXIV_PAGE_SIZE, limit - start),
            }
            page, total = self.parse_page(client.get(settings.ARXIV_API_URL, params=params))
            received = len(page.records) + len(page.skipped)
            if received == 0 and start < total:
                # The API now and then answers a page empty that it fills when asked again.
                if not asked_again:
                    asked_again = True
                    continue
                log.warning("arxiv: the page from %d of %d results came back empty twice; "
                            "keeping the %d read", start, total, start)
            batch.extend(page)
            start += received
            asked_again = False
            if on_progress:
                on_progress("download", start, min(total, limit))
            if received == 0 or start >= total:
                break
        return batch

    def parse(self, payload):
        return self.parse_page(payload)[0]

    def parse_page(self, payload):
        """One API response: (ParsedBatch, total results of the query)."""
        try:
            feed = etree.fromstring(payload, XML_PARSER)
        except etree.XMLSyntaxError as exc:
            raise self.error(f"invalid XML (truncated or corrupt response): {exc}") from None
        if feed.tag != f"{ATOM}feed":
            raise self.error("the response is not an arXiv Atom feed")
        entries = feed.findall(f"{ATOM}entry")
        for entry in entries:
            if "/api/errors" in (entry.findtext(f"{ATOM}id") or ""):
                summary = clean_text(entry.findtext(f"{ATOM}summary")) or "unknown"
                raise self.error(f"API error: {summary}")
        batch = self.parse_items(entries, parse_api_entry, key_of=lambda e: e.findtext(f"{ATOM}id"))
        try:
            total = int(feed.findtext(f"{OPENSEARCH}totalResults"))
        except (TypeError, ValueError):
            total = len(entries)
        return batch, total


class ArxivRssSource(ArxivSource):
    """The daily announcements: ``new`` and ``cross`` add papers, ``replace``
    updates the version of a paper already stored. Empty on weekends."""

    name = "arxiv-rss"
    authoritative_fields = frozenset({"categories", "arxiv_url"})

    def fetch(self, *, date=None, categories=None, on_progress=None):
        if date:
            raise self.error(
                "the RSS feed only has the latest announcement; --date is not supported"
            )
        url = (
            settings.ARXIV_RSS_URL.rstrip("/")
            + "/"
            + "+".join(categories or settings.ARXIV_CATEGORIES)
        )
        return self.parse(self.client().get(url))

    def parse(self, payload):
        feed = feedparser.parse(
            io.BytesIO(payload), sanitize_html=False, resolve_relative_uris=False
        )
        if feed.get("bozo"):  # including bytes not in the declared encoding, which feedparser
            # would otherwise decode as whatever legacy charset fits, garbling every name
            raise self.error(f"invalid XML (truncated or corrupt response): {feed.bozo_exception}")
        if not (feed.get("version") or "").startswith("rss"):
            raise self.error("the response is not an arXiv RSS feed")
        announced_at = self.announced_at(feed)
        return self.parse_items(
            feed.entries,
            lambda entry: parse_rss_item(entry, announced_at),
            key_of=lambda e: e.get("id") or e.get("link"),
        )

    def announced_at(self, feed):
        """The feed's own date, which dates the items that have none; None when it has none, or
        none that can be used (logged: the items keep their own dates)."""
        try:
            return rss_date(feed.feed)
        except BadValue as exc:
            log.warning("feed date ignored source=%s reason=%s", self.name, printable(exc))
            return None


def search_query(categories, date=None):
    """``cat:cs.LG OR cat:cs.CL``, limited to one submission day when ``date`` is given."""
    query = " OR ".join(f"cat:{category}" for category in categories)
    if date:
        day = date.strftime("%Y%m%d")
        query = f"({query}) AND submittedDate:[{day}0000 TO {day}2359]"
    return query


def parse_api_entry(entry):
    """One Atom ``<entry>`` of the API (an lxml element) as a PaperRecord."""
    arxiv_id, version = split_arxiv_id(entry.findtext(f"{ATOM}id"))
    title = clean_prose(entry.findtext(f"{ATOM}title"))
    if not title:
        raise SkipItem("no title")
    names = clean_names(
        name
        for name in (a.findtext(f"{ATOM}name") for a in entry.iterfind(f"{ATOM}author"))
        if name
    )
    primary = entry.find(f"{ARXIV}primary_category")
    primary = clean_text(primary.get("term"), 40) if primary is not None else None
    terms = [clean_text(c.get("term"), 40) for c in entry.iterfind(f"{ATOM}category")]
    comment = clean_text(entry.findtext(f"{ARXIV}comment"))
    optional = OptionalFields()
    revised_at = optional.read("revised_at", parse_timestamp, entry.findtext(f"{ATOM}updated"))
    # Required when given: arXiv is the reference for it, and the ranker counts a paper's age
    # from it; without it a paper would rank as if first published when we saw it.
    published_at = parse_timestamp(entry.findtext(f"{ATOM}published"))
    return PaperRecord(
        key=arxiv_id,
        version=version or 1,
        title=title,
        abstract=clean_prose(entry.findtext(f"{ATOM}summary")),
        author_names=names or None,
        authors_count=len(names) or None,
        published_at=published_at,
        revised_at=revised_at,
        primary_category=primary,
        categories=primary_first(primary, terms),
        arxiv_url=ABS_URL.format(arxiv_id),
        pdf_url=api_pdf_link(entry) or PDF_URL.format(arxiv_id),
        comment=comment,
        journal_ref=clean_text(entry.findtext(f"{ARXIV}journal_ref"), 500),
        doi=clean_text(entry.findtext(f"{ARXIV}doi"), 200),
        withdrawn_at=withdrawal_time(comment, revised_at, published_at),
        dropped=optional.dropped,
    )


def withdrawal_time(comment, revised_at, published_at):
    """When a paper whose comment says it is withdrawn was withdrawn: its last revision, or,
    for an entry without dates, now; None for a paper not withdrawn."""
    if not (comment and WITHDRAWN_RE.match(comment)):
        return None
    return revised_at or published_at or timezone.now()


def api_pdf_link(entry):
    for link in entry.iterfind(f"{ATOM}link"):
        if link.get("title") == "pdf" or link.get("type") == "application/pdf":
            url = clean_url(link.get("href"))
            return url.replace("http://", "https://", 1) if url else None
    return None


def parse_rss_item(entry, announced_at):
    announce_type = (entry.get("arxiv_announce_type") or "new").strip().lower()
    if announce_type not in ADDING_TYPES | UPDATING_TYPES:
        raise SkipItem(f"unknown announce type {announce_type!r}")
    arxiv_id, version = split_arxiv_id(entry.get("id") or entry.get("summary"))
    title = clean_prose(entry.get("title"))
    if not title:
        raise SkipItem("no title")
    names = split_creators(entry.get("author"))
    categories = categories_of(entry)
    adds = announce_type in ADDING_TYPES
    optional = OptionalFields()
    # a replacement's announcement date is not the paper's publication date
    published_at = (
        optional.read("published_at", rss_date, entry) or announced_at
        if adds
        else None
    )
    return PaperRecord(
        key=arxiv_id,
        version=version,
        title=title,
        abstract=clean_prose(RSS_PREFIX_RE.sub("", entry.get("summary") or "")),
        author_names=names or None,
        authors_count=len(names) or None,
        published_at=published_at,
        primary_category=categories[0] if categories else None,
        categories=categories,
        arxiv_url=ABS_URL.format(arxiv_id),
        pdf_url=PDF_URL.format(f"{arxiv_id}v{version}" if version else arxiv_id),
        update_only=not adds,
        dropped=optional.dropped,
    )


def rss_date(element):
    """The ``pubDate`` of a feedparser item (or of the feed) in UTC; None when it has none.

    A date feedparser cannot read (it reads RFC 822 and ISO 8601), or one out of Python's
    years in UTC, is a ``BadValue``."""
    if element.get("published") and not element.get("published_parsed"):
        raise BadValue(f"not a date: {element['published'][:80]!r}")
    return struct_time_to_datetime(element.get("published_parsed"))


def split_creators(creators):
    """RSS ``dc:creator`` is one string: 'A. One, B. Two, C. Three' (or '... and D. Four')."""
    if not creators:
        return []
    return clean_names(re.split(r",\s*|\s+and\s+", creators))


def categories_of(entry):
    """The categories of a feedparser (RSS) entry, in feed order."""
    return primary_first(None, [clean_text(tag.get("term"), 40) for tag in entry.get("tags", [])])


def primary_first(primary, terms):
    ordered = dict.fromkeys([primary, *terms] if primary else terms)
    return [term for term in ordered if term] or None
