"""Normalising and validating what people type: addresses, interests, time zones.

Every rule here raises ``ValidationError`` with a message meant for the person
at the keyboard; nothing here touches the database.
"""

import re
import unicodedata
import zoneinfo
from functools import lru_cache

import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

MAX_EMAIL_LENGTH = 254
MAX_INTERESTS = 20
MAX_INTEREST_LENGTH = 60
MIN_INTEREST_LENGTH = 2  # "RL" and "3D" are interests; a single letter matches half the papers
MAX_INTERESTS_TEXT_LENGTH = 1000

CATEGORY_LABELS = {
    "cs.LG": "Machine learning",
    "cs.CL": "Computation & language",
    "cs.CV": "Computer vision",
    "cs.AI": "Artificial intelligence",
    "stat.ML": "Statistical ML",
    "cs.RO": "Robotics",
    "cs.IR": "Information retrieval",
    "cs.NE": "Neural & evolutionary computing",
    "cs.SD": "Sound",
    "eess.AS": "Audio & speech",
}

INVALID_EMAIL = "Enter an email address like name@example.org."
# No "localhost" exception: a confirmation sent there would reach nobody.
_email_validator = EmailValidator(message=INVALID_EMAIL, allowlist=[])
_INTEREST_SEPARATORS = re.compile(r"[,;\n]")


def normalise_email(value):
    """Strip, lowercase and IDNA-encode the domain; the local part stays as typed."""
    value = (value or "").strip()
    if not value:
        raise ValidationError("Enter your email address.", code="required")
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValidationError("That address is too long to be real.", code="max_length")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise ValidationError(
            "An email address cannot contain line breaks or control characters.", code="control"
        )
    local, at, domain = value.rpartition("@")
    if not (local and at and domain):
        raise ValidationError(INVALID_EMAIL, code="invalid")
    if local.startswith('"'):
        # "victim"@example.org reaches victim@example.org: kept as typed, every spelling of one
        # mailbox would be a reader, a rate-limit key and a suppression hash of its own.
        raise ValidationError(
            "Quoted addresses are not supported: use the address without the quotes.", code="quoted_local_part"
        )
    if not local.isascii():
        # Mail for such addresses (SMTPUTF8) does not reach every mailbox, and not every ESP takes it.
        raise ValidationError(
            "Letters with accents or outside the Latin alphabet before the @ are not supported: "
            "use an address without them, if you have one.",
            code="non_ascii_local_part",
        )
    try:
        domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValidationError(
            "The part after the @ is not a valid domain name.", code="invalid_domain"
        ) from None
    address = f"{local}@{domain.lower()}"
    if len(address) > MAX_EMAIL_LENGTH:
        raise ValidationError("That address is too long to be real.", code="max_length")
    _email_validator(address)
    return address


def controls_as_spaces(text, keep=""):
    """``text`` with every control, format or other invisible character (Unicode category C:
    NUL, which PostgreSQL refuses, among them) but those in ``keep`` written as a space."""
    return "".join(" " if unicodedata.category(ch)[0] == "C" and ch not in keep else ch for ch in text)


def plain_line(text):
    """``text`` as one line of plain text: ``controls_as_spaces``, then runs of spaces as one."""
    return " ".join(controls_as_spaces(text).split())


def clean_interests(text):
    """Split on commas, semicolons or lines; tidy, de-duplicate and cap the list."""
    text = controls_as_spaces(text, keep="\n")
    terms = []
    seen = set()
    for raw in _INTEREST_SEPARATORS.split(text):
        term = " ".join(raw.split())
        if term and term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
    too_short = [t for t in terms if len(t) < MIN_INTEREST_LENGTH]
    if too_short:
        raise ValidationError(
            "“%(term)s” is too short to pick papers by: use a word or a phrase.",
            code="interest_too_short",
            params={"term": too_short[0]},
        )
    too_long = [t for t in terms if len(t) > MAX_INTEREST_LENGTH]
    if too_long:
        raise ValidationError(
            "Keep each interest to %(limit)d characters at most (“%(term)s…” is longer).",
            code="interest_too_long",
            params={"limit": MAX_INTEREST_LENGTH, "term": too_long[0][:30]},
        )
    if len(terms) > MAX_INTERESTS:
        raise ValidationError(
            "Up to %(limit)d interests, please: you listed %(count)d.",
            code="too_many_interests",
            params={"limit": MAX_INTERESTS, "count": len(terms)},
        )
    return ", ".join(terms)


@lru_cache(maxsize=1)
def timezone_names():
    """The IANA time zones this machine knows (zoneinfo.available_timezones), sorted."""
    return tuple(sorted(zoneinfo.available_timezones()))


@lru_cache(maxsize=1)
def timezone_groups():
    """Every zone but UTC, grouped by region: ("Africa", [("Africa/Abidjan", label), …]), …"""
    groups = {}
    for name in timezone_names():
        region, _, place = name.partition("/")
        if name != "UTC":
            groups.setdefault(region if place else "Other", []).append(
                (name, name.replace("_", " "))
            )
    return tuple(sorted(groups.items()))


def timezone_choices():
    return [("UTC", "UTC"), *timezone_groups()]


def category_choices():
    """The arXiv categories Paperboy fetches, with a readable label each."""
    return [
        (code, f"{CATEGORY_LABELS.get(code, code)} ({code})") for code in settings.ARXIV_CATEGORIES
    ]
