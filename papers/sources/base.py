"""The interface every paper source implements, and the record it produces.

A source turns one response (bytes from the network, or a saved file) into a
``ParsedBatch``: clean ``PaperRecord``s plus the items it skipped and why, and the
optional fields it dropped and why. It never touches the database;
``papers.ingest`` merges batches into it.
"""

import logging
import re
import unicodedata
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from pathlib import Path

from config.times import in_utc

from .latex import readable_latex

log = logging.getLogger(__name__)

# New-style ids (0704.0001 onwards) and old-style ids (hep-th/9901001, math.GT/0309136).
# ASCII digits only, and archive names of arXiv's length: the key must fit Paper.arxiv_id.
ARXIV_ID_RE = re.compile(
    r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z\-]{0,15}(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d{1,4}))?",
    re.ASCII,
)
# Characters no text field should keep: C0/C1 controls (PostgreSQL refuses NUL outright).
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Bidirectional embeddings, overrides and isolates (LRE…RLO, LRI…PDI). Right-to-left text needs
# none of them; left in a title, an unclosed override reverses whatever follows it in a subject,
# a preheader or an admin list ("Trojan Source"-style spoofing).
BIDI_CONTROL_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Lone surrogates (no UTF-8 can hold them), and U+FFFE and U+FFFF, which XML 1.0 does not allow:
# kept in a title, either would make every private Atom feed listing that digest unreadable.
NOT_TEXT_RE = re.compile("[\ud800-\udfff\ufffe\uffff]")
MAX_COUNT = 2**31 - 1  # the largest value of a PositiveIntegerField on PostgreSQL


class SourceError(Exception):
    """A source could not deliver a usable response; the message names the source."""

    def __init__(self, source, problem):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class SkipItem(Exception):
    """Raised by item parsers for one malformed item; the batch goes on without it."""


class BadValue(SkipItem):
    """Raised by field parsers for a malformed value. Uncaught, it skips the item (a required
    field); read through ``OptionalFields``, the field is dropped and the item kept."""


@dataclass
class PaperRecord:
    """One paper as one source reports it. ``None`` means "this source does not say"."""

    key: str
    title: str
    version: int | None = None
    abstract: str | None = None
    author_names: list[str] | None = None
    authors_count: int | None = None
    organization: str | None = None
    published_at: datetime | None = None
    revised_at: datetime | None = None
    upvotes: int | None = None
    num_comments: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: list[str] | None = None
    primary_category: str | None = None
    categories: list[str] | None = None
    arxiv_url: str | None = None
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    withdrawn_at: datetime | None = None
    update_only: bool = False  # e.g. an arXiv RSS "replace": never creates a paper
    #: Optional fields whose value was malformed and left out: field name -> reason.
    dropped: dict[str, str] = field(default_factory=dict)


# The Paper fields a record can carry (everything but the key, the flags and the drops).
PAPER_FIELDS = tuple(
    f.name for f in fields(PaperRecord) if f.name not in {"key", "update_only", "dropped"}
)


@dataclass
class ParsedBatch:
    records: list[PaperRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str, str]] = field(default_factory=list)  # (key, field, reason)

    def extend(self, other):
        self.records.extend(other.records)
        self.skipped.extend(other.skipped)
        self.dropped.extend(other.dropped)


class OptionalFields:
    """Reads the optional fields of one item: a malformed value (``BadValue``) becomes None,
    and its reason is kept in ``dropped`` (the record's ``dropped``), instead of skipping."""

    def __init__(self):
        self.dropped = {}

    def read(self, name, parse, *args):
        """``parse(*args)``, or None (with the reason noted under ``name``) when it is malformed."""
        try:
            return parse(*args)
        except BadValue as exc:
            self.dropped[name] = str(exc)
            return None


class Source:
    """Base class of the sources. Subclasses set the class attributes and
    implement ``parse`` (one saved or downloaded response) and ``fetch``."""

    name = ""
    #: Fields this source is the reference for: its values replace what another
    #: source stored. Every other field it reports only fills a blank.
    authoritative_fields = frozenset()
    #: Whether this source observes community signals (one PaperSignal per paper per day).
    records_signals = False
    #: A signal field the source reports for every paper it lists (0 included). An answer of
    #: many papers without it is the source's format changing (``services.refuse_batch_without_signal``).
    required_signal = None

    def fetch(self, *, date=None, categories=None, on_progress=None):
        """Download and parse; returns a ParsedBatch or raises SourceError."""
        raise NotImplementedError

    def parse(self, payload):
        """Parse one response body (bytes); returns a ParsedBatch or raises SourceError."""
        raise NotImplementedError

    def load(self, *, date=None, categories=None, from_file=None, on_progress=None):
        if from_file:
            return self.parse(self.read_file(from_file))
        return self.fetch(date=date, categories=categories, on_progress=on_progress)

    def read_file(self, path):
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise self.error(f"cannot read {path}: {exc.strerror or exc}") from exc

    def error(self, problem):
        return SourceError(self.name, problem)

    def parse_items(self, items, parse_item, key_of=None):
        """Apply ``parse_item`` to each item, skipping (with a logged reason) the malformed ones."""
        batch = ParsedBatch()
        for position, item in enumerate(items, start=1):
            try:
                record = parse_item(item)
            except SkipItem as exc:
                key = (key_of(item) if key_of else None) or f"item {position}"
                log.warning("skipped item source=%s key=%s reason=%s", self.name, printable(key), printable(exc))
                batch.skipped.append((key, str(exc)))
                continue
            batch.records.append(record)
            self.note_dropped(batch, record)
        return batch

    def note_dropped(self, batch, record):
        """Log and list each optional field of ``record`` that was dropped as malformed."""
        for name, reason in record.dropped.items():
            log.warning(
                "dropped field source=%s key=%s field=%s reason=%s",
                self.name, printable(record.key), name, printable(reason),
            )
            batch.dropped.append((record.key, name, reason))


# --- Small cleaning helpers shared by the parsers ---------------------------


def printable(text):
    """``text`` with the characters a terminal would act on or an encoder refuse (controls,
    bidi and other format characters, lone surrogates) written as escapes, e.g. ``\\x1b``.

    For echoing a source's values into logs and command output: an item's id
    comes from the source, and must not colour, reorder or split an operator's lines.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def normalise_whitespace(text):
    """Collapse runs of whitespace (arXiv wraps titles and abstracts) into single spaces."""
    return " ".join(str(text).split()) if text is not None else None


def clean_text(text, max_length=None):
    """Plain text, whitespace normalised, NFC, without bidi controls, optionally cut; '' becomes None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise BadValue(f"expected text, got {type(text).__name__}")
    text = BIDI_CONTROL_RE.sub("", CONTROL_RE.sub(" ", NOT_TEXT_RE.sub("\ufffd", text)))
    text = normalise_whitespace(unicodedata.normalize("NFC", text))
    if max_length:
        text = text[:max_length]
    return text or None


def clean_prose(text, max_length=None):
    """``clean_text`` for a title, an abstract or a summary, its LaTeX pieces made readable
    first (``latex.readable_latex``: ``Schr\\"odinger`` is stored as "Schrödinger")."""
    return clean_text(readable_latex(text) if isinstance(text, str) else text, max_length)


def clean_url(url, max_length=500):
    """An http(s) URL or None: anything else (javascript:, relative, too long) is dropped."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not re.fullmatch(r"https?://[^\s/]+\S*", url, re.IGNORECASE) or len(url) > max_length:
        return None
    if CONTROL_RE.search(url) or NOT_TEXT_RE.search(url):
        return None
    return url


def clean_count(value, name):
    """A non-negative integer, or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadValue(f"{name} is not a non-negative integer: {value!r}")
    if value > MAX_COUNT:
        raise BadValue(f"{name} is out of range: {value}")
    return value


def clean_names(names, max_length=300):
    return [n[:max_length] for n in (clean_text(n) for n in names) if n]


def clean_keywords(values):
    if not isinstance(values, list):
        return None
    return [k for k in (clean_text(v, 100) for v in values if isinstance(v, str)) if k] or None


def split_arxiv_id(raw):
    """'http://arxiv.org/abs/2501.01234v2' -> ('2501.01234', 2); version None when absent."""
    match = ARXIV_ID_RE.search(str(raw or ""))
    if not match:
        raise SkipItem(f"not an arXiv id: {str(raw)[:80]!r}")
    version = match.group("version")
    return match.group("id"), int(version) if version else None


def parse_timestamp(value):
    """An ISO 8601 timestamp (or YYYY-MM-DD) as an aware datetime in UTC; None when absent.

    A time whose offset takes it past year 9999 or before year 1 in UTC is refused
    (``config.times``)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadValue(f"not a timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadValue(f"not a timestamp: {value!r}") from None
    if not parsed.tzinfo:
        return parsed.replace(tzinfo=timezone.utc)
    utc = in_utc(parsed)
    if utc is None:
        raise BadValue(f"timestamp out of range: {value!r}")
    return utc


def struct_time_to_datetime(value):
    """feedparser's UTC ``*_parsed`` struct_time as an aware datetime; None when absent.

    feedparser brings a date with an offset into UTC itself, which can take it to year 10000
    or year 0: such a time is refused (``BadValue``), as ``parse_timestamp`` refuses it."""
    if not value:
        return None
    try:
        return datetime(*value[:6], tzinfo=timezone.utc)
    except ValueError:
        raise BadValue(f"timestamp out of range: year {value[0]}") from None


def day_to_datetime(day: date):
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
