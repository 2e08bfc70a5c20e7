"""Signing up on the running site (gunicorn, Redis, a Celery worker, an SMTP server): the web
answers at once and a worker sends the confirmation."""

import html
import re

import pytest
import requests

from django.utils import timezone

from subscriptions.models import Subscriber
from tests.factories import SubscriberFactory
from tests.ops.stack import wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/[^\s/]+/")


def submit_form(stack, path, fields, action=None):
    """GET the page, then POST its form (to ``action``, or the page) as a browser would, with
    the CSRF cookie and field.

    The cookie is set ``Secure`` (DEBUG is off); over the test's plain HTTP it is sent by hand."""
    page = requests.get(stack.url(path), timeout=10)
    token = CSRF_FIELD.search(page.text).group(1)
    return requests.post(
        stack.url(action or path), data={**fields, "csrfmiddlewaretoken": token},
        cookies={"csrftoken": page.cookies["csrftoken"]}, allow_redirects=False, timeout=10,
    )


@pytest.mark.django_db(transaction=True)
def test_a_signup_is_answered_by_the_web_and_its_confirmation_sent_by_a_worker(stack, smtp_sink):
    stack.configure(EMAIL_URL=smtp_sink.url, DEFAULT_FROM_EMAIL="Paperboy <digest@paperboy.example.org>")
    stack.start_web()
    stack.wait_for_site(stack.processes[-1])

    answer = submit_form(stack, "/", {"email": "reader@example.org", "interests": "diffusion models"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/subscribe/check-your-inbox/")
    assert Subscriber.objects.get().status == "pending"
    assert smtp_sink.messages == []  # no worker yet: the web sent nothing itself

    stack.start_worker()
    assert wait_until(lambda: len(smtp_sink.messages) == 1, 30), stack.logs()
    mail = smtp_sink.messages[0]
    assert mail.rcpt_tos == ["reader@example.org"]
    assert mail.message["Subject"] == "Confirm your Paperboy subscription"
    assert "Task subscriptions.tasks.send_account_email[" in stack.logs(tail=None)

    confirm_url = html.unescape(CONFIRM_LINK.search(mail.body("plain")).group(0))
    confirmed = submit_form(stack, confirm_url, {})
    assert confirmed.status_code in (200, 302), confirmed.text[:500]
    assert Subscriber.objects.get().status == "active"


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_the_mail_server_defers_is_sent_by_the_workers_retry_once(stack, smtp_sink):
    """A greylisting relay (451 to RCPT TO) twice, then accepting: the worker tries again after
    each of ACCOUNT_EMAIL_RETRY_DELAYS, through the broker, and the reader gets one email."""
    slot = timezone.now()
    reader = SubscriberFactory(email="slow@example.org", status="pending", confirmed_at=None,
                               confirmation_sent_at=slot)  # as the form leaves it when it hands the email over
    smtp_sink.refuse = {"slow@example.org": "451 4.7.1 Greylisted, try again later"}
    stack.configure(EMAIL_URL=smtp_sink.url, ACCOUNT_EMAIL_RETRY_DELAYS="2,2,30")
    stack.start_worker()
    stack.send_task("subscriptions.tasks.send_account_email", args=[reader.pk, "confirm", None])

    assert wait_until(lambda: len(smtp_sink.refused) == 2, 30), stack.logs()
    smtp_sink.refuse = {}
    assert wait_until(lambda: len(smtp_sink.messages) == 1, 30), stack.logs()
    assert smtp_sink.messages[0].rcpt_tos == ["slow@example.org"]
    assert smtp_sink.messages[0].message["Subject"] == "Confirm your Paperboy subscription"
    reader.refresh_from_db()
    # Stamped again at each deferral: the slot held until the try that sent it, none given back.
    assert slot < reader.confirmation_sent_at < timezone.now()
    logs = stack.logs(tail=None)
    assert logs.count("The mail system deferred the confirm email") == 2
    assert "Retry in 2s" in logs


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_deferred_at_every_try_gives_the_address_its_slot_back(stack, smtp_sink):
    reader = SubscriberFactory(email="slow@example.org", status="pending", confirmed_at=None,
                               confirmation_sent_at=timezone.now())
    smtp_sink.refuse = {"slow@example.org": "451 4.7.1 Greylisted, try again later"}
    stack.configure(EMAIL_URL=smtp_sink.url, ACCOUNT_EMAIL_RETRY_DELAYS="1")
    stack.start_worker()
    stack.send_task("subscriptions.tasks.send_account_email", args=[reader.pk, "confirm", None])

    given_back = Subscriber.objects.filter(pk=reader.pk, confirmation_sent_at=None)
    assert wait_until(given_back.exists, 30), stack.logs()
    assert len(smtp_sink.refused) == 2  # the first try and one retry
    assert smtp_sink.messages == []


NEW_ADDRESS_LINK = re.compile(r"https?://\S+/new-address/[^\s/]+/")


@pytest.mark.django_db(transaction=True)
def test_a_reader_moves_to_a_new_address_on_the_running_site(stack, smtp_sink):
    """The preferences page hands the new address's link to a worker, which mails it there; the
    link moves the reader, and the web tells the address they left."""
    from django.urls import reverse

    from subscriptions.services import preferences_path
    from subscriptions.tokens import PREFERENCES, make_token

    reader = SubscriberFactory(email="old@example.org")
    stack.configure(EMAIL_URL=smtp_sink.url)
    stack.start_web()
    stack.wait_for_site(stack.processes[-1])
    stack.start_worker()
    preferences = preferences_path(reader)

    change_address = reverse("subscriptions:change_address", args=[make_token(reader, PREFERENCES)])
    answer = submit_form(stack, preferences, {"email": "new@example.org"}, action=change_address)
    assert answer.status_code == 200 and "Check your new inbox" in answer.text
    assert wait_until(lambda: len(smtp_sink.messages) == 1, 30), stack.logs()
    mail = smtp_sink.messages[0]
    assert mail.rcpt_tos == ["new@example.org"]
    assert mail.message["Subject"] == "Confirm your new address for Paperboy"

    link = html.unescape(NEW_ADDRESS_LINK.search(mail.body("plain")).group(0))
    moved = submit_form(stack, link, {})
    assert moved.status_code == 302, moved.text[:500]
    reader.refresh_from_db()
    assert (reader.email, reader.new_email, reader.status) == ("new@example.org", "", "active")
    assert wait_until(lambda: len(smtp_sink.messages) == 2, 30), stack.logs()
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["new@example.org"], ["old@example.org"]]
    assert smtp_sink.messages[1].message["Subject"] == "Your Paperboy digests go to a new address"
    assert "Task subscriptions.tasks.send_address_changed_note[" in stack.logs(tail=None)  # the worker told it
    assert requests.get(stack.url(preferences), timeout=10).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_note_to_the_old_address_the_mail_server_defers_is_sent_by_the_workers_retry(stack, smtp_sink):
    reader = SubscriberFactory(email="new@example.org")  # just moved from old@example.org
    smtp_sink.refuse = {"old@example.org": "451 4.7.1 Greylisted, try again later"}
    stack.configure(EMAIL_URL=smtp_sink.url, ACCOUNT_EMAIL_RETRY_DELAYS="2,30")
    stack.start_worker()
    stack.send_task("subscriptions.tasks.send_address_changed_note", args=[reader.pk, "old@example.org"])

    assert wait_until(lambda: len(smtp_sink.refused) == 1, 30), stack.logs()
    smtp_sink.refuse = {}
    assert wait_until(lambda: len(smtp_sink.messages) == 1, 30), stack.logs()
    assert smtp_sink.messages[0].rcpt_tos == ["old@example.org"]
    assert "now go to new@example.org" in smtp_sink.messages[0].body("plain")
    logs = stack.logs(tail=None)
    assert logs.count("The mail system deferred the note to the old address") == 1
    assert "Retry in 2s" in logs
    # The address travels in the task; no INFO line carries it (WARNING lines may: config/logging.py).
    assert [line for line in logs.splitlines() if " INFO " in line and "old@example.org" in line] == []
    assert "Task subscriptions.tasks.send_address_changed_note[" in logs
