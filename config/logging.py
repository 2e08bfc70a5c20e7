"""Structured logging: one line per event, and no email addresses below WARNING.

Paperboy's log lines name things by id: ``digest sent subscriber=12
edition=3 esp_message_id=<…>``. ``LineFormatter`` prints them as they are,
prefixed by time, level and logger, with any traceback folded onto the same
line so a log shipper never splits one event. ``JsonFormatter`` (``LOG_FORMAT=json``)
prints one JSON object per line and lifts the ``key=value`` pairs of the
message into fields, so ``subscriber``, ``edition`` and ``esp_message_id`` can
be filtered on directly.

``RedactEmailsFilter`` is the safety net behind the rule that INFO and DEBUG
lines carry ids, never addresses: a message that would still contain one is
logged with the address replaced.
"""

import json
import logging
import re

EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
# key=value pairs; a value may be <bracketed> (message ids) or a bare token, which ends at a
# space, a comma, a semicolon or a closing bracket ("(method=HEAD status=200)").
KEY_VALUE_RE = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)=(<[^>\s]*>|[^\s,;)\]]+)")
REDACTED = "<email redacted>"
RESERVED_FIELDS = {"time", "level", "logger", "message", "exception"}


class RedactEmailsFilter(logging.Filter):
    """Replace the email addresses in INFO and DEBUG records."""

    def filter(self, record):
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        redacted = EMAIL_RE.sub(redact_match, message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_match(match):
    """Keep a logged ``message_id=<id@domain>``: it names a message, not a person."""
    before = match.string[: match.start()].lower()
    if before.endswith(("message_id=<", "message-id: <")):
        return match.group(0)
    return REDACTED


def one_line(text):
    return text.replace("\r", "").replace("\n", " \u23ce ")


class LineFormatter(logging.Formatter):
    """``2026-11-20 06:00:01,123 INFO digest.sending digest sent subscriber=12 …`` on one line."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record):
        return one_line(super().format(record))


def fields_of(message):
    """The ``key=value`` pairs of a message, e.g. {'subscriber': '12', 'edition': '3'}."""
    return {
        key: value for key, value in KEY_VALUE_RE.findall(message) if key not in RESERVED_FIELDS
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the message's fields."""

    def format(self, record):
        message = record.getMessage()
        event = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **fields_of(message),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)
