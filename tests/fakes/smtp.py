"""An SMTP server that keeps every message it receives (aiosmtpd, on 127.0.0.1)."""

import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

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

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sink.count_connection()
        return responses

    async def handle_QUIT(self, server, session, envelope):
        self.sink.count_quit()
        return "221 Bye"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.sink.refuse_sender:
            return self.sink.refuse_sender
        session.messages = getattr(session, "messages", 0) + 1
        if self.sink.messages_per_connection and session.messages > self.sink.messages_per_connection:
            return "421 4.7.0 Too many messages in this session, closing connection"
        envelope.mail_from, envelope.mail_options = address, list(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.sink.refusal_for(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.drops(envelope.rcpt_tos):
            server.transport.close()  # mid-transaction, without an answer: the client cannot know
            return "421 closing"
        self.sink.add(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink:`` … ``sink.port`` … ``sink.messages``.

    ``drop_once``: an address whose first message the server takes in full and then
    drops the connection instead of answering (a server restarting mid-transaction).
    ``messages_per_connection``: the server's limit of messages per session; past it, MAIL
    is answered 421 (as relays do). ``refuse``: address → the reply RCPT TO gets for it, such
    as ``"550 5.1.1 No such user"`` or ``"451 4.7.1 Try again later"`` (``sink.refused`` lists
    each refused RCPT's address). ``refuse_login``: the
    server offers AUTH (without TLS) and answers every login 535, until the test sets
    ``sink.refuse_login`` to False; then it takes any login. ``refuse_sender``: the reply every
    ``MAIL FROM`` gets while it is set (``"550 5.7.1 Sender address rejected"``). ``idle_timeout``:
    seconds after which the server closes a session that sent nothing (relays do, after minutes). ``sink.connections`` counts
    the sessions clients opened (their EHLOs), ``sink.quits`` the ones they ended with QUIT.
    """

    def __init__(self, port=0, drop_once=None, messages_per_connection=0, refuse=None, refuse_login=False,
                 refuse_sender=None, idle_timeout=None):
        login = {"auth_require_tls": False, "authenticator": self.check_login} if refuse_login else {}
        idle = {"timeout": idle_timeout} if idle_timeout else {}
        self._controller = Controller(_Collector(self), hostname="127.0.0.1", port=port or free_port(), **login, **idle)
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._drop = {drop_once.lower()} if drop_once else set()
        self.connections = self.quits = 0
        self.messages_per_connection = messages_per_connection
        self.refuse = {address.lower(): reply for address, reply in (refuse or {}).items()}
        self.refused = []  # each RCPT TO answered with a refusal, as its address
        self.refuse_login = refuse_login
        self.refuse_sender = refuse_sender

    def count_connection(self):
        with self._lock:
            self.connections += 1

    def count_quit(self):
        with self._lock:
            self.quits += 1

    def drops(self, rcpt_tos):
        with self._lock:
            dropped = self._drop & {address.lower() for address in rcpt_tos}
            self._drop -= dropped
            return bool(dropped)

    def check_login(self, server, session, envelope, mechanism, auth_data):
        return AuthResult(success=not self.refuse_login, handled=False)  # refused: aiosmtpd answers 535

    def refusal_for(self, address):
        with self._lock:
            reply = self.refuse.get(address.lower())
            if reply:
                self.refused.append(address)
            return reply

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

