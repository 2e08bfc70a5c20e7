"""arXiv: the query API (Atom, paginated) and the daily announcement RSS feed.

Both are parsed with feedparser (HTML sanitising off: titles and abstracts are
plain text, and whatever markup they contain is data). arXiv asks for at least
3 seconds between calls: settings.ARXIV_MIN_INTERVAL_SECONDS.
"""

import io
import re

import feedparser
from django.conf import settings

from .base import (
    PaperRecord,
    ParsedBatch,
    SkipItem,
    Source,
    clean_names,
    clean_text,
    clean_url,
    split_arxiv_id,
    struct_time_to_datetime,
)
from .http import HttpClient

ABS_URL = "https://arxiv.org/abs/{}"
PDF_URL = "https://arxiv.org/pdf/{}"
WITHDRAWN_RE = re.compile(r"^\s*(?:this (?:paper|submission|article) has been withdrawn|withdrawn\b)", re.I)
RSS_PREFIX_RE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*(?:Abstract:\s*)?", re.I)
ADDING_TYPES = {"new", "cross"}
UPDATING_TYPES = {"replace", "replace-cross"}


class ArxivFeedSource(Source):
    """What the API and the RSS sources share: feed parsing and field ownership."""

    feed_kind = ""  # "atom" or "rss": feedparser's version prefix

    def parse_feed(self, payload):
        feed = feedparser.parse(io.BytesIO(payload), sanitize_html=False, resolve_relative_uris=False)
        if feed.get("bozo") and not isinstance(
            feed.get("bozo_exception"), feedparser.CharacterEncodingOverride
        ):
            raise self.error(f"invalid XML (truncated or corrupt response): {feed.bozo_exception}")
        if not (feed.get("version") or "").startswith(self.feed_kind):
            raise self.error(f"the response is not an arXiv {self.feed_kind.upper()} feed")
        return feed

    def client(self):
        return HttpClient(self.name, min_interval=settings.ARXIV_MIN_INTERVAL_SECONDS)


class ArxivApiSource(ArxivFeedSource):
    name = "arxiv"
    feed_kind = "atom"
    authoritative_fields = frozenset(
        {
            "primary_category", "categories", "arxiv_url", "pdf_url", "comment",
            "journal_ref", "doi", "published_at", "revised_at",
        }
    )

    def fetch(self, *, date=None, categories=None, on_progress=None):
        """Newest submissions first, page by page, up to settings.ARXIV_MAX_RESULTS."""
        client = self.client()
        query = search_query(categories or settings.ARXIV_CATEGORIES, date)
        limit = settings.ARXIV_MAX_RESULTS
        batch, start = ParsedBatch(), 0
        while start < limit:
            params = {
                "search_query": query,
                "sortBy": "submittedDate",
                "sortOrder": "descending",
                "start": start,
                "max_results": min(settings.ARXIV_PAGE_SIZE, limit - start),
            }
            page, total = self.parse_page(client.get(settings.ARXIV_API_URL, params=params))
            batch.extend(page)
            received = len(page.records) + len(page.skipped)
            start += received
            if on_progress:
                on_progress("download", start, min(total, limit))
            if received == 0 or start >= total:
                break
        return batch

    def parse(self, payload):
        return self.parse_page(payload)[0]

    def parse_page(self, payload):
        """One API response: (ParsedBatch, total results of the query)."""
        feed = self.parse_feed(payload)
        for entry in feed.entries:
            if "/api/errors" in entry.get("id", ""):
                raise self.error(f"API error: {clean_text(entry.get('summary')) or 'unknown'}")
        batch = self.parse_items(feed.entries, parse_api_entry, key_of=lambda e: e.get("id"))
        try:
            total = int(feed.feed.get("opensearch_totalresults", len(feed.entries)))
        except ValueError:
            total = len(feed.entries)
        return batch, total


class ArxivRssSource(ArxivFeedSource):
    """The daily announcements: ``new`` and ``cross`` add papers, ``replace``
    updates the version of a paper already stored. Empty on weekends."""

    name = "arxiv-rss"
    feed_kind = "rss"
    authoritative_fields = frozenset({"categories", "arxiv_url"})

    def fetch(self, *, date=None, categories=None, on_progress=None):
        if date:
            raise self.error("the RSS feed only has the latest announcement; --date is not supported")
        url = settings.ARXIV_RSS_URL.rstrip("/") + "/" + "+".join(categories or settings.ARXIV_CATEGORIES)
        return self.parse(self.client().get(url))

    def parse(self, payload):
        feed = self.parse_feed(payload)
        announced_at = struct_time_to_datetime(feed.feed.get("published_parsed"))
        return self.parse_items(
            feed.entries,
            lambda entry: parse_rss_item(entry, announced_at),
            key_of=lambda e: e.get("id") or e.get("link"),
        )


def search_query(categories, date=None):
    """``cat:cs.LG OR cat:cs.CL``, limited to one submission day when ``date`` is given."""
    query = " OR ".join(f"cat:{category}" for category in categories)
    if date:
        day = date.strftime("%Y%m%d")
        query = f"({query}) AND submittedDate:[{day}0000 TO {day}2359]"
    return query


def parse_api_entry(entry):
    arxiv_id, version = split_arxiv_id(entry.get("id"))
    title = clean_text(entry.get("title"))
    if not title:
        raise SkipItem("no title")
    names = clean_names(a.get("name") for a in entry.get("authors", []) if a.get("name"))
    comment = clean_text(entry.get("arxiv_comment"))
    revised_at = struct_time_to_datetime(entry.get("updated_parsed"))
    return PaperRecord(
        key=arxiv_id,
        version=version or 1,
        title=title,
        abstract=clean_text(entry.get("summary")),
        author_names=names or None,
        authors_count=len(names) or None,
        published_at=struct_time_to_datetime(entry.get("published_parsed")),
        revised_at=revised_at,
        primary_category=clean_text((entry.get("arxiv_primary_category") or {}).get("term"), 40),
        categories=categories_of(entry),
        arxiv_url=ABS_URL.format(arxiv_id),
        pdf_url=pdf_link(entry) or PDF_URL.format(arxiv_id),
        comment=comment,
        journal_ref=clean_text(entry.get("arxiv_journal_ref"), 500),
        doi=clean_text(entry.get("arxiv_doi"), 200),
        withdrawn_at=revised_at if comment and WITHDRAWN_RE.match(comment) else None,
    )


def parse_rss_item(entry, announced_at):
    announce_type = (entry.get("arxiv_announce_type") or "new").strip().lower()
    if announce_type not in ADDING_TYPES | UPDATING_TYPES:
        raise SkipItem(f"unknown announce type {announce_type!r}")
    arxiv_id, version = split_arxiv_id(entry.get("id") or entry.get("summary"))
    title = clean_text(entry.get("title"))
    if not title:
        raise SkipItem("no title")
    names = split_creators(entry.get("author"))
    categories = categories_of(entry)
    adds = announce_type in ADDING_TYPES
    return PaperRecord(
        key=arxiv_id,
        version=version,
        title=title,
        abstract=clean_text(RSS_PREFIX_RE.sub("", entry.get("summary") or "")),
        author_names=names or None,
        authors_count=len(names) or None,
        # a replacement's announcement date is not the paper's publication date
        published_at=(struct_time_to_datetime(entry.get("published_parsed")) or announced_at)
        if adds
        else None,
        primary_category=categories[0] if categories else None,
        categories=categories,
        arxiv_url=ABS_URL.format(arxiv_id),
        pdf_url=PDF_URL.format(arxiv_id),
        update_only=not adds,
    )


def split_creators(creators):
    """RSS ``dc:creator`` is one string: 'A. One, B. Two, C. Three' (sometimes '... and D. Four')."""
    if not creators:
        return []
    return clean_names(re.split(r",\s*|\s+and\s+", creators))


def categories_of(entry):
    terms = [clean_text(tag.get("term"), 40) for tag in entry.get("tags", [])]
    primary = (entry.get("arxiv_primary_category") or {}).get("term")
    ordered = dict.fromkeys([primary, *terms] if primary else terms)
    return [term for term in ordered if term] or None


def pdf_link(entry):
    for link in entry.get("links", []):
        if link.get("title") == "pdf" or link.get("type") == "application/pdf":
            url = clean_url(link.get("href"))
            return url.replace("http://", "https://", 1) if url else None
    return None
