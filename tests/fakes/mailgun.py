"""An imitation of Mailgun's send API (``POST /v3/<domain>/messages``).

It speaks the wire format django-anymail's Mailgun backend uses (a form, URL-
encoded or multipart), checks the API key, records every request, and answers
like Mailgun: ``{"id": "<…@domain>", "message": "Queued. Thank you."}``.

Tests can switch it at runtime to answer 500, 429 with Retry-After, or hang
for N seconds (then accept, as a slow ESP that did take the message), for a
number of requests or until told to ``recover``::

    esp = FakeMailgun().start()
    esp.fail(500, times=1)          # the next request gets a 500
    esp.throttle(retry_after=30)    # then every request gets 429 ...
    esp.recover()                   # ... until now
    esp.accepted_requests           # what was queued for delivery
"""

import base64
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from functools import cached_property
from urllib.parse import parse_qs

from .http import BackgroundHTTPServer, QuietHandler

MAX_RECIPIENTS_PER_MESSAGE = 1000  # Mailgun's documented batch limit
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")
SIMPLE_PART_HEAD = re.compile(r'Content-Disposition: form-data; name="([A-Za-z0-9:._-]+)"', re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """How the imitation answers one request."""

    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0  # seconds to hang before answering

    @property
    def accepts(self):
        return self.status == 200


ACCEPT = Answer()


@dataclass
class MailgunRequest:
    """One request as received: the form fields (multi-valued) and how it was answered."""

    domain: str
    fields: dict[str, list[str]]
    api_key: str | None
    answer: Answer
    message_id: str | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def accepted(self):
        return self.answer.accepts and self.message_id is not None

    def value(self, name, default=None):
        values = self.fields.get(name)
        return values[0] if values else default

    @cached_property
    def recipients(self):
        """The bare addresses in ``to`` (each field may hold one or several)."""
        values = self.fields.get("to", [])
        if all(PLAIN_ADDRESS.fullmatch(value) for value in values):
            return [value.lower() for value in values]
        return [addr.lower() for _, addr in getaddresses(values)]

    @property
    def recipient_variables(self):
        raw = self.value("recipient-variables")
        return {k.lower(): v for k, v in json.loads(raw).items()} if raw else {}

    def personalise(self, text, recipient):
        """``text`` as Mailgun delivers it to ``recipient``: %recipient.KEY% substituted."""
        for key, value in self.recipient_variables.get(recipient.lower(), {}).items():
            text = text.replace(f"%recipient.{key}%", str(value))
        return text

    def headers_for(self, recipient):
        """The custom (``h:``) headers ``recipient`` receives, merge variables applied."""
        return {
            name[2:]: self.personalise(values[0], recipient)
            for name, values in self.fields.items()
            if name.startswith("h:")
        }

    def text_for(self, recipient):
        return self.personalise(self.value("text", ""), recipient)

    def html_for(self, recipient):
        return self.personalise(self.value("html", ""), recipient)


def parse_form(content_type, body):
    """The form fields of a URL-encoded or multipart/form-data body, as lists of strings."""
    if content_type.startswith("multipart/form-data"):
        return parse_multipart(content_type, body)
    return parse_qs(body.decode(), keep_blank_values=True)


def parse_multipart(content_type, body):
    """multipart/form-data (RFC 7578) split at its boundary; each part's few headers read alone.

    The email parser reads a body line by line, which takes longer than
    building the batch did for a 15 MB digest batch; the boundary cannot occur
    inside a part, so splitting on it is exact.
    """
    delimiter = multipart_delimiter(content_type)
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise ValueError("malformed multipart body")
    fields = {}
    for section in sections[1:-1]:
        head, separator, payload = section.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("multipart part without a blank line after its headers")
        head = head.decode("utf-8").strip()
        simple = SIMPLE_PART_HEAD.fullmatch(head)
        if simple:  # the usual one-line head: no email-package parsing per field
            name, charset = simple.group(1), "utf-8"
        else:
            headers = Message()
            for line in head.split("\r\n"):
                key, colon, value = line.partition(":")
                if not colon:
                    raise ValueError(f"malformed part header: {line[:80]!r}")
                headers[key.strip()] = value.strip()
            name = headers.get_param("name", header="content-disposition")
            charset = headers.get_content_charset() or "utf-8"
        fields.setdefault(name, []).append(payload.decode(charset))
    return fields


def multipart_delimiter(content_type):
    """``CRLF--boundary``, what stands before each part of a multipart/form-data body."""
    header = Message()
    header["Content-Type"] = content_type
    return b"\r\n--" + header.get_param("boundary").encode()


def basic_auth_password(header):
    if not header or not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return password if user == "api" else None


class MailgunHandler(QuietHandler):
    def do_POST(self):
        esp = self.server.owner
        parts = self.path.split("?")[0].strip("/").split("/")
        body = self.read_body()
        if len(parts) != 3 or parts[0] != "v3" or parts[2] != "messages":
            return self.reply(404, b'{"message": "Not found"}')
        try:
            fields = esp.read_form(self.headers.get("Content-Type", ""), body)
        except (ValueError, UnicodeDecodeError):
            return self.reply(400, b'{"message": "Could not parse the form"}')
        api_key = basic_auth_password(self.headers.get("Authorization"))
        status, payload, headers = esp.handle(parts[1], fields, api_key)
        self.reply(status, json.dumps(payload).encode(), headers=headers)


class FakeMailgun(BackgroundHTTPServer):
    handler_class = MailgunHandler

    def __init__(self, domain="mg.example.org", api_key="test"):
        super().__init__()
        self.domain = domain
        self.api_key = api_key
        self.requests: list[MailgunRequest] = []
        self._lock = threading.Lock()
        self._scripted = deque()
        self._default = ACCEPT
        self._released = threading.Event()
        self._counter = 0

    @property
    def api_url(self):
        """The value for MAILGUN_API_URL."""
        return f"{self.base_url}/v3"

    # --- Switching behaviour at runtime -----------------------------------

    def answer(self, answer, times=None):
        """Answer the next ``times`` requests with ``answer`` (every request when None)."""
        with self._lock:
            if times is None:
                self._scripted.clear()
                self._default = answer
            else:
                self._scripted.extend([answer] * times)

    def fail(self, status=500, times=None):
        self.answer(Answer(status=status), times)

    def throttle(self, retry_after=30, times=None):
        self.answer(Answer(status=429, retry_after=retry_after), times)

    def hang(self, seconds, times=None):
        """Hold the request for ``seconds``, then accept it: the ESP took the message
        even though the client may have given up waiting."""
        self.answer(Answer(delay=seconds), times)

    def recover(self):
        """Back to accepting everything at once; hanging requests are released."""
        with self._lock:
            self._scripted.clear()
            self._default = ACCEPT
        self._released.set()
        self._released = threading.Event()

    # --- What was received ------------------------------------------------

    @property
    def accepted_requests(self):
        with self._lock:
            return [r for r in self.requests if r.accepted]

    def accepted_per_recipient(self):
        """How many accepted messages each recipient address was in."""
        counts = {}
        for request in self.accepted_requests:
            for address in request.recipients:
                counts[address] = counts.get(address, 0) + 1
        return counts

    # --- The API ----------------------------------------------------------

    def read_form(self, content_type, body):
        """The request's form fields (a subclass may keep some of them its own way)."""
        return parse_form(content_type, body)

    def next_answer(self):
        with self._lock:
            return self._scripted.popleft() if self._scripted else self._default

    def handle(self, domain, fields, api_key):
        """Record one request; return (status, JSON payload, extra headers)."""
        answer = self.next_answer()
        request = MailgunRequest(domain=domain, fields=fields, api_key=api_key, answer=answer)
        with self._lock:
            self.requests.append(request)
        if answer.delay:
            self._released.wait(answer.delay)
        refusal = self.refusal(request)
        if refusal:
            request.answer = Answer(status=refusal[0])
            return refusal[0], {"message": refusal[1]}, {}
        if not answer.accepts:
            headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else {}
            return answer.status, {"message": f"Imitated failure {answer.status}"}, headers
        with self._lock:
            self._counter += 1
            request.message_id = f"<{time.strftime('%Y%m%d%H%M%S')}.{self._counter}@{domain}>"
        return 200, {"id": request.message_id, "message": "Queued. Thank you."}, {}

    def refusal(self, request):
        """The 401/404/400 a real Mailgun would give, or None."""
        if request.api_key != self.api_key:
            return 401, "Invalid private key"
        if request.domain != self.domain:
            return 404, "Domain not found"
        if not request.recipients or not request.value("from") or not request.value("subject"):
            return 400, "'from', 'to' and 'subject' are required"
        if len(request.recipients) > MAX_RECIPIENTS_PER_MESSAGE:
            return 400, f"Too many recipients: at most {MAX_RECIPIENTS_PER_MESSAGE} per message"
        return None
