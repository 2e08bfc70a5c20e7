"""Hugging Face daily papers: the JSON API, and the papers page as its fallback.

Both deliver the same item shape: top-level ``title``, ``summary``,
``publishedAt`` (the day it was featured), ``thumbnail``, ``numComments``...
and ``paper`` with the arXiv ``id``, ``authors``, ``upvotes``, ``githubRepo``,
``githubStars``, ``ai_summary``, ``organization``, ``withdrawnAt``. Every field
but ``paper.id`` and a title is optional: a malformed one is dropped, the paper kept
(a malformed ``withdrawnAt`` still flags the paper withdrawn, see ``withdrawal_time``).
"""

import json

import lxml.etree
import lxml.html
from django.conf import settings
from django.utils import timezone

from .base import (
    ARXIV_ID_RE,
    BadValue,
    OptionalFields,
    PaperRecord,
    ParsedBatch,
    SkipItem,
    Source,
    clean_count,
    clean_keywords,
    clean_names,
    clean_prose,
    clean_text,
    clean_url,
    parse_timestamp,
)
from .http import HttpClient

HF_PAPER_URL = "https://huggingface.co/papers/{}"
ARXIV_ABS_URL = "https://arxiv.org/abs/{}"
PAGE_SIZE = 100  # the API's largest page
MAX_PAGES = 10
# The page is UTF-8 (its Content-Type says so). Without this, a page whose <meta charset>
# is missing or comes late is read as Latin-1 by libxml2, and every non-ASCII name garbled.
HTML_PARSER = lxml.html.HTMLParser(encoding="utf-8")


class HuggingFaceSource(Source):
    """What the two Hugging Face sources share: the item parser and field ownership."""

    authoritative_fields = frozenset(
        {
            "upvotes",
            "num_comments",
            "github_stars",
            "ai_summary",
            "ai_keywords",
            "organization",
            "thumbnail_url",
            "code_url",
            "project_url",
            "hf_url",
        }
    )
    records_signals = True
    required_signal = "upvotes"

    def parse_papers(self, items):
        return self.parse_items(items, parse_item, key_of=item_key)


class HuggingFaceApiSource(HuggingFaceSource):
    name = "hf"

    def fetch(self, *, date=None, categories=None, on_progress=None):
        client = HttpClient(self.name)
        batch, seen = ParsedBatch(), set()
        for page in range(MAX_PAGES):
            params = {"limit": PAGE_SIZE, "p": page}
            if date:
                params["date"] = date.isoformat()
            items = self.decode(client.get(settings.HF_API_URL, params=params))
            parsed = self.parse_papers(items)
            keys = {record.key for record in parsed.records}
            if page and keys and keys <= seen:  # paging ignored: this page repeats one already read
                break
            batch.extend(parsed)
            if on_progress:
                on_progress("download", len(batch.records) + len(batch.skipped), None)
            if len(items) < PAGE_SIZE or not keys:  # the last page, or nothing usable on it
                break
            seen |= keys
        return batch

    def parse(self, payload):
        return self.parse_papers(self.decode(payload))

    def decode(self, payload):
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            if payload.lstrip()[:1] == b"<":
                problem = "expected JSON, got an HTML or XML page (an error page?)"
                raise self.error(problem) from None
            raise self.error(f"invalid JSON (truncated or corrupt response): {exc}") from None
        if isinstance(data, dict) and "error" in data:
            raise self.error(f"API error: {clean_text(str(data['error']), 300)}")
        if not isinstance(data, list):
            raise self.error(f"expected a list of papers, got a JSON {type(data).__name__}")
        return data


class HuggingFacePageSource(HuggingFaceSource):
    """The daily papers page, which embeds the API's items as JSON in the
    ``data-props`` attribute of its ``DailyPapers`` element."""

    name = "hf-html"

    def fetch(self, *, date=None, categories=None, on_progress=None):
        url = settings.HF_PAPERS_PAGE_URL.rstrip("/")
        if date:
            url += f"/date/{date.isoformat()}"
        return self.parse(HttpClient(self.name).get(url))

    def parse(self, payload):
        try:
            document = lxml.html.fromstring(payload, parser=HTML_PARSER)
        except (lxml.etree.ParserError, ValueError) as exc:
            raise self.error(f"not an HTML page: {exc}") from None
        nodes = document.xpath('//*[@data-target="DailyPapers"][@data-props]')
        if not nodes:
            raise self.error("the page has no DailyPapers data (layout changed or an error page)")
        try:
            props = json.loads(nodes[0].get("data-props"))
        except (ValueError, RecursionError) as exc:
            raise self.error(f"the DailyPapers data is not valid JSON: {exc}") from None
        items = props.get("dailyPapers") if isinstance(props, dict) else props
        if not isinstance(items, list):
            raise self.error("the DailyPapers data has no list of papers")
        return self.parse_papers(items)


def item_key(item):
    paper = item.get("paper") if isinstance(item, dict) else None
    key = paper.get("id") if isinstance(paper, dict) else None
    return key if isinstance(key, str) else None


def parse_item(item):
    """One daily-papers item as a PaperRecord; SkipItem when it cannot be used."""
    if not isinstance(item, dict):
        raise SkipItem("not a JSON object")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise SkipItem("no paper object")
    arxiv_id = parse_paper_id(paper.get("id"))
    title = clean_prose(paper.get("title") or item.get("title"))
    if not title:
        raise SkipItem("no title")
    optional = OptionalFields()
    names = optional.read("author_names", author_names, paper.get("authors")) or []
    return PaperRecord(
        key=arxiv_id,
        title=title,
        abstract=optional.read("abstract", clean_prose, paper.get("summary") or item.get("summary")),
        author_names=names or None,
        authors_count=len(names) or None,
        organization=optional.read(
            "organization", organization_name, paper.get("organization") or item.get("organization")
        ),
        published_at=optional.read("published_at", parse_timestamp, paper.get("publishedAt")),
        upvotes=optional.read("upvotes", clean_count, paper.get("upvotes"), "upvotes"),
        num_comments=optional.read("num_comments", clean_count, item.get("numComments"), "numComments"),
        github_stars=optional.read("github_stars", clean_count, paper.get("githubStars"), "githubStars"),
        ai_summary=optional.read("ai_summary", clean_prose, paper.get("ai_summary")),
        ai_keywords=clean_keywords(paper.get("ai_keywords")),
        arxiv_url=ARXIV_ABS_URL.format(arxiv_id),
        hf_url=HF_PAPER_URL.format(arxiv_id),
        code_url=clean_url(paper.get("githubRepo")),
        project_url=clean_url(paper.get("projectPage")),
        thumbnail_url=clean_url(item.get("thumbnail")),
        withdrawn_at=withdrawal_time(optional, paper.get("withdrawnAt")),
        dropped=optional.dropped,
    )


def withdrawal_time(optional, value):
    """When the paper was withdrawn; None when ``withdrawnAt`` is absent, null or empty.

    A value that is there but not a timestamp is dropped as any malformed field is,
    yet the paper is still flagged, as of now: the field is only sent for a withdrawn
    paper, and one left unflagged would reach an edition.
    """
    withdrawn_at = optional.read("withdrawn_at", parse_timestamp, value)
    if withdrawn_at is None and "withdrawn_at" in optional.dropped:
        return timezone.now()
    return withdrawn_at


def parse_paper_id(value):
    """The canonical arXiv id of ``paper.id``, without a version suffix (2401.01234v2).

    The records stay unversioned: Hugging Face's title, abstract and authors (hidden ones
    left out) are its own, not that arXiv version's, so they only fill blanks. Carrying
    the version, they replaced arXiv's text at the same version, and the next arXiv fetch
    put it back, every day.
    """
    match = ARXIV_ID_RE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise SkipItem(f"paper.id is not an arXiv id: {value!r}")
    return match.group("id")


def author_names(authors):
    if authors is None:
        return []
    if not isinstance(authors, list):
        raise BadValue("paper.authors is not a list")
    return clean_names(
        a.get("name")
        for a in authors
        if isinstance(a, dict) and isinstance(a.get("name"), str) and not a.get("hidden")
    )


def organization_name(value):
    if isinstance(value, dict):
        return clean_text(value.get("fullname") or value.get("name"), 300)
    return clean_text(value, 300) if isinstance(value, str) else None
