"""An SMTP server that keeps every message it receives (aiosmtpd, on 127.0.0.1)."""

import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=default_policy)

    def body(self, subtype):
        """The decoded text of the ``text/<subtype>`` part ('plain' or 'html')."""
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else None


class _Collector:
    def __init__(self, sink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        self.sink.add(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink:`` … ``sink.port`` … ``sink.messages``."""

    def __init__(self, port=0):
        self._controller = Controller(_Collector(self), hostname="127.0.0.1", port=port or free_port())
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []

    @property
    def port(self):
        return self._controller.port

    @property
    def url(self):
        """The value for EMAIL_URL."""
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self):
        with self._lock:
            return list(self._messages)

    def add(self, mail):
        with self._lock:
            self._messages.append(mail)

    def start(self):
        self._controller.start()
        return self

    def stop(self):
        self._controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

