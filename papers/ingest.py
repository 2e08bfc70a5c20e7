"""Merge parsed records into the database in bulk: one row per paper.

The rules, applied field by field (``merge_record``):

* A blank value (None, "", []) never overwrites anything: a source never
  blanks a field another source filled.
* Title, abstract, authors, version and the PDF link follow the arXiv version:
  a record carrying a version at least as new as the stored one replaces them,
  an older or unversioned record only fills blanks.
* Every other field is replaced by the sources that are its reference
  (``Source.authoritative_fields``: Hugging Face for upvotes, comments, code,
  stars, AI summary, organisation...; arXiv for categories, comment, DOI)
  and only filled by the others.
* ``withdrawn_at`` is set once and never cleared.
* A field the source sent malformed was dropped while parsing (``PaperRecord.dropped``):
  it is blank, so the stored value stays; a paper whose upvotes, comments or stars were
  dropped gets no PaperSignal for the day (its stored or default value is not the day's).

The work per batch is a fixed number of bulk queries (chunked), not one per paper.
"""

from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from .models import Author, Authorship, Paper, PaperSignal
from .sources.base import PAPER_FIELDS

VERSIONED_FIELDS = frozenset({"title", "abstract", "author_names", "authors_count", "version", "pdf_url"})
FILL_ONCE_FIELDS = frozenset({"withdrawn_at"})
SIGNAL_FIELDS = ("upvotes", "num_comments", "github_stars")
CHUNK = 1000
INGEST_LOCK_ID = 0x7061706572  # any constant: serialises concurrent batches on PostgreSQL


@dataclass
class StoreResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def is_blank(value):
    return value is None or value == "" or value == []


def merge_record(paper, record, source):
    """Apply ``record`` to ``paper`` in memory; return the names of the fields that changed."""
    newer_or_same_version = record.version is not None and record.version >= paper.version
    changed = []
    for name in PAPER_FIELDS:
        value = getattr(record, name)
        current = getattr(paper, name)
        if is_blank(value) or value == current:
            continue
        if name in VERSIONED_FIELDS:
            replaces = newer_or_same_version or name in source.authoritative_fields
        elif name in FILL_ONCE_FIELDS:
            replaces = False
        else:
            replaces = name in source.authoritative_fields
        if replaces or is_blank(current):
            setattr(paper, name, value)
            changed.append(name)
    return changed


def new_paper(record, source, now):
    paper = Paper(arxiv_id=record.key, source=source.name, first_seen_at=now, updated_at=now)
    for name in PAPER_FIELDS:
        value = getattr(record, name)
        if not is_blank(value):
            setattr(paper, name, value)
    if paper.authors_count is None and paper.author_names:
        paper.authors_count = len(paper.author_names)
    return paper


def drop_duplicates(records):
    """Keep one record per key (the newest version; the first one on a tie)."""
    kept, skipped = {}, []
    for record in records:
        previous = kept.get(record.key)
        if previous is None:
            kept[record.key] = record
            continue
        if (record.version or 0) > (previous.version or 0):
            kept[record.key] = record
        skipped.append((record.key, "duplicate in this response"))
    return list(kept.values()), skipped


def store_batch(records, source, *, today=None, on_progress=None):
    """Create, update or leave each paper of the batch, in one transaction."""
    now = timezone.now()
    today = today or timezone.localdate()
    records, skipped = drop_duplicates(records)
    result = StoreResult(skipped=skipped)
    with transaction.atomic():
        lock_ingestion()
        existing = load_existing([r.key for r in records])
        created, updated, authors_changed = [], {}, []
        for done, record in enumerate(records, start=1):
            paper = existing.get(record.key)
            if paper is None and record.update_only:
                result.skipped.append((record.key, "update for a paper not in the database"))
            elif paper is None:
                paper = new_paper(record, source, now)
                existing[record.key] = paper
                created.append(paper)
            else:
                changed = merge_record(paper, record, source)
                if changed:
                    updated[paper.arxiv_id] = (paper, changed)
                    if "author_names" in changed:
                        authors_changed.append(paper)
                else:
                    result.unchanged += 1
            if on_progress and (done % 500 == 0 or done == len(records)):
                on_progress("store", done, len(records))
        Paper.objects.bulk_create(created, batch_size=CHUNK)
        save_changes(updated.values(), now)
        link_authors(created + authors_changed, replace=authors_changed)
        if source.records_signals:
            observed = [r for r in records if r.key in existing and not drops_a_signal(r)]
            record_signals([existing[r.key] for r in observed], today)
    result.created, result.updated = len(created), len(updated)
    return result


def lock_ingestion():
    """Two batches at once (the morning task and an operator's command) would race
    on inserting the same new paper; a transaction-level advisory lock queues them."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INGEST_LOCK_ID])


def load_existing(keys):
    papers = {}
    for start in range(0, len(keys), CHUNK * 5):
        chunk = keys[start : start + CHUNK * 5]
        papers.update((p.arxiv_id, p) for p in Paper.objects.filter(arxiv_id__in=chunk))
    return papers


def save_changes(updates, now):
    """One bulk UPDATE (per chunk) over the union of the changed fields: the other
    fields of each row are written back unchanged, which keeps the query count bounded."""
    papers, fields = [], {"updated_at"}
    for paper, changed in updates:
        paper.updated_at = now
        papers.append(paper)
        fields.update(changed)
    if papers:
        Paper.objects.bulk_update(papers, sorted(fields), batch_size=CHUNK)


def link_authors(papers, replace=()):
    """Authors and ordered authorships for ``papers``; ``replace`` lists papers whose old
    authorships go first. Authors are shared rows keyed by name."""
    papers = [p for p in papers if p.author_names]
    if replace:
        Authorship.objects.filter(paper__in=[p.pk for p in replace]).delete()
    names = sorted({name for p in papers for name in p.author_names})
    if not names:
        return
    Author.objects.bulk_create(
        [Author(name=name) for name in names], ignore_conflicts=True, batch_size=CHUNK
    )
    ids = {}
    for start in range(0, len(names), CHUNK * 5):
        chunk = names[start : start + CHUNK * 5]
        ids.update(Author.objects.filter(name__in=chunk).values_list("name", "id"))
    Authorship.objects.bulk_create(
        [
            Authorship(paper_id=p.pk, author_id=ids[name], position=position)
            for p in papers
            for position, name in enumerate(p.author_names)
        ],
        batch_size=CHUNK * 5,
    )


def drops_a_signal(record):
    """Whether the source sent one of the record's signals malformed (so it was dropped)."""
    return any(name in record.dropped for name in SIGNAL_FIELDS)


def record_signals(papers, day):
    """One PaperSignal per paper per day: today's values replace an earlier fetch's."""
    PaperSignal.objects.bulk_create(
        [
            PaperSignal(
                paper_id=p.pk, date=day, **{name: getattr(p, name) for name in SIGNAL_FIELDS}
            )
            for p in papers
        ],
        update_conflicts=True,
        unique_fields=["paper", "date"],
        update_fields=[*SIGNAL_FIELDS, "recorded_at"],
        batch_size=CHUNK,
    )
