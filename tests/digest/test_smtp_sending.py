"""Sending one by one over a real SMTP server (aiosmtpd on 127.0.0.1) with Django's SMTP backend."""

import socket
import time

import environ
import pytest

from digest import sending
from digest.emails import build_email
from digest.models import Delivery
from digest.sending import TransientSendError, send_edition_to
from digest.services import send_preview_digest
from subscriptions.models import Subscriber
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.fakes.smtp import SmtpSink
from tests.servers import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp_settings(settings):
    """Email settings for ``sink`` as production reads them from EMAIL_URL."""
    def use(sink):
        for name, value in environ.Env.email_url_config(sink.url).items():
            setattr(settings, name, value)
        return sink

    return use


def received_by(sink):
    return sorted(address for mail in sink.messages for address in mail.rcpt_tos)


def test_a_task_sends_its_digests_over_one_smtp_connection(smtp_settings):
    readers = SubscriberFactory.create_batch(4, interests="")
    with smtp_settings(SmtpSink()) as sink:
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 4
    assert received_by(sink) == sorted(r.email for r in readers)
    assert sink.connections == 1 and sink.quits == 1


def test_after_the_server_drops_the_connection_the_next_digests_go_over_a_new_one(smtp_settings):
    readers = SubscriberFactory.create_batch(4, interests="")
    dropped, edition = readers[1], built_edition()
    with smtp_settings(SmtpSink(drop_once=dropped.email)) as sink:
        report = send_edition_to(edition, [r.pk for r in readers])

    assert received_by(sink) == sorted(r.email for r in readers if r != dropped)
    assert report.sent == 3 and sink.connections == 2
    # The dropped message may have been taken: left `sending`, never resent blindly.
    assert Delivery.objects.get(subscriber=dropped).status == "sending"
    assert send_edition_to(edition, [r.pk for r in readers]).sent == 0


def test_a_server_limit_of_messages_per_connection_costs_a_reconnection_not_a_digest(smtp_settings):
    readers = SubscriberFactory.create_batch(5, interests="")
    with smtp_settings(SmtpSink(messages_per_connection=2)) as sink:
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 5 and report.transient == []
    assert received_by(sink) == sorted(r.email for r in readers)
    assert sink.connections == 3


def test_an_operator_preview_goes_over_its_own_connection_and_closes_it(smtp_settings):
    reader = SubscriberFactory(interests="")
    built_edition()
    with smtp_settings(SmtpSink()) as sink:
        send_preview_digest(reader)

    assert received_by(sink) == [reader.email]
    assert (sink.connections, sink.quits) == (1, 1)


def test_a_recipient_the_server_says_does_not_exist_fails_and_is_suppressed(smtp_settings):
    readers = SubscriberFactory.create_batch(3, interests="")
    unknown = readers[1]
    with smtp_settings(SmtpSink(refuse={unknown.email: "550 5.1.1 No such user"})) as sink:
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 2 and report.failed == 1
    assert received_by(sink) == sorted(r.email for r in readers if r != unknown)
    delivery = Delivery.objects.get(subscriber=unknown)
    assert delivery.status == "failed" and "550" in delivery.reason
    assert Subscriber.objects.get(pk=unknown.pk).status == "bounced"


@pytest.mark.parametrize("reply", ["451 4.7.1 Greylisted, try again later", "452 4.2.2 Mailbox full",
                                   "421 4.3.2 Service shutting down"])
def test_a_recipient_the_server_defers_is_retried_never_suppressed(smtp_settings, reply):
    readers = SubscriberFactory.create_batch(3, interests="")
    deferred, edition = readers[1], built_edition()
    sink = SmtpSink(refuse={deferred.email: reply})
    with smtp_settings(sink):
        with pytest.raises(TransientSendError):
            send_edition_to(edition, [r.pk for r in readers])
        delivery = Delivery.objects.get(subscriber=deferred)
        assert delivery.status == "pending" and reply[:3] in delivery.reason
        assert Subscriber.objects.get(pk=deferred.pk).status == "active"

        sink.refuse.clear()  # the server takes it on the task's retry
        send_edition_to(edition, [r.pk for r in readers])

    assert received_by(sink) == sorted(r.email for r in readers)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.parametrize("reply", ["451 4.7.1 Greylisted, try again later", "452 4.2.2 Mailbox full"])
def test_a_mailbox_the_server_defers_holds_back_no_other_reader(smtp_settings, reply):
    readers = SubscriberFactory.create_batch(4, interests="")
    deferred, edition = readers[1], built_edition()
    with smtp_settings(SmtpSink(refuse={deferred.email: reply})) as sink:
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])

    assert received_by(sink) == sorted(r.email for r in readers if r != deferred)
    assert raised.value.args[1].deferred_alone == [Delivery.objects.get(subscriber=deferred).pk]
    assert dict(Delivery.objects.values_list("subscriber_id", "status")) == {
        r.pk: "pending" if r == deferred else "sent" for r in readers
    }


def test_a_421_to_a_recipient_closes_the_session_and_stops_the_task(smtp_settings):
    readers = SubscriberFactory.create_batch(4, interests="")
    with smtp_settings(SmtpSink(refuse={readers[1].email: "421 4.3.2 Service shutting down"})) as sink:
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(built_edition(), [r.pk for r in readers])

    assert received_by(sink) == [readers[0].email]
    assert raised.value.args[1].stopped == "the ESP deferred a message"


class SilentServer:
    """A port that takes connections and never answers, not even the greeting."""

    def __enter__(self):
        self.socket = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"smtp://127.0.0.1:{self.socket.getsockname()[1]}"
        return self

    def __exit__(self, *exc):
        self.socket.close()


@pytest.mark.parametrize("session", ["STARTTLS not offered", "login refused", "no greeting"])
def test_a_session_the_server_never_opens_sends_nothing_and_leaves_every_digest_for_the_retry(
    smtp_settings, settings, session
):
    readers = SubscriberFactory.create_batch(3, interests="")
    settings.EMAIL_TIMEOUT = 1
    server = {"STARTTLS not offered": SmtpSink, "login refused": lambda: SmtpSink(refuse_login=True),
              "no greeting": SilentServer}[session]()
    with server:
        smtp_settings(server)
        settings.EMAIL_USE_TLS = session == "STARTTLS not offered"
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "paperboy", "wrong password"
        with pytest.raises(TransientSendError):
            send_edition_to(built_edition(), [r.pk for r in readers])

    rows = Delivery.objects.all()
    assert sorted(rows.values_list("status", flat=True)) == ["pending"] * 3
    assert rows.filter(reason__startswith="SessionNotOpened").count() == 1
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}


@pytest.mark.parametrize("reply", ["550 5.7.1 Sender address rejected: not owned by user paperboy",
                                   "451 4.3.0 Sender verification unavailable, try again"])
def test_a_relay_refusing_our_sender_fails_no_digest_and_the_retry_sends_each_once(smtp_settings, reply):
    """The relay refuses MAIL FROM (DEFAULT_FROM_EMAIL not allowed through it, or not now): a
    setting to fix, not the readers' fault, so every digest waits for the retry."""
    readers = SubscriberFactory.create_batch(3, interests="")
    edition = built_edition()
    with SmtpSink(refuse_sender=reply) as sink:
        smtp_settings(sink)
        with pytest.raises(TransientSendError):
            send_edition_to(edition, [r.pk for r in readers])
        rows = Delivery.objects.all()
        assert sorted(rows.values_list("status", flat=True)) == ["pending"] * 3
        assert rows.filter(reason__startswith="SMTPSenderRefused").count() == 1  # the task stopped at the first
        assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}

        sink.refuse_sender = None  # the sender is allowed now
        assert send_edition_to(edition, [r.pk for r in readers]).sent == 3
    assert received_by(sink) == sorted(r.email for r in readers)


def test_a_session_the_relay_closed_while_idle_is_reopened_before_the_next_digest(smtp_settings, monkeypatch):
    """A relay ends a session left idle (RFC 5321 lets it after minutes; some wait seconds). Sent
    into the closed session, a digest's outcome would be unknown: the session is checked first."""
    readers = SubscriberFactory.create_batch(2, interests="")
    monkeypatch.setattr(sending, "SMTP_IDLE_CHECK_SECONDS", 0.2)
    built = []

    def slowly_built_email(*args, **kwargs):
        if built:
            time.sleep(1.0)  # a pause between two digests, longer than the relay waits
        built.append(args)
        return build_email(*args, **kwargs)

    monkeypatch.setattr(sending, "build_email", slowly_built_email)
    with SmtpSink(idle_timeout=0.5) as sink:
        smtp_settings(sink)
        report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 2
    assert received_by(sink) == sorted(r.email for r in readers)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert sink.connections == 2  # the first session, closed by the relay, and a new one
