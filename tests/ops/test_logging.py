"""Structured logs: one line per event, ids rather than addresses at INFO."""

import json
import logging

import pytest

from config.logging import JsonFormatter, LineFormatter, RedactEmailsFilter
from digest.models import Delivery
from digest.sending import claim_deliveries, record_sent, send_edition_to, start_sending_batch
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory


def record(message, *args, level=logging.INFO, exc_info=None):
    return logging.LogRecord("digest.sending", level, __file__, 1, message, args, exc_info)


@pytest.mark.django_db
def test_sending_a_digest_logs_ids_and_no_address_at_info(caplog, mailoutbox):
    edition = built_edition()
    subscribers = SubscriberFactory.create_batch(2, interests="")

    with caplog.at_level(logging.INFO):
        send_edition_to(edition, [s.pk for s in subscribers])

    info = [r.getMessage() for r in caplog.records if r.levelno <= logging.INFO]
    sent = [line for line in info if line.startswith("digest sent ")]
    assert len(sent) == 2 and len(mailoutbox) == 2
    assert all(f"subscriber={s.pk} " in " ".join(sent) for s in subscribers)
    assert all(f"edition={edition.pk} " in line and "esp_message_id=<" in line for line in sent)
    assert not [line for line in info for s in subscribers if s.email in line]


@pytest.mark.django_db
def test_a_batch_call_is_one_info_line_and_its_readers_are_debug_lines(caplog):
    edition = built_edition()
    subscribers = SubscriberFactory.create_batch(3)
    claim_deliveries(edition, [s.pk for s in subscribers])
    token, won = start_sending_batch(Delivery.objects.filter(edition=edition).values_list("pk", flat=True))
    rows = list(Delivery.objects.filter(pk__in=won))
    message_id = "<batch.1@mg.example.org>"

    with caplog.at_level(logging.DEBUG, logger="digest.sending"):
        record_sent(token, [(d, message_id) for d in rows])

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "sent" in r.getMessage()]
    assert [m for level, m in lines if level == logging.INFO] == [
        f"digests sent edition={edition.pk} recipients=3 esp_message_id={message_id}"
    ]
    assert sorted(m for level, m in lines if level == logging.DEBUG) == sorted(
        f"digest sent subscriber={d.subscriber_id} edition={edition.pk} esp_message_id={message_id} papers=0"
        for d in rows
    )
    assert Delivery.objects.filter(edition=edition, status=Delivery.Status.SENT).count() == 3


def test_the_filter_redacts_addresses_below_warning_but_keeps_message_ids():
    info = record("resent to %s esp_message_id=%s", "ada@example.org", "<20261120.1@mg.example.org>")
    warning = record("bounced %s", "ada@example.org", level=logging.WARNING)

    RedactEmailsFilter().filter(info)
    RedactEmailsFilter().filter(warning)

    assert info.getMessage() == "resent to <email redacted> esp_message_id=<20261120.1@mg.example.org>"
    assert warning.getMessage() == "bounced ada@example.org"


def test_line_format_keeps_a_traceback_on_the_event_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = LineFormatter().format(record("send failed subscriber=%s", 7, level=logging.ERROR, exc_info=sys.exc_info()))

    assert "\n" not in line
    assert "ERROR digest.sending send failed subscriber=7" in line and "ValueError: boom" in line


def test_json_format_lifts_the_key_value_pairs_into_fields():
    line = JsonFormatter().format(
        record("digest sent subscriber=%s edition=%s esp_message_id=%s papers=%d", 12, 3, "<a.1@mg.example.org>", 5)
    )

    event = json.loads(line)
    assert event["level"] == "INFO" and event["logger"] == "digest.sending"
    assert (event["subscriber"], event["edition"], event["esp_message_id"], event["papers"]) == (
        "12", "3", "<a.1@mg.example.org>", "5"
    )


def test_json_format_ends_a_value_at_a_closing_bracket():
    line = JsonFormatter().format(record("a response (method=%s status=%d); dropping [reason=%s]", "HEAD", 200, "rfc"))

    event = json.loads(line)
    assert (event["method"], event["status"], event["reason"]) == ("HEAD", "200", "rfc")


def test_logging_settings_route_every_record_through_the_redacting_handler(settings):
    handler = settings.LOGGING["handlers"]["console"]

    assert handler["filters"] == ["redact_emails"]
    assert settings.LOGGING["root"]["handlers"] == ["console"]
    assert settings.CELERY_WORKER_HIJACK_ROOT_LOGGER is False  # workers log the same way


@pytest.mark.parametrize("name", ["django", "django.request", "django.server"])
def test_djangos_own_records_are_printed_once_through_the_redacting_handler(name):
    """Django's default handlers (its console one under DEBUG, the dev server's) would print
    each record a second time, in another format and past the redacting filter."""
    logger = logging.getLogger(name)
    handlers = []
    while logger is not None:
        handlers += [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]  # caplog's
        logger = logger.parent if logger.propagate else None
    assert [type(h).__name__ for h in handlers] == ["StreamHandler"]
    assert [f.__class__.__name__ for f in handlers[0].filters] == ["RedactEmailsFilter"]
