"""The admin's CSV import as a background task: queued at once, imported by the worker."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from subscriptions import csv_io, services, tasks
from subscriptions.models import Subscriber, SubscriberImport, Suppression
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

IMPORT = "admin:subscriptions_subscriber_import"
CHANGELIST = "admin:subscriptions_subscriber_changelist"


def upload(text, name="subscribers.csv"):
    data = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, content_type="text/csv")


@pytest.fixture
def queued(monkeypatch):
    """With a broker: ``delay`` hands the task over and returns; collect what was queued."""
    calls = []
    monkeypatch.setattr(tasks.import_subscribers, "delay", lambda *args: calls.append(args))
    return calls


MIXED = (
    "email,interests,frequency,confirmed_at,consent_note\n"
    "new@example.org,RLHF,weekly,,\n"
    "old@example.org,diffusion,daily,2024-03-01,2024 newsletter form\n"
    "ADA@example.org,,,,\n"
    "deleted@example.org,,,,\n"
    "not-an-address,,,,\n"
    "new@EXAMPLE.org,,,,\n"
)


def test_the_upload_answers_at_once_with_the_import_queued(admin_client, subscriber, queued):
    response = admin_client.post(reverse(IMPORT), {"file": upload(MIXED)}, follow=True)

    record = SubscriberImport.objects.get()
    assert queued == [(record.pk,)]
    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)
    html = response.content.decode()
    assert "Import queued" in html
    assert reverse("admin:subscriptions_subscriberimport_change", args=[record.pk]) in html
    assert (record.status, record.filename, record.rows_total) == ("queued", "subscribers.csv", 6)
    assert bytes(record.csv_data).decode() == MIXED
    assert record.uploaded_by.username == "admin"
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ada@example.org"]
    assert mail.outbox == []


def test_the_task_imports_the_file_and_records_the_outcome(admin_client, subscriber, queued):
    services.delete_subscriber(SubscriberFactory(email="deleted@example.org"))
    admin_client.post(reverse(IMPORT), {"file": upload(MIXED)})
    record = SubscriberImport.objects.get()

    summary = tasks.import_subscribers(record.pk)

    assert summary == {
        "pending": 1, "active": 1, "paused": 0, "existing": 2, "suppressed": 1, "invalid": 1
    }
    record.refresh_from_db()
    assert record.status == "done"
    assert record.started_at <= record.finished_at
    assert (record.rows_total, record.rows_valid, record.rows_done) == (6, 5, 5)
    assert [line for line, _ in record.row_errors] == [6]
    assert bytes(record.csv_data) == b""  # the file is not kept once imported
    new = Subscriber.objects.get(email="new@example.org")
    assert (new.status, new.frequency, new.interests) == ("pending", "weekly", "RLHF")
    assert new.confirmation_sent_at is not None
    old = Subscriber.objects.get(email="old@example.org")
    assert (old.status, old.confirmed_at.date().isoformat()) == ("active", "2024-03-01")
    assert old.consent_note == "2024 newsletter form"
    assert [m.to for m in mail.outbox] == [["new@example.org"]]
    assert "/confirm/" in mail.outbox[0].body


def test_a_confirmed_paused_row_is_imported_paused_and_an_unconfirmed_one_pending(
    admin_client, queued
):
    text = (
        "email,status,confirmed_at\n"
        "paused@example.org,paused,2024-03-01\n"
        "unconfirmed@example.org,paused,\n"
        "active@example.org,active,2024-03-01\n"
    )
    admin_client.post(reverse(IMPORT), {"file": upload(text)})
    record = SubscriberImport.objects.get()

    summary = tasks.import_subscribers(record.pk)

    assert summary == {
        "pending": 1, "active": 1, "paused": 1, "existing": 0, "suppressed": 0, "invalid": 0
    }
    record.refresh_from_db()
    assert (record.imported_pending, record.imported_active, record.imported_paused) == (1, 1, 1)
    assert dict(Subscriber.objects.values_list("email", "status")) == {
        "paused@example.org": "paused",
        "unconfirmed@example.org": "pending",
        "active@example.org": "active",
    }
    paused = Subscriber.objects.get(email="paused@example.org")
    assert paused.confirmed_at.date().isoformat() == "2024-03-01"
    assert [m.to for m in mail.outbox] == [["unconfirmed@example.org"]]
    page = admin_client.get(reverse("admin:subscriptions_subscriberimport_change", args=[record.pk]))
    assert "Imported paused" in page.content.decode()


def test_the_confirmation_link_of_an_imported_subscriber_works(admin_client, client, queued):
    admin_client.post(reverse(IMPORT), {"file": upload("email\nlink@example.org\n")})
    tasks.import_subscribers(SubscriberImport.objects.get().pk)
    path = "/confirm/" + mail.outbox[0].body.split("/confirm/", 1)[1].split("/", 1)[0] + "/"
    assert client.post(path).status_code == 200
    assert Subscriber.objects.get(email="link@example.org").status == "active"


def test_a_task_delivered_twice_imports_once(admin_client, queued):
    admin_client.post(reverse(IMPORT), {"file": upload("email\na@example.org\nb@example.org\n")})
    pk = SubscriberImport.objects.get().pk
    assert tasks.import_subscribers(pk)["pending"] == 2
    assert tasks.import_subscribers(pk) is None
    record = SubscriberImport.objects.get()
    assert (record.status, record.imported_pending, record.skipped_existing) == ("done", 2, 0)
    assert Subscriber.objects.count() == 2 and len(mail.outbox) == 2


def test_a_task_redelivered_after_its_worker_died_resumes_after_the_last_batch(
    admin_client, queued, monkeypatch
):
    monkeypatch.setattr(services, "IMPORT_BATCH_SIZE", 2)
    text = "email\n" + "".join(f"r{n}@example.org\n" for n in range(5))
    admin_client.post(reverse(IMPORT), {"file": upload(text)})
    record = SubscriberImport.objects.get()
    # The worker imported the first batch, saved its progress and was killed.
    parsed = csv_io.parse_import_text(text)
    services.import_rows(parsed.rows[:2])
    SubscriberImport.objects.filter(pk=record.pk).update(
        status="running", started_at=timezone.now(), rows_done=2, imported_pending=2
    )
    mail.outbox.clear()

    tasks.import_subscribers(record.pk)

    record.refresh_from_db()
    assert (record.status, record.rows_done, record.imported_pending) == ("done", 5, 5)
    assert record.skipped_existing == 0
    assert sorted(m.to[0] for m in mail.outbox) == [f"r{n}@example.org" for n in (2, 3, 4)]
    assert Subscriber.objects.count() == 5


def test_progress_is_saved_after_every_batch(admin_client, queued, monkeypatch):
    monkeypatch.setattr(services, "IMPORT_BATCH_SIZE", 2)
    seen = []
    real = services.import_rows

    def watched(rows, already):
        seen.append(SubscriberImport.objects.values_list("status", "rows_done").get())
        return real(rows, already)

    monkeypatch.setattr(services, "import_rows", watched)
    text = "email\n" + "".join(f"r{n}@example.org\n" for n in range(5))
    admin_client.post(reverse(IMPORT), {"file": upload(text)})
    tasks.import_subscribers(SubscriberImport.objects.get().pk)
    assert seen == [("running", 0), ("running", 2), ("running", 4)]


def test_without_a_broker_the_import_runs_in_the_request_and_says_how_it_went(
    admin_client, subscriber
):
    services.delete_subscriber(SubscriberFactory(email="deleted@example.org"))
    response = admin_client.post(reverse(IMPORT), {"file": upload(MIXED)}, follow=True)
    html = response.content.decode()
    assert (
        "Imported 1 pending (confirmation sent), 1 active and 0 paused with earlier consent; "
        "skipped 2 existing and 1 suppressed address(es)."
    ) in html
    assert "row(s) not imported: line 6" in html
    record = SubscriberImport.objects.get()
    assert record.status == "done"
    assert reverse("admin:subscriptions_subscriberimport_change", args=[record.pk]) in html


def test_a_file_that_cannot_be_imported_is_refused_on_the_page_and_stores_nothing(
    admin_client, queued, monkeypatch
):
    monkeypatch.setattr(csv_io, "MAX_IMPORT_ROWS", 3)
    for text, reason in [
        (b"email\n\xff@x.org\n", "not UTF-8"),
        ("mail,name\na@example.org,A\n", "“email” column"),
        ("email\n" + "a@example.org\n" * 4, "At most 3 rows"),
        ("email\nx@example.org,\x00" + "x" * 200_000 + "\n", "valid CSV"),  # over the field limit
    ]:
        response = admin_client.post(reverse(IMPORT), {"file": upload(text)})
        assert response.status_code == 200
        assert reason in response.content.decode()
    assert not SubscriberImport.objects.exists() and queued == []


def test_an_unreachable_broker_fails_the_import_visibly(admin_client, monkeypatch):
    def refuse(*args):
        raise ConnectionError("no broker")

    monkeypatch.setattr(tasks.import_subscribers, "delay", refuse)
    response = admin_client.post(reverse(IMPORT), {"file": upload(MIXED)}, follow=True)
    assert "could not be queued" in response.content.decode().lower()
    record = SubscriberImport.objects.get()
    assert record.status == "failed" and bytes(record.csv_data) == b""
    assert Subscriber.objects.count() == 0


def test_a_nul_in_a_cell_or_a_header_is_stored_and_reported(admin_client, queued):
    text = "email,in\x00terests,timezone\nnul@example.org,x,Europe/Ber\x00lin\nok@example.org,,\n"
    admin_client.post(reverse(IMPORT), {"file": upload(text)})
    record = SubscriberImport.objects.get()
    tasks.import_subscribers(record.pk)
    record.refresh_from_db()
    assert record.status == "done"
    assert record.imported_pending == 1 and len(record.row_errors) == 1
    assert "\x00" not in str(record.row_errors) + str(record.ignored_columns)
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ok@example.org"]


def test_a_consent_note_with_control_characters_is_kept_as_plain_text_and_the_import_done(admin_client, queued):
    """A NUL in the note reached the batch's INSERT, which PostgreSQL refused: the import failed
    with every other row of it. A note is one line of plain text: controls become spaces."""
    text = (
        "email,confirmed_at,consent_note\n"
        "first@example.org,2024-01-01,old form\n"
        "nul@example.org,2024-01-01,\"form\x00 2024\r\nline two\x1b[31m\"\n"
        "last@example.org,,\n"
    )
    admin_client.post(reverse(IMPORT), {"file": upload(text)})
    record = SubscriberImport.objects.get()
    tasks.import_subscribers(record.pk)
    record.refresh_from_db()
    assert (record.status, record.failure) == ("done", "")
    assert Subscriber.objects.count() == 3
    assert Subscriber.objects.get(email="nul@example.org").consent_note == "form 2024 line two [31m"


# --- The batched import ------------------------------------------------------------


def rows(text):
    return csv_io.parse_import_text(text).rows


def test_a_batch_costs_a_few_queries_whatever_its_size(django_assert_max_num_queries):
    Suppression.objects.create(email_hash="0" * 64, reason="bounced")
    SubscriberFactory(email="there@example.org")
    lines = [f"p{n}@example.org,," for n in range(60)]
    lines += [f"a{n}@example.org,2024-01-01,old form" for n in range(40)]
    batch = rows("email,confirmed_at,consent_note\n" + "\n".join(lines) + "\nthere@example.org,,\n")
    # suppressions, existing, the insert, created rows (SQLite splits the INSERT in a few)
    with django_assert_max_num_queries(6) as captured:
        counts = services.import_rows(batch)
    statements = [query["sql"].split()[0] for query in captured.captured_queries]
    assert statements.count("SELECT") == 3 and set(statements) == {"SELECT", "INSERT"}
    assert counts[services.ImportResult.PENDING] == 60
    assert counts[services.ImportResult.ACTIVE] == 40
    assert counts[services.ImportResult.EXISTS] == 1
    assert len(mail.outbox) == 60
    assert Subscriber.objects.filter(status="active", consent_note="old form").count() == 40


def test_the_batch_follows_import_subscriber_rules(subscriber):
    services.delete_subscriber(SubscriberFactory(email="gone@example.org"))
    services.suppress_email("bounce@example.org", "bounced")
    counts = services.import_rows(
        rows(
            "email,confirmed_at\n"
            "Ada@Example.org,\n"  # exists, whatever the case
            "gone@example.org,2020-01-01\n"  # deleted by its owner: suppressed
            "bounce@example.org,\n"
            "twice@example.org,\n"
            "TWICE@example.org,2020-01-01\n"  # the same address again in the file
        )
    )
    R = services.ImportResult
    assert dict(counts) == {R.EXISTS: 2, R.SUPPRESSED: 2, R.PENDING: 1}
    assert set(Subscriber.objects.values_list("email", "status")) == {
        ("ada@example.org", "active"),
        ("twice@example.org", "pending"),
    }


def test_an_address_that_signed_up_meanwhile_is_left_alone(monkeypatch):
    """Between the lookup and the insert someone signs up: the insert skips their row."""
    SubscriberFactory(email="race@example.org", status="pending", confirmed_at=None)
    monkeypatch.setattr(services, "_existing_addresses", lambda lowered: set())
    counts = services.import_rows(rows("email\nrace@example.org\nfree@example.org\n"))
    assert counts[services.ImportResult.EXISTS] == 1
    assert counts[services.ImportResult.PENDING] == 1
    assert [m.to for m in mail.outbox] == [["free@example.org"]]
    assert Subscriber.objects.get(email="race@example.org").confirmation_sent_at is None


def test_a_refused_confirmation_email_is_counted_and_its_slot_released(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("mail system down")

    monkeypatch.setattr(services, "send_email", refuse)
    counts = services.import_rows(rows("email\ndown@example.org\n"))
    assert counts[services.ImportResult.PENDING] == 1
    assert counts["confirmation_failed"] == 1
    row = Subscriber.objects.get()
    assert (row.status, row.confirmation_sent_at) == ("pending", None)
    monkeypatch.undo()
    assert services.send_confirmation(row)  # "Resend confirmation" works at once


def test_a_batch_sends_its_confirmations_over_one_connection_and_a_failure_does_not_stop_the_rest(monkeypatch):
    opened, sent = [], []

    class Connection:
        def __init__(self):
            opened.append(self)

        def send_messages(self, messages):
            if messages[0].to == ["down@example.org"]:
                raise OSError("connection dropped")
            sent.append((self, messages[0].to[0]))
            return 1

        def close(self):
            pass

    monkeypatch.setattr(services, "get_connection", Connection)
    counts = services.import_rows(rows("email\na@example.org\nb@example.org\ndown@example.org\nc@example.org\n"))

    assert counts[services.ImportResult.PENDING] == 4 and counts["confirmation_failed"] == 1
    assert len(opened) == 1
    assert [to for _, to in sent] == ["a@example.org", "b@example.org", "c@example.org"]
    assert {connection for connection, _ in sent} == {opened[0]}


# --- The import record in the admin ---------------------------------------------------


def test_the_import_page_shows_progress_and_skipped_rows_read_only(admin_client, queued):
    admin_client.post(reverse(IMPORT), {"file": upload(MIXED)})
    record = SubscriberImport.objects.get()
    url = reverse("admin:subscriptions_subscriberimport_change", args=[record.pk])
    assert "waiting for a worker (6 rows)" in admin_client.get(url).content.decode()

    tasks.import_subscribers(record.pk)
    html = admin_client.get(url).content.decode()
    assert "5 of 5 valid rows (6 in the file)" in html
    assert "<li>line 6: " in html
    for label in ("Imported pending", "Skipped existing", "Skipped suppressed", "Invalid rows"):
        assert label in html, label
    assert 'name="_save"' not in html  # read-only
    assert admin_client.post(url, {"status": "done"}).status_code == 403
    assert admin_client.get(reverse("admin:subscriptions_subscriberimport_add")).status_code == 403
    listing = admin_client.get(reverse("admin:subscriptions_subscriberimport_changelist"))
    assert str(record) in listing.content.decode()


def test_hostile_error_text_is_escaped_on_the_import_page(admin_client, queued):
    admin_client.post(
        reverse(IMPORT), {"file": upload("email,confirmed_at\nx@example.org,<script>x</script>\n")}
    )
    record = SubscriberImport.objects.get()
    tasks.import_subscribers(record.pk)
    url = reverse("admin:subscriptions_subscriberimport_change", args=[record.pk])
    html = admin_client.get(url).content.decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html


def test_old_imports_need_no_worker_to_be_listed(admin_client):
    SubscriberImport.objects.create(
        filename="old.csv", status="done", finished_at=timezone.now() - timedelta(days=1)
    )
    response = admin_client.get(reverse("admin:subscriptions_subscriberimport_changelist"))
    assert response.status_code == 200 and "old.csv" in response.content.decode()


def test_a_file_separated_by_semicolons_is_refused_with_a_message_that_says_so():
    with pytest.raises(csv_io.ImportFileError, match="separate its columns with semicolons"):
        csv_io.parse_import_text("Email;Interests\nada@example.org;RLHF\n")
    with pytest.raises(csv_io.ImportFileError, match="with tabs"):
        csv_io.parse_import_text("Email\tInterests\nada@example.org\tRLHF\n")
    with pytest.raises(csv_io.ImportFileError, match=r"“email” column\.$"):
        csv_io.parse_import_text("name,interests\nAda,RLHF\n")


@pytest.mark.parametrize("cell, expected", [("yes", True), ("TRUE", True), ("1", True), ("no", False),
                                            ("false", False), ("0", False), ("", False)])
def test_always_send_top_reads_the_usual_words_for_yes_and_no(cell, expected):
    (row,) = rows(f"email,always_send_top\nada@example.org,{cell}\n")
    assert row.preferences["always_send_top"] is expected


def test_an_always_send_top_that_is_neither_yes_nor_no_is_a_row_error_not_a_silent_no():
    parsed = csv_io.parse_import_text("email,always_send_top\nada@example.org,maybe\nbob@example.org,yes\n")
    assert [row.email for row in parsed.rows] == ["bob@example.org"]
    [(line, message)] = parsed.errors
    assert line == 2 and "“maybe” is neither true nor false" in message


@pytest.mark.parametrize("cell", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:30:00+01:00"])
def test_a_confirmed_at_before_year_1_in_utc_is_a_row_error_and_the_rest_are_imported(cell):
    """Such a time is valid in Python with its offset; stored as it is, no query could read the row back."""
    parsed = csv_io.parse_import_text(f"email,confirmed_at\nada@example.org,{cell}\nbob@example.org,2024-03-01\n")

    assert [row.email for row in parsed.rows] == ["bob@example.org"]
    [(line, message)] = parsed.errors
    assert line == 2 and message == f"confirmed_at “{cell}” is before the year 1 in UTC."
    services.import_rows(parsed.rows)
    assert [(s.email, s.confirmed_at.year) for s in Subscriber.objects.all()] == [("bob@example.org", 2024)]


def test_a_confirmed_at_with_an_offset_postgresql_refuses_is_imported_in_utc():
    """PostgreSQL takes offsets to ±15:59: sent as it was, the time failed the batch's insert."""
    services.import_rows(rows("email,confirmed_at\nada@example.org,2024-03-01T10:00:00+20:00\n"))

    assert Subscriber.objects.get().confirmed_at.isoformat() == "2024-02-29T14:00:00+00:00"
