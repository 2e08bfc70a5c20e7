"""Subscribers to and from CSV, for the admin's export action and import page.

Export cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``,
``@`` …) are prefixed with an apostrophe; import removes it again. Import
validates every row with the same rules as the signup form.
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from config.times import in_utc

from .forms import DEFAULT_SEND_HOUR, DEFAULT_TIMEZONE, PreferencesForm
from .models import Subscriber
from .validation import normalise_email, plain_line

EXPORT_COLUMNS = [
    "email",
    "status",
    "frequency",
    "max_papers",
    "interests",
    "categories",
    "send_hour",
    "timezone",
    "always_send_top",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "last_delivery_at",
    "consent_note",
]
IMPORT_COLUMNS = {
    "email",
    "interests",
    "categories",
    "frequency",
    "max_papers",
    "send_hour",
    "timezone",
    "always_send_top",
    "confirmed_at",
    "consent_note",
}
IGNORED_ON_IMPORT = set(EXPORT_COLUMNS) - IMPORT_COLUMNS  # an export can be imported as is
# An export's ``status`` column is not imported as such, but a reader who left or whose address
# may not be mailed is not imported at all: their ``confirmed_at`` would otherwise make them
# active. A paused reader with a ``confirmed_at`` comes back paused (``ImportRow.paused``).
NOT_IMPORTED_STATUSES = {
    Subscriber.Status.UNSUBSCRIBED,
    Subscriber.Status.BOUNCED,
    Subscriber.Status.COMPLAINED,
    Subscriber.Status.SUPPRESSED,
}
MAX_IMPORT_ROWS = 5000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TRUE_WORDS = {"1", "true", "yes", "y"}
FALSE_WORDS = {"", "0", "false", "no", "n"}  # an empty cell: the default, no


class ImportFileError(Exception):
    """The file as a whole cannot be read: wrong encoding, no email column, too many rows."""


@dataclass
class ImportRow:
    line: int
    email: str
    preferences: dict
    confirmed_at: datetime | None = None
    consent_note: str = ""
    paused: bool = False  # confirmed, and paused in the file: imported paused, not active


@dataclass
class ParsedImport:
    rows: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # (line, message)
    ignored_columns: list = field(default_factory=list)
    total: int = 0  # data rows read


# --- Export -----------------------------------------------------------------


def spreadsheet_safe(value):
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def export_row(subscriber):
    values = {
        "email": subscriber.email,
        "status": subscriber.status,
        "frequency": subscriber.frequency,
        "max_papers": subscriber.max_papers,
        "interests": subscriber.interests,
        "categories": " ".join(subscriber.categories or []),
        "send_hour": subscriber.send_hour,
        "timezone": subscriber.timezone,
        "always_send_top": "true" if subscriber.always_send_top else "false",
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "last_delivery_at": _iso(getattr(subscriber, "last_delivery_at", None)),
        "consent_note": subscriber.consent_note,
    }
    return [spreadsheet_safe(values[column]) for column in EXPORT_COLUMNS]


def _iso(value):
    return value.isoformat() if value else ""


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value):
        return value


def export_lines(subscribers):
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for subscriber in subscribers:
        yield writer.writerow(export_row(subscriber))


# --- Import -----------------------------------------------------------------


def decode_upload(upload):
    """The text of an uploaded file, or ImportFileError if it is not UTF-8."""
    try:
        return upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(
            "The file is not UTF-8 text. Save it as “CSV UTF-8” and try again."
        ) from None


def parse_import(upload):
    """Read an uploaded CSV into validated rows and per-line errors."""
    return parse_import_text(decode_upload(upload))


def other_separator(header_line):
    """What a header without an email column is separated by instead of commas, if it shows:
    spreadsheets in many locales save "CSV" with semicolons."""
    for mark, name in ((";", "semicolons"), ("\t", "tabs")):
        if mark in header_line and "," not in header_line:
            return name
    return None


def _records(text):
    """(headers, iterator of (line, record)): the file-level checks, no row validation.

    Raises ImportFileError for a file without an email column, one over
    MAX_IMPORT_ROWS, or one that is not CSV (while iterating).
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        headers = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise ImportFileError(f"The file is not valid CSV: {error}") from None
    if "email" not in headers:
        separator = other_separator(text.partition("\n")[0])
        if separator:
            raise ImportFileError(
                f"The first row must be a header with an “email” column; this file seems to separate "
                f"its columns with {separator}: save it with commas (“CSV UTF-8”) and try again."
            )
        raise ImportFileError("The first row must be a header with an “email” column.")
    reader.fieldnames = headers

    def records():
        try:
            for number, record in enumerate(reader, start=1):
                if number > MAX_IMPORT_ROWS:
                    raise ImportFileError(
                        f"At most {MAX_IMPORT_ROWS} rows per file: split it, please."
                    )
                yield reader.line_num, record
        except csv.Error as error:
            raise ImportFileError(f"The file is not valid CSV: {error}") from None

    return headers, records()


def check_import_text(text):
    """The number of data rows, after the file-level checks only (raises ImportFileError).

    Quick enough for the upload request; rows are validated when they are imported.
    """
    _, records = _records(text)
    return sum(1 for _ in records)


def parse_import_text(text):
    """Validate every row of a CSV text: rows to import and per-line errors."""
    headers, records = _records(text)
    parsed = ParsedImport(
        ignored_columns=sorted(set(headers) - IMPORT_COLUMNS - IGNORED_ON_IMPORT - {""})
    )
    for line, record in records:
        parsed.total += 1
        try:
            parsed.rows.append(_parse_record(line, record))
        except RowError as error:
            parsed.errors.append((line, str(error)))
    return parsed


class RowError(Exception):
    pass


def _cell(record, name):
    value = record.get(name)
    if not isinstance(value, str):  # missing, or extra cells collected under None
        return ""
    value = value.strip()
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES) else value


def _parse_record(line, record):
    try:
        email = normalise_email(_cell(record, "email"))
    except ValidationError as error:
        raise RowError(" ".join(error.messages)) from None
    status = _cell(record, "status").lower()
    if status in NOT_IMPORTED_STATUSES:
        raise RowError(f"{email}: status {status} in the file: may not be emailed, so not imported.")
    data = {
        "interests": _cell(record, "interests"),
        "categories": _cell(record, "categories").replace(",", " ").replace(";", " ").split(),
        "frequency": _cell(record, "frequency") or Subscriber.Frequency.DAILY,
        "max_papers": _cell(record, "max_papers") or "10",
        "send_hour": _cell(record, "send_hour") or str(DEFAULT_SEND_HOUR),
        "timezone": _cell(record, "timezone") or DEFAULT_TIMEZONE,
    }
    always = _cell(record, "always_send_top").lower()
    if always not in TRUE_WORDS | FALSE_WORDS:
        raise RowError(
            f"{email}: always_send_top “{always[:20]}” is neither true nor false (true/false, yes/no, 1/0)."
        )
    if always in TRUE_WORDS:
        data["always_send_top"] = "on"
    form = PreferencesForm(data)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        raise RowError(f"{email}: {problems}")
    confirmed_at = _parse_consent_date(_cell(record, "confirmed_at"))
    return ImportRow(
        line=line,
        email=email,
        preferences=form.cleaned_data,
        confirmed_at=confirmed_at,
        consent_note=plain_line(_cell(record, "consent_note"))[:200],
        # Without a confirmed_at there is no consent to pause: pending, like any such row.
        paused=status == Subscriber.Status.PAUSED and confirmed_at is not None,
    )


def _parse_consent_date(value):
    """The ``confirmed_at`` cell as an aware time in UTC (read in UTC unless it names an offset);
    None when empty. A time whose offset takes it before year 1 in UTC is refused (``config.times``)."""
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        day = parse_date(value) if moment is None else None
    except ValueError:  # well formed, but not a real date (2024-02-30)
        moment = day = None
    if moment is None and day is None:
        raise RowError(f"confirmed_at “{value[:40]}” is not a date like 2024-03-01.")
    moment = moment or datetime.combine(day, time(0, 0))
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    moment = in_utc(moment)
    if moment is None:
        raise RowError(f"confirmed_at “{value[:40]}” is before the year 1 in UTC.")
    if moment > timezone.now():
        raise RowError(f"confirmed_at {value[:40]} is in the future.")
    return moment
