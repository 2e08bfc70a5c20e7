"""What the configured email backend can do: one API call per batch, or one message each.

Every digest is personalised in full (papers, why-lines, links), so a batch
cannot share a body. Where the ESP substitutes per-recipient variables into
the message itself (Mailgun's ``%recipient.KEY%``), a batch message carries
each recipient's rendered subject, text and HTML in ``merge_data`` and the
body is just the placeholder. Postmark and Amazon SES only merge into a
stored template: with settings.DIGEST_ESP_TEMPLATE_ID naming a template
whose subject is ``{{{subject}}}``, text ``{{{text}}}`` and HTML ``{{{html}}}``
(triple braces: each is inserted as rendered; double braces would HTML-escape
the subject, an ``&`` in a paper's title showing as ``&amp;``) they batch the
same way; without it they get one message per recipient,
as do SMTP, the embedded outbox and any other backend.

A batch stops at the ESP's recipient limit (settings.DIGEST_ESP_BATCH_LIMIT
may lower it) and before its payload passes settings.DIGEST_ESP_BATCH_MAX_BYTES.
"""

import re
import uuid
from dataclasses import dataclass, replace
from urllib.parse import quote

import requests
from anymail.exceptions import AnymailError, AnymailRequestsAPIError
from anymail.utils import get_anymail_setting, parse_single_address
from django.conf import settings
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter

from .emails import MergeFields, one_line, personal_headers
from .rendering import JsonText, json_string

ANYMAIL_BACKENDS = "anymail.backends."
MAILGUN_BACKEND = "anymail.backends.mailgun.EmailBackend"
ON_THE_FLY = MergeFields(subject="%recipient.subject%", text="%recipient.text%", html="%recipient.html%")


@dataclass(frozen=True)
class BatchStyle:
    max_recipients: int
    fields: MergeFields = MergeFields()
    needs_template: bool = False
    direct: bool = False  # calls built by ``MailgunBatch`` from bodies rendered for JSON


BATCH_STYLES = {
    "mailgun": BatchStyle(1000, ON_THE_FLY),
    "postmark": BatchStyle(500, needs_template=True),
    "amazon_ses": BatchStyle(50, needs_template=True),
    # anymail's test backend records what it is given: it stands in for Mailgun in the tests.
    "test": BatchStyle(1000, ON_THE_FLY),
}


def anymail_esp(backend_path=None):
    """``mailgun`` for ``anymail.backends.mailgun.EmailBackend``; "" for a non-anymail backend."""
    path = backend_path or settings.EMAIL_BACKEND
    if not path.startswith(ANYMAIL_BACKENDS):
        return ""
    return path[len(ANYMAIL_BACKENDS):].split(".")[0]


def keep_connections_for(connection, calls):
    """Let the ESP backend's HTTP session keep a connection for each of ``calls`` calls in
    progress at once. requests keeps 10 per host: beyond that, every call that ends drops its
    connection and the next one opens (and for HTTPS negotiates) a new one."""
    session = getattr(connection, "session", None)
    if isinstance(session, requests.Session) and calls > DEFAULT_POOLSIZE:
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(pool_maxsize=calls))


def batch_style():
    """How to batch with the configured backend, or None to send one message per recipient."""
    style = BATCH_STYLES.get(anymail_esp())
    if style is None:
        return None
    if style.needs_template:
        if not settings.DIGEST_ESP_TEMPLATE_ID:
            return None
        style = replace(style, fields=MergeFields(template_id=settings.DIGEST_ESP_TEMPLATE_ID))
    if settings.DIGEST_ESP_BATCH_LIMIT:
        style = replace(style, max_recipients=min(style.max_recipients, settings.DIGEST_ESP_BATCH_LIMIT))
    if settings.EMAIL_BACKEND == MAILGUN_BACKEND and not anymail_send_defaults():
        style = replace(style, direct=True)
    return style


def digest_esp_extra():
    """ESP options for digest messages: with Postmark, the broadcast stream POSTMARK_DIGEST_STREAM."""
    if anymail_esp() == "postmark" and settings.POSTMARK_DIGEST_STREAM:
        return {"MessageStream": settings.POSTMARK_DIGEST_STREAM}
    return {}


def anymail_send_defaults():
    """anymail's SEND_DEFAULTS for Mailgun (tags, metadata, tracking…): a direct batch call
    does not apply them, so with any configured batches go through anymail's message."""
    return get_anymail_setting("send_defaults", default={}) or get_anymail_setting(
        "send_defaults", esp_name="Mailgun", default={}
    )


def part_size(part):
    return body_size(part.html) + body_size(part.text) + len(part.subject.encode())


def body_size(body):
    """Bytes in UTF-8, without encoding an ASCII body (digest HTML is ASCII) to count them."""
    if isinstance(body, JsonText):
        return len(body.escaped)
    return len(body) if body.isascii() else len(body.encode())


def batches(items, max_recipients, part_of=lambda item: item):
    """Split ``items`` into lists of at most ``max_recipients`` and DIGEST_ESP_BATCH_MAX_BYTES.

    A full batch is handed out as soon as it is full, not when the next item comes: that one
    may be a block's read away (``digest.sending.composed_blocks``).
    """
    batch, size, max_bytes = [], 0, settings.DIGEST_ESP_BATCH_MAX_BYTES
    for item in items:
        item_size = part_size(part_of(item))
        if batch and size + item_size > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
        if len(batch) >= max_recipients:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# --- Mailgun batch calls, built directly -----------------------------------------
#
# A Mailgun batch call carries every recipient's subject and bodies in
# ``recipient-variables``. Built by anymail from an EmailMessage, each call
# parsed every address with the email package and JSON-escaped megabytes of
# HTML: at a few hundred readers per call that cost more than composing the
# digests. ``MailgunBatch`` writes the same fields (anymail's names, values and
# placeholders; a test compares the two) as multipart/form-data, which Mailgun
# accepts for the same fields, from bodies already escaped for JSON by the
# renderer (``JsonText``), and posts them with anymail's backend: its settings,
# session and timeout, and its errors (``AnymailRequestsAPIError``).

PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class BatchAnswer:
    """What the ESP said about one batch call: each recipient's message id, the refused ones
    (their addresses: to be suppressed), the ones whose message it did not take for another
    reason (an error of that message: the reader is not to blame), and the ones whose message it
    did not take this time (its rate, its quota, a pause of the account: to be sent later)."""

    message_ids: list
    refused: frozenset = frozenset()
    not_taken: frozenset = frozenset()
    deferred: frozenset = frozenset()


def recipient_address(address, backend):
    """The address as anymail writes it for Mailgun (plain ones as they are)."""
    if PLAIN_ADDRESS.fullmatch(address):
        return address
    return parse_single_address(address).format(idna_encode=backend.idna_encode)


class MailgunBatch:
    """One Mailgun batch call for ``parts`` (``emails.BatchPart``), as anymail would make it."""

    def __init__(self, backend, parts):
        self.backend = backend
        self.parts = parts
        self.recipients = len(parts)
        self.headers = [personal_headers(part.context) for part in parts]
        self.boundary = self.payload = None

    def prepare(self):
        """Build the request body (in the caller's thread: ``send`` may run in another).

        The parts are let go once their bodies are in the payload: with several
        calls in flight, each body is held once, not twice.
        """
        self.boundary = uuid.uuid4().hex
        self.payload = self.body(self.boundary)
        self.parts = self.headers = None

    def shared_fields(self):
        from_address = parse_single_address(settings.DEFAULT_FROM_EMAIL)
        header_names = list(dict.fromkeys(name for headers in self.headers for name in headers))
        metadata_keys = list(dict.fromkeys(key for part in self.parts for key in part.metadata))
        fields = [("from", from_address.format(idna_encode=self.backend.idna_encode))]
        fields += [("to", recipient_address(part.to, self.backend)) for part in self.parts]
        fields += [("subject", ON_THE_FLY.subject)]
        if any(part.context.get("unsubscribe_url") for part in self.parts):
            fields += [("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"), ("h:List-Id", settings.EMAIL_LIST_ID)]
        fields += [("text", ON_THE_FLY.text), ("html", ON_THE_FLY.html)]
        fields += [(f"h:{header_key(name)}", f"%recipient.h:{header_key(name)}%") for name in header_names]
        fields += [(f"v:{key}", f"%recipient.v:{key}%") for key in metadata_keys]
        return fields, header_names, metadata_keys

    def recipient_variables(self, header_names, metadata_keys, out):
        """Append the ``recipient-variables`` JSON to ``out`` in bytes, written from already
        escaped bodies (``JsonText``) as they are."""
        keys = [f"v:{key}" for key in metadata_keys] + ["html", "subject", "text"]
        keys += [f"h:{header_key(name)}" for name in header_names]
        heads = [(b", " if m else b"") + json_string(key) + b": " for m, key in enumerate(keys)]
        out.append(b"{")
        for n, (part, headers) in enumerate(zip(self.parts, self.headers)):
            values = [str(part.metadata.get(key, "")) for key in metadata_keys]
            values += [part.html, one_line(part.subject), part.text]
            values += [headers.get(name, "") for name in header_names]
            out += (b", " if n else b"", json_string(address_spec(part.to)), b": {")
            for head, value in zip(heads, values):
                out.append(head)
                if isinstance(value, JsonText):
                    out += (b'"', value.escaped, b'"')
                else:
                    out.append(json_string(value))
            out.append(b"}")
        out.append(b"}")

    def body(self, boundary):
        """The multipart/form-data body, in one join of byte strings: the bodies, the bulk of
        it, go in as the renderer wrote them, neither copied into a text nor encoded again."""
        fields, header_names, metadata_keys = self.shared_fields()
        out = []
        for name, value in fields:
            out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="recipient-variables"\r\n\r\n'.encode())
        self.recipient_variables(header_names, metadata_keys, out)
        out.append(f"\r\n--{boundary}--\r\n".encode())
        return b"".join(out)

    def url(self):
        domain = self.backend.sender_domain or parse_single_address(settings.DEFAULT_FROM_EMAIL).domain
        if not domain or "/" in domain or "%2f" in domain.lower():
            raise AnymailError(f"Invalid Mailgun sender domain {domain!r}", backend=self.backend)
        return f"{self.backend.api_url}{quote(domain, safe='')}/messages"

    def send(self):
        """Post the call; returns a ``BatchAnswer`` or raises anymail's errors."""
        backend = self.backend
        backend.open()
        if self.payload is None:
            self.prepare()
        url = self.url()
        try:
            response = backend.session.post(
                url, data=self.payload, auth=("api", backend.api_key), timeout=backend.timeout,
                headers={"Content-Type": f"multipart/form-data; boundary={self.boundary}"},
            )
        except requests.RequestException as err:
            raise AnymailRequestsAPIError(f"Error posting to {url}:", backend=backend) from err
        if not 200 <= response.status_code < 300:
            raise AnymailRequestsAPIError(response=response, backend=backend)
        try:
            answer = response.json()
            message_id, text = answer["id"], answer["message"]
        except (ValueError, KeyError, TypeError) as err:
            raise AnymailRequestsAPIError("Invalid Mailgun API response format", response=response,
                                          backend=backend) from err
        if not str(text).startswith("Queued"):
            raise AnymailRequestsAPIError(f"Unrecognized Mailgun API message {text!r}", response=response,
                                          backend=backend)
        return BatchAnswer([str(message_id)] * self.recipients)


# --- Postmark batch answers, read message by message ---------------------------------
#
# Postmark answers a batch call 200 with one result per message, in the order sent, each with
# its own ErrorCode. anymail reads them by address: it raises for the whole call when one
# message has an error it does not attribute to a recipient (though Postmark took the others),
# and leaves a recipient "unknown" when an inactive-recipient error names no address.

POSTMARK_INACTIVE = 406
POSTMARK_INVALID_REQUEST = 300
POSTMARK_INVALID_RECIPIENT = re.compile(r"^(Invalid|Error\s+parsing)\s+'To'", re.IGNORECASE)


# Postmark's ErrorCodes that refuse the account, not a message: a bad token (10), a sender signature
# missing or not confirmed (400, 401), no credits or sending not allowed (405), an account pending
# or not allowed to send (412, 413). A setting or the account to fix: the digests wait for it.
POSTMARK_ACCOUNT_ERRORS = {10, 400, 401, 405, 412, 413}


def postmark_refuses_the_account(response):
    """Whether Postmark's answer (one error, or a batch whose every message failed) names only
    errors of the account (``POSTMARK_ACCOUNT_ERRORS``)."""
    if anymail_esp() != "postmark" or response is None:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    results = body if isinstance(body, list) else [body]
    codes = {result.get("ErrorCode") for result in results if isinstance(result, dict)}
    return bool(codes) and codes <= POSTMARK_ACCOUNT_ERRORS


def postmark_batch_answer(response, parts):
    """The ``BatchAnswer`` of a Postmark batch call from each message's own result, or None when
    ``response`` is not a Postmark batch answer with one result per message of ``parts``."""
    if anymail_esp() != "postmark" or response is None or response.status_code != 200:
        return None
    try:
        results = response.json()
    except ValueError:
        return None
    if not isinstance(results, list) or len(results) != len(parts):
        return None
    if not all(isinstance(result, dict) and isinstance(result.get("ErrorCode", 0), int) for result in results):
        return None
    message_ids, refused, not_taken = [], set(), set()
    for part, result in zip(parts, results):
        code, text = result.get("ErrorCode", 0), str(result.get("Message", ""))
        message_ids.append(str(result.get("MessageID") or "") if code == 0 else "")
        if code == POSTMARK_INACTIVE or (code == POSTMARK_INVALID_REQUEST and POSTMARK_INVALID_RECIPIENT.match(text)):
            refused.add(part.to.lower())
        elif code != 0:
            not_taken.add(part.to.lower())
    return BatchAnswer(message_ids, frozenset(refused), frozenset(not_taken))


# --- Amazon SES bulk answers, read entry by entry --------------------------------------
#
# SES answers a bulk call with one result per entry, in the order sent, each with its own Status.
# anymail makes each recipient's "queued" (SUCCESS) or "failed" (any other Status), and raises for
# the whole call when every entry has the same other Status.

# The Statuses that say "not now", not "never": SES may take the entry later.
SES_DEFERRING_STATUSES = {
    "ACCOUNT_THROTTLED", "ACCOUNT_DAILY_QUOTA_EXCEEDED", "ACCOUNT_SENDING_PAUSED",
    "CONFIGURATION_SET_SENDING_PAUSED", "TRANSIENT_FAILURE",
}


def amazon_ses_batch_answer(response, parts):
    """The ``BatchAnswer`` of an SES bulk call from each entry's own Status, or None when
    ``response`` is not an SES bulk answer with one result per message of ``parts``."""
    if anymail_esp() != "amazon_ses" or not isinstance(response, dict):
        return None
    results = response.get("BulkEmailEntryResults")
    if not isinstance(results, list) or len(results) != len(parts):
        return None
    if not all(isinstance(result, dict) for result in results):
        return None
    message_ids, not_taken, deferred = [], set(), set()
    for part, result in zip(parts, results):
        status = result.get("Status")
        message_ids.append(str(result.get("MessageId") or "") if status == "SUCCESS" else "")
        if status in SES_DEFERRING_STATUSES:
            deferred.add(part.to.lower())
        elif status != "SUCCESS":
            not_taken.add(part.to.lower())
    return BatchAnswer(message_ids, not_taken=frozenset(not_taken), deferred=frozenset(deferred))


def header_key(name):
    """A header name as anymail writes it in Mailgun's ``h:`` fields (``Message-ID`` → ``Message-Id``)."""
    return "-".join(word.capitalize() for word in name.split("-"))


def address_spec(address):
    return address if PLAIN_ADDRESS.fullmatch(address) else parse_single_address(address).addr_spec
