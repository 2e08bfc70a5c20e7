"""Fetching papers: run one source into the database, or every configured source."""

import datetime
import logging
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from .ingest import store_batch
from .models import FetchRun
from .sources import get_source
from .sources.base import SourceError, printable

log = logging.getLogger(__name__)


@dataclass
class FetchReport:
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str, str]] = field(default_factory=list)  # (key, field, reason)
    fetched: int = 0  # items the source delivered, before de-duplication and skips
    run_id: int | None = None

    def summary(self):
        return (
            f"{self.source}: {self.created} new, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped{self.dropped_summary()} "
            f"({self.fetched} read)"
        )

    def dropped_summary(self):
        """', N fields dropped', or nothing when every field was readable."""
        count = len(self.dropped)
        return f", {count} field{'s' if count != 1 else ''} dropped" if count else ""

    def as_dict(self):
        data = asdict(self)
        data["skipped"] = [list(pair) for pair in self.skipped]
        data["dropped"] = [list(triple) for triple in self.dropped]
        return data


def fetch_from_source(name, *, date=None, categories=None, from_file=None, on_progress=None):
    """Fetch (or replay ``from_file``) one source and store its batch in one transaction.

    Records a FetchRun either way. Raises SourceError when the source fails; the
    batch is then rolled back whole (the failed run is still recorded).
    ``on_progress(stage, done, total)`` is called as pages download and records store.
    """
    started_at = timezone.now()
    try:
        if isinstance(date, str):
            date = parse_day(name, date)
        source = get_source(name)
        batch = source.load(
            date=date, categories=categories, from_file=from_file, on_progress=on_progress
        )
        refuse_unreadable_batch(name, batch)
        refuse_batch_without_signal(source, batch)
        stored = store_batch(batch.records, source, on_progress=on_progress)
    except Exception as exc:
        record_failed_run(name, started_at, exc)
        raise
    report = FetchReport(
        source=name,
        created=stored.created,
        updated=stored.updated,
        unchanged=stored.unchanged,
        skipped=batch.skipped + stored.skipped,
        dropped=batch.dropped,
        fetched=len(batch.records) + len(batch.skipped),
    )
    report.run_id = record_run(report, started_at).pk
    log.info("fetched %s", report.summary())
    return report


def refuse_unreadable_batch(name, batch):
    """An answer with items but not one readable is the source's format changing, not a
    quiet day: it fails, so that the fallback is tried and the health check sees it."""
    if batch.skipped and not batch.records:
        reason = printable(batch.skipped[0][1])  # a reason may quote the source's own bytes
        count = len(batch.skipped)
        items = "its one item" if count == 1 else f"any of its {count} items"
        raise SourceError(name, f"could not read {items} (the first: {reason})")


# Fewer papers than this are too few to tell a format change from a day's answer.
SIGNAL_CHECK_MIN_PAPERS = 10


def refuse_batch_without_signal(source, batch):
    """An answer of ten or more papers, not one of them with its upvote count (absent or
    malformed in every item), is a renamed or retyped field, not a day without votes.
    Stored, it would rank the day on stale or zero signals without anyone noticing; it
    fails instead, so that the fallback is tried and the health check sees it."""
    name, records = source.required_signal, batch.records
    if not name or len(records) < SIGNAL_CHECK_MIN_PAPERS:
        return
    if all(getattr(record, name) is None for record in records):
        raise SourceError(
            source.name,
            f"none of its {len(records)} papers has a readable {name} (the format changed?)",
        )


def parse_day(name, value):
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise SourceError(name, f"not a date (YYYY-MM-DD): {value!r}") from None


def record_run(report, started_at):
    return FetchRun.objects.create(
        source=report.source,
        started_at=started_at,
        finished_at=timezone.now(),
        status=FetchRun.Status.OK,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        skipped=len(report.skipped),
    )


def record_failed_run(name, started_at, exc):
    """Record the failure; if the database itself is what failed, log instead, so the
    original error (not this one) is what the caller sees."""
    error = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
    try:
        FetchRun.objects.create(
            source=name[:32],
            started_at=started_at,
            finished_at=timezone.now(),
            status=FetchRun.Status.FAILED,
            error=error,
        )
    except DatabaseError:
        log.exception("could not record the failed fetch of %s: %s", name, error)


# When a source fails in the daily fetch, this one is tried in its place.
FALLBACKS = {"hf": "hf-html"}


def fetch_configured_sources(names=None):
    """Fetch every source in settings.PAPER_SOURCES; one failing does not stop the others.

    A failed source with a fallback (the Hugging Face API -> its papers page) is
    followed by the fallback. Returns ``{source: report dict}``, with
    ``{"source": ..., "error": ...}`` for failures: JSON-serialisable, for the
    Celery result and the daily job summary.
    """
    names = list(settings.PAPER_SOURCES if names is None else names)
    summary = {}
    for name in names:
        summary[name] = fetch_quietly(name)
        fallback = FALLBACKS.get(name)
        if "error" in summary[name] and fallback and fallback not in names:
            log.warning("trying %s in place of %s", fallback, name)
            summary[fallback] = fetch_quietly(fallback)
    return summary


def fetch_quietly(name):
    """fetch_from_source, with any failure logged and returned instead of raised."""
    try:
        return fetch_from_source(name).as_dict()
    except SourceError as exc:
        log.error("fetch failed: %s", exc)
        return {"source": name, "error": str(exc)}
    except Exception as exc:  # a bug in one source must not cost the others their fetch
        log.exception("fetch crashed source=%s", name)
        return {"source": name, "error": f"{type(exc).__name__}: {exc}"}
