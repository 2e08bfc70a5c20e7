"""Signed, stateless tokens for the links in our emails.

Each purpose has its own salt, so a token made for one purpose (say,
confirming) is refused on another endpoint (say, unsubscribing). Tokens carry
the first characters of the subscriber's ``token_secret``: rotating that
secret revokes every link issued before. Confirmation tokens (of a new
subscription, of a new address) expire; the others live as long as the secret.

The subclasses of ``InvalidToken`` let a page say *why* a link does not work
(expired, or its subscriber deleted) without ever revealing more than that.
"""

import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii

from django.conf import settings
from django.core import signing

from .models import Subscriber

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
VIEW = "view"
FEED = "feed"
FEEDBACK = "feedback"
NEW_ADDRESS = "new-address"

CONFIRM_MAX_AGE = 7 * 24 * 60 * 60
NEW_ADDRESS_MAX_AGE = 2 * 24 * 60 * 60
# Purposes whose tokens carry the time they were made and expire (after ``MAX_AGES``).
MAX_AGES = {CONFIRM: CONFIRM_MAX_AGE, NEW_ADDRESS: NEW_ADDRESS_MAX_AGE}
SECRET_PREFIX_LENGTH = 10
MAX_TOKEN_LENGTH = 1000
HMAC_BLOCK = 64  # SHA-256's block size, in bytes


class InvalidToken(Exception):
    """The token is forged, truncated, expired, revoked or for another purpose."""


class ExpiredToken(InvalidToken):
    """Genuine, but older than the purpose allows."""


class UnknownSubscriber(InvalidToken):
    """Genuine, but the subscriber it names has since been deleted."""


@dataclass(frozen=True)
class TokenPayload:
    subscriber: Subscriber
    extra: dict
    revoked: bool = False  # only ever True with read_token(..., allow_revoked=True)


def _salt(purpose):
    return f"paperboy.subscriptions.{purpose}"


def make_token(subscriber, purpose, **extra):
    payload = {"s": subscriber.pk, "k": subscriber.token_secret[:SECRET_PREFIX_LENGTH], **extra}
    if purpose in MAX_AGES:
        return signing.TimestampSigner(salt=_salt(purpose)).sign_object(payload, compress=False)
    return signing.dumps(payload, salt=_salt(purpose), compress=False)


class TokenMaker:
    """``make_token`` for one purpose and many subscribers, with the signing key derived once.

    The tokens are exactly ``signing.dumps``'s (checked in the tests), and are
    read back by ``read_token``; ``signing.dumps`` derives the HMAC key from
    the salt and SECRET_KEY on every call, which is most of its cost when a
    digest run signs five links per reader. Purposes differ only in the key,
    so a caller signing one payload for several purposes encodes it once
    (``token_value``) and signs it per purpose (``sign``).
    """

    def __init__(self, purpose):
        if purpose in MAX_AGES:
            raise ValueError("expiring tokens are made one at a time with make_token")
        key_salt = f"{_salt(purpose)}signer".encode()
        key = hashlib.sha256(key_salt + settings.SECRET_KEY.encode()).digest().ljust(HMAC_BLOCK, b"\0")
        # HMAC (RFC 2104) with its two keyed SHA-256 states computed once: a signature is
        # then two copies and two short hashes, without looking the digest up by name.
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def make(self, subscriber, **extra):
        return self.sign(token_value(subscriber, **extra))

    def sign(self, value):
        """``value:signature``, the signature being Django's salted HMAC-SHA256."""
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(value.encode())
        outer.update(inner.digest())
        return f"{value}:{b64_text(outer.digest())}"


def token_value(subscriber, **extra):
    """The signed part of a token: the payload as ``signing.dumps`` encodes it, and the time."""
    pk = subscriber.pk
    if type(pk) is int and all(type(value) is int for value in extra.values()):
        # What json.dumps writes for these types, without building an encoder per call.
        fields = "".join(f",{encode_basestring_ascii(key)}:{value}" for key, value in extra.items())
        data = f"{payload_head(subscriber)}{fields}}}".encode()
    else:
        payload = {"s": pk, "k": subscriber.token_secret[:SECRET_PREFIX_LENGTH], **extra}
        data = json.dumps(payload, separators=(",", ":")).encode("latin-1")
    return f"{b64_text(data)}:{_timestamp(int(time.time()))}"


def payload_head(subscriber):
    """``{"s":<id>,"k":"<secret prefix>"`` as json.dumps writes them for an int id; the payload's
    other fields follow, then ``}``."""
    return f'{{"s":{subscriber.pk},"k":{encode_basestring_ascii(subscriber.token_secret[:SECRET_PREFIX_LENGTH])}'


def digest_token_values(subscriber, edition_id):
    """``(token_value(subscriber, e=edition_id), token_value(subscriber))``: the two payloads of a
    digest's links, sharing one read of the reader and one clock. A send makes them for every
    reader, and ``token_value``'s general path costs as much as three signatures."""
    if type(subscriber.pk) is not int or type(edition_id) is not int:
        return token_value(subscriber, e=edition_id), token_value(subscriber)
    head, stamp = payload_head(subscriber), _timestamp(int(time.time()))
    with_edition = b64_text(f'{head},"e":{edition_id}}}'.encode())
    return f"{with_edition}:{stamp}", f"{b64_text(f'{head}}}'.encode())}:{stamp}"


URL_SAFE = bytes.maketrans(b"+/", b"-_")


def b64_text(data):
    """``signing.b64_encode(data).decode()`` (URL-safe base64, unpadded) in one C call each step:
    a digest's send signs five links per reader."""
    return binascii.b2a_base64(data, newline=False).translate(URL_SAFE).rstrip(b"=").decode()


@lru_cache(maxsize=4)
def _timestamp(seconds):
    return signing.b62_encode(seconds)


def read_token(token, purpose, *, max_age=None, allow_revoked=False):
    """Return the subscriber (and extra fields) a token names, or raise InvalidToken.

    ``allow_revoked`` accepts a genuine token whose secret has since been
    rotated: unsubscribe links use it, because every email we ever sent must
    keep a working way out.
    """
    payload = signed_payload(token, purpose, max_age=max_age)
    subscriber = Subscriber.objects.filter(pk=payload["s"]).first()
    if subscriber is None:
        raise UnknownSubscriber("unknown subscriber")
    expected = subscriber.token_secret[:SECRET_PREFIX_LENGTH]
    # As bytes: compare_digest raises TypeError on str with non-ASCII characters.
    revoked = not hmac.compare_digest(
        str(payload.get("k", "")).encode("utf-8", "surrogatepass"), expected.encode()
    )
    if revoked and not allow_revoked:
        raise InvalidToken("revoked")
    extra = {k: v for k, v in payload.items() if k not in ("s", "k")}
    return TokenPayload(subscriber=subscriber, extra=extra, revoked=revoked)


def signed_payload(token, purpose, *, max_age=None):
    """The payload of a genuine token for ``purpose`` (the signature checked, nothing read
    from the database), or InvalidToken / ExpiredToken."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or oversized token")
    try:
        if purpose in MAX_AGES:
            signer = signing.TimestampSigner(salt=_salt(purpose))
            payload = signer.unsign_object(token, max_age=max_age or MAX_AGES[purpose])
        else:
            payload = signing.loads(token, salt=_salt(purpose))
    except signing.SignatureExpired as exc:
        raise ExpiredToken(str(exc)) from None
    except (signing.BadSignature, ValueError, TypeError, UnicodeError) as exc:
        raise InvalidToken(str(exc)) from None
    if not isinstance(payload, dict) or type(payload.get("s")) is not int:
        raise InvalidToken("malformed payload")
    return payload


def unsubscribe_token_subscriber_id(token):
    """The subscriber id a genuine unsubscribe token names, without reading the database.

    For RFC 8058 one-click POSTs: the signature (and purpose salt) is the whole
    check. The secret prefix is not compared, since revoked unsubscribe links
    keep working anyway (``read_token(..., allow_revoked=True)``); whether the
    subscriber still exists is left to the caller's UPDATE.
    """
    return signed_payload(token, UNSUBSCRIBE)["s"]
