"""Every public form, fed hostile input: a clean 302/400, never a 500 or a half-made row.

Signup, resend, preferences and the unsubscribe POST (its body is free-form:
RFC 8058 one-click or our own button). Header-injection strings never reach an
email header; oversized and malformed bodies are a 400.
"""

from urllib.parse import urlencode

import pytest
from django.core import mail
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.models import Subscriber
from subscriptions.validation import MAX_INTERESTS, MAX_INTEREST_LENGTH, timezone_names
from tests.factories import SubscriberFactory
from tests.subscriptions.helpers import preferences_path, unsubscribe_path

from .strategies import HARDENING, HOSTILE_STRINGS, hostile_text

pytestmark = pytest.mark.django_db

FIELDS = ["email", "interests", "categories", "frequency", "max_papers", "send_hour", "timezone",
          "always_send_top", "website"]
HEADER_INJECTIONS = [
    "ada@example.org\r\nBcc: victim@example.org",
    "ada@example.org\nBcc: victim@example.org",
    "ada@example.org%0d%0aBcc:victim@example.org",
    "ada@example.org\rCc: victim@example.org",
    "\"ada\r\nBcc: victim@example.org\"@example.org",
    "ada@example.org\u2028Bcc: victim@example.org",
    "ada@example.org\x00victim@example.org",
    "ada@example.org, victim@example.org",
    "ada@example.org;victim@example.org",
    "Ada <ada@example.org>",
]

form_values = st.one_of(hostile_text, st.lists(hostile_text, max_size=3))
form_data = st.dictionaries(st.sampled_from(FIELDS), form_values, max_size=len(FIELDS))


@pytest.fixture
def unlimited(settings):
    settings.RATELIMIT_ENABLE = False


def post_form(path, data, client=None):
    """POST ``data`` urlencoded as raw bytes: lone surrogates go out as the invalid UTF-8
    a broken client would send (the test client refuses to encode them)."""
    pairs = [
        (name, item.encode("utf-8", "surrogatepass"))
        for name, value in data.items()
        for item in (value if isinstance(value, list) else [value])
    ]
    return (client or Client()).post(
        path, urlencode(pairs), content_type="application/x-www-form-urlencoded"
    )


def assert_sane(subscriber):
    """A stored row follows every rule of the forms."""
    subscriber.full_clean(exclude=["categories"])
    assert subscriber.email == subscriber.email.strip()
    assert not any(ord(ch) < 0x20 for ch in subscriber.email)
    terms = subscriber.interest_terms
    assert len(terms) <= MAX_INTERESTS and all(len(t) <= MAX_INTEREST_LENGTH for t in terms)
    assert "\x00" not in subscriber.interests
    assert subscriber.timezone in timezone_names() and 0 <= subscriber.send_hour <= 23
    assert isinstance(subscriber.categories, list)


def assert_no_injected_headers():
    for message in mail.outbox:
        assert len(message.to) == 1 and not message.cc and not message.bcc
        headers = message.message().as_string().split("\n\n", 1)[0]
        assert "victim@example.org" not in headers
        assert "X-Injected" not in headers


# --- Signup and resend ------------------------------------------------------------


@HARDENING
@given(data=form_data)
def test_signup_answers_hostile_fields_with_a_redirect_or_a_400_and_whole_rows(unlimited, data):
    before = Subscriber.objects.count()
    mail.outbox.clear()

    response = post_form("/subscribe/", data)

    assert response.status_code in (302, 400)
    created = Subscriber.objects.count() - before
    if response.status_code == 400:
        assert created == 0 and not mail.outbox
    else:
        assert created in (0, 1) and len(mail.outbox) <= 1
    for subscriber in Subscriber.objects.all():
        assert_sane(subscriber)
    assert_no_injected_headers()


@pytest.mark.parametrize("email", HEADER_INJECTIONS)
def test_header_injection_in_the_address_is_refused_and_mails_nobody(unlimited, client, email):
    response = client.post("/subscribe/", {"email": email})

    assert response.status_code == 400
    assert not Subscriber.objects.exists() and not mail.outbox


@pytest.mark.parametrize("text", ["diffusion\r\nBcc: victim@example.org", "subject\nX-Injected: yes"])
def test_header_injection_in_interests_stays_text_in_the_body(unlimited, client, text):
    response = client.post("/subscribe/", {"email": "ada@example.org", "interests": text})

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert_no_injected_headers()
    assert_sane(Subscriber.objects.get())


@HARDENING
@given(data=form_data)
def test_resend_answers_hostile_fields_with_a_redirect_or_a_400(unlimited, data):
    if not Subscriber.objects.filter(email="pending@example.org").exists():
        SubscriberFactory(email="pending@example.org", status="pending", confirmed_at=None)
    mail.outbox.clear()

    response = post_form("/subscribe/resend/", data)

    assert response.status_code in (200, 302, 400)  # 200: an empty POST shows the form again
    assert len(mail.outbox) <= 1
    assert_no_injected_headers()


# --- Preferences and unsubscribe ----------------------------------------------------


@HARDENING
@given(data=form_data)
def test_preferences_answer_hostile_fields_with_a_redirect_or_a_400_and_keep_the_row_sane(
    unlimited, data
):
    subscriber = Subscriber.objects.filter(email="prefs@example.org").first() or SubscriberFactory(
        email="prefs@example.org"
    )

    response = post_form(preferences_path(subscriber), data)

    assert response.status_code in (302, 400)
    subscriber.refresh_from_db()
    assert_sane(subscriber)
    assert subscriber.email == "prefs@example.org"  # no form field reaches the address


@HARDENING
@given(
    body=st.one_of(
        st.binary(max_size=500),
        st.sampled_from([s.encode("utf-8", "surrogatepass") for s in HOSTILE_STRINGS]),
    ),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xx",
            "multipart/form-data",
            "text/plain",
            "application/json",
            "application/x-www-form-urlencoded; charset=klingon",
        ]
    ),
)
def test_unsubscribe_accepts_any_post_body_and_unsubscribes(body, content_type):
    subscriber = SubscriberFactory()

    response = Client().generic("POST", unsubscribe_path(subscriber), body, content_type=content_type)

    assert response.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.status == "unsubscribed"


# --- Oversized and malformed bodies ---------------------------------------------------


def oversized(settings):
    return "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)


@pytest.mark.parametrize("path", ["/subscribe/", "/subscribe/resend/"])
def test_a_body_over_the_size_limit_is_a_400_and_creates_nothing(unlimited, client, settings, path):
    response = client.post(path, {"email": "big@example.org", "interests": oversized(settings)})

    assert response.status_code in (400, 413)
    assert not Subscriber.objects.exists() and not mail.outbox


def test_a_preferences_body_over_the_size_limit_is_a_400_and_changes_nothing(
    unlimited, client, settings
):
    subscriber = SubscriberFactory(interests="diffusion models")

    response = client.post(preferences_path(subscriber), {"interests": oversized(settings)})

    assert response.status_code in (400, 413)
    subscriber.refresh_from_db()
    assert subscriber.interests == "diffusion models"


def test_an_oversized_one_click_body_still_unsubscribes(client, settings):
    subscriber = SubscriberFactory()

    response = client.post(unsubscribe_path(subscriber), {"List-Unsubscribe": oversized(settings)})

    assert response.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.status == "unsubscribed"


@pytest.mark.parametrize("path", ["/subscribe/", "/subscribe/resend/"])
@pytest.mark.parametrize(
    "body,content_type",
    [
        ("&".join(f"f{n}=x" for n in range(1500)), "application/x-www-form-urlencoded"),
        (b"email=ada%40example.org&interests=\xff\xfe\xc3\x28", "application/x-www-form-urlencoded"),
        (b"--xx\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n", "multipart/form-data; boundary=xx"),
        (b"--xx--garbage", "multipart/form-data; boundary=" + "x" * 5000),
        (b"{\"email\": \"ada@example.org\"}", "application/json"),
    ],
    ids=["too-many-fields", "invalid-utf8", "truncated-multipart", "huge-boundary", "json"],
)
def test_malformed_bodies_are_a_clean_client_error(unlimited, client, path, body, content_type):
    response = client.generic("POST", path, body, content_type=content_type)

    # 400 for what cannot be read; an unreadable-as-a-form body may also just show the form
    assert 400 <= response.status_code < 500 or response.status_code in (200, 302)
    assert Subscriber.objects.count() <= 1
    for subscriber in Subscriber.objects.all():
        assert_sane(subscriber)


def test_signup_rate_limits_cap_confirmation_emails_under_a_flood(settings):
    """Fifty signups for one address from fifty addresses: at most the per-address limit
    gets through, and the ten-minute cool-down sends one confirmation."""
    settings.SUBSCRIBE_RATE_PER_EMAIL = "5/h"
    answers = [
        Client(REMOTE_ADDR=f"198.51.100.{n}").post("/subscribe/", {"email": "flood@example.org"})
        for n in range(50)
    ]

    codes = [a.status_code for a in answers]
    assert codes.count(302) == 5 and codes.count(429) == 45
    assert len(mail.outbox) == 1


# --- The admin's CSV import ---------------------------------------------------------------

IMPORT_HEADER = ["email", "interests", "categories", "frequency", "max_papers", "send_hour",
                 "timezone", "always_send_top", "confirmed_at", "consent_note"]
dates = st.one_of(
    st.sampled_from(["", "2024-03-01", "2024-02-30", "9999-12-31", "0001-01-01T00:00:00+14:00",
                     "2024-03-01T25:61:00", "1970-01-01T00:00:00-23:59", "2024-03-01T10:00:00+20:00",
                     "yesterday"]),
    hostile_text,
)
import_rows = st.lists(st.lists(hostile_text, max_size=len(IMPORT_HEADER) + 2), max_size=5)


@pytest.fixture
def operator_client(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.org", "pw"))
    return client


def csv_upload(rows, header=IMPORT_HEADER):
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8", "surrogatepass")


def hostile_import_rows(address):
    """Up to four CSV rows of hostile cells (the date column a date or junk), some with ``address``."""
    return st.lists(
        st.tuples(st.one_of(st.just(address), hostile_text), *[hostile_text] * 7, dates, hostile_text),
        max_size=4,
    )


def post_import(client, payload):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("subscribers.csv", payload, content_type="text/csv")
    return client.post("/admin/subscriptions/subscriber/import/", {"file": upload})


@HARDENING
@given(
    rows=hostile_import_rows("imported@example.org"),
    extra=import_rows,
)
def test_the_csv_import_answers_any_file_without_an_error_and_imports_sane_rows(
    operator_client, rows, extra
):
    before = Subscriber.objects.count()

    response = post_import(operator_client, csv_upload([list(r) for r in rows] + extra))

    assert response.status_code in (200, 302)
    assert Subscriber.objects.count() - before <= len(rows) + len(extra)
    for subscriber in Subscriber.objects.all():
        assert_sane(subscriber)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe\x00e\x00m\x00a\x00i\x00l",
        b"",
        b"email\n" + b"a@example.org\n" * 51,  # MAX_IMPORT_ROWS is 50 in this test
        b"email,\"unterminated\nx@example.org",
        b"\x00\x00\x00",
        ("email\n" + "[" * 10000 + "@example.org\n").encode(),
    ],
    ids=["utf16", "empty", "too-many-rows", "broken-quoting", "nul", "huge-cell"],
)
def test_the_csv_import_refuses_unreadable_files_cleanly(operator_client, monkeypatch, payload):
    monkeypatch.setattr("subscriptions.csv_io.MAX_IMPORT_ROWS", 50)
    response = post_import(operator_client, payload)
    assert response.status_code in (200, 302)
    assert Subscriber.objects.count() <= 1


@HARDENING
@given(
    rows=hostile_import_rows("queued@example.org"),
    extra=import_rows,
)
def test_a_queued_csv_import_of_any_file_is_stored_and_run_by_the_task_without_an_error(
    operator_client, rows, extra
):
    """With a broker the page only stores the file; the worker then meets the hostile rows."""
    from unittest import mock

    from subscriptions import tasks
    from subscriptions.models import SubscriberImport

    before = Subscriber.objects.count()
    queued = []
    with mock.patch.object(tasks.import_subscribers, "delay", lambda pk: queued.append(pk)):
        response = post_import(operator_client, csv_upload([list(r) for r in rows] + extra))

    assert response.status_code in (200, 302)
    if response.status_code == 200:  # refused as a whole on the page: nothing stored
        assert not queued and Subscriber.objects.count() == before
        return
    tasks.import_subscribers(queued[0])
    record = SubscriberImport.objects.get(pk=queued[0])
    assert record.status in ("done", "failed")
    if record.status == "done":
        outcome = (record.imported_pending + record.imported_active + record.imported_paused
                   + record.skipped_existing + record.skipped_suppressed)
        assert outcome == record.rows_valid == record.rows_done
        assert record.rows_valid + len(record.row_errors) == record.rows_total
    assert Subscriber.objects.count() - before <= len(rows) + len(extra)
    for subscriber in Subscriber.objects.all():
        assert_sane(subscriber)
