"""The bundled corpus (papers/data/papers.jsonl): real papers for offline demos.

The corpus has no arXiv ids, so each paper is keyed by a stable synthetic id
derived from its title (see ``corpus_key``): re-importing finds the same rows.
"""

import hashlib
import json
from datetime import date
from pathlib import Path

from django.utils.text import slugify

from .base import (
    BadValue,
    OptionalFields,
    PaperRecord,
    SkipItem,
    Source,
    clean_count,
    clean_prose,
    clean_text,
    day_to_datetime,
)

CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "papers.jsonl"
SLUG_LENGTH = 60


def corpus_key(title):
    """``corpus:<slug of the title, ~60 chars>-<10 hex chars of sha1(normalised title)>``."""
    normalised = " ".join(title.split()).lower()
    slug = slugify(normalised)[:SLUG_LENGTH].strip("-") or "paper"
    digest = hashlib.sha1(normalised.encode("utf-8")).hexdigest()[:10]
    return f"corpus:{slug}-{digest}"


class BundledSource(Source):
    name = "bundled"
    authoritative_fields = frozenset(
        {"abstract", "authors_count", "organization", "published_at", "upvotes"}
    )

    def fetch(self, *, date=None, categories=None, on_progress=None):
        return self.parse(self.read_file(CORPUS_PATH))

    def parse(self, payload):
        items = [self.decode_line(number, line) for number, line in self.lines(payload)]
        return self.parse_items(items, self.parse_item, key_of=self.key_of)

    def lines(self, payload):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"corpus is not UTF-8: {exc}") from exc
        # Lines end at a newline only: str.splitlines() also cuts at U+2028, U+2029 and U+0085,
        # which JSON allows raw inside a string.
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                yield number, line

    def decode_line(self, number, line):
        """A corrupt line means a damaged corpus: refuse the file rather than import part of it."""
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise self.error(f"invalid JSON on line {number}: {exc.msg}") from exc
        except RecursionError:
            raise self.error(f"invalid JSON on line {number}: nested too deeply") from None

    @staticmethod
    def key_of(item):
        title = item.get("title") if isinstance(item, dict) else None
        return corpus_key(title) if isinstance(title, str) and title.strip() else None

    def parse_item(self, item):
        if not isinstance(item, dict):
            raise SkipItem("not a JSON object")
        written = clean_text(item.get("title"))
        if not written:
            raise SkipItem("no title")
        optional = OptionalFields()
        return PaperRecord(
            key=corpus_key(written),  # the title as written: a paper keeps its key (``key_of``)
            title=clean_prose(written),
            abstract=optional.read("abstract", clean_prose, item.get("abstract")),
            authors_count=optional.read(
                "authors_count", clean_count, item.get("authors_count"), "authors_count"
            ),
            organization=optional.read("organization", clean_text, item.get("organization"), 300),
            # Required when given, as arXiv's: the ranker counts a paper's age from it.
            published_at=parse_published(item.get("published")),
            upvotes=optional.read("upvotes", clean_count, item.get("upvotes"), "upvotes"),
            dropped=optional.dropped,
        )


def parse_published(value):
    if value in (None, ""):
        return None
    try:
        return day_to_datetime(date.fromisoformat(value))
    except (TypeError, ValueError):
        raise BadValue(f"published is not a YYYY-MM-DD date: {value!r}") from None
