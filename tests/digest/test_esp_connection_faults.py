"""A connection to an HTTP ESP that breaks after the ESP read the whole request: the ESP may have
taken it, so the outcome is unknown and nobody is sent it again (docs/digest.md: "a dropped
connection once a message is on its way"). Only a connection never made is "not taken"."""

import json
import socket
import threading

import pytest

from digest.sending import TransientSendError, send_edition_to
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.fakes.mailgun import parse_multipart

pytestmark = pytest.mark.django_db


def recipients_of(content_type, body):
    """The addresses a Mailgun form or a Postmark JSON request carries."""
    if content_type.startswith("multipart/form-data"):
        return [to.lower() for to in parse_multipart(content_type, body)["to"]]
    messages = json.loads(body)
    return [m["To"].lower() for m in (messages if isinstance(messages, list) else [messages])]


class TakesThenDrops:
    """An HTTP endpoint that reads each request whole (the ESP has it), then breaks the
    connection: ``mode`` "close" answers nothing, "truncated" starts a 200 and cuts its body."""

    def __init__(self, mode):
        self.mode, self.requests = mode, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v3"

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
                while len(body) < int(headers.get("Content-Length", 0)):
                    body += conn.recv(65536)
                self.requests.append(recipients_of(headers["Content-Type"], body))
                if self.mode == "truncated":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                                 b'{"id": "<x@mg.example.org>", "mess')

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize("per_call", [True, False], ids=["claims per call", "claims per row"])
@pytest.mark.parametrize("mode", ["close", "truncated"])
def test_a_mailgun_batch_whose_connection_broke_after_it_was_read_is_not_sent_again(settings, mode, per_call):
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.DIGEST_CLAIMS_PER_CALL = per_call
    readers = [SubscriberFactory() for _ in range(2)]
    edition = built_edition()
    with TakesThenDrops(mode) as esp:
        settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_KEY": "key", "MAILGUN_SENDER_DOMAIN": "mg.example.org",
                            "MAILGUN_API_URL": esp.api_url}
        for _ in range(2):  # the task, then its retry
            try:
                send_edition_to(edition, [r.pk for r in readers])
            except TransientSendError:
                pass

    assert sorted(to for request in esp.requests for to in request) == sorted(r.email.lower() for r in readers)


def test_a_postmark_message_whose_connection_broke_after_it_was_read_is_not_sent_again_at_once(settings):
    """One by one, a message deferred is tried again at once over a new connection."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.DIGEST_ESP_TEMPLATE_ID = ""
    reader = SubscriberFactory()
    edition = built_edition()
    with TakesThenDrops("close") as esp:
        settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "token", "POSTMARK_API_URL": esp.api_url + "/"}
        try:
            send_edition_to(edition, [reader.pk])
        except TransientSendError:
            pass

    assert esp.requests == [[reader.email.lower()]]
