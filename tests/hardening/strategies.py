"""Hostile input for the hardening tests: text, JSON, tokens and paper items."""

import json

from hypothesis import settings
from hypothesis import strategies as st

HARDENING = settings(parent=settings.get_profile("hardening"))

# Strings that have broken web apps before: markup, template syntax, header
# injection, control and bidi characters, a lone surrogate, formula cells.
HOSTILE_STRINGS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</title><svg/onload=alert(1)>",
    "javascript:alert(1)",
    "{{ settings.SECRET_KEY }}",
    "{% debug %}",
    "\r\nBcc: victim@example.org",
    "subject\nX-Injected: yes",
    "%0d%0aSet-Cookie: a=b",
    "\x00",
    "nul\x00byte",
    "\x1b[31mred",
    "\u202eevil\u202c",
    "\u2028line\u2029para",
    "\ud800",
    "a\udfffb",
    "\ufeffbom",
    "\uffff",
    "not\ufffexml",
    "=HYPERLINK(\"http://evil.example\")",
    "' OR '1'='1' --",
    "../../etc/passwd",
    "x" * 5000,
    "é" * 300,
    "\U0001f600" * 50,
    "",
    " ",
]

ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(alphabet=ANY_CHARACTER, max_size=120),
    st.builds(
        lambda a, b, c: a + b + c,
        st.text(max_size=20),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(alphabet=ANY_CHARACTER, max_size=20),
    ),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def anything_or(strategy):
    """Mostly ``strategy``, sometimes any JSON value at all."""
    return st.one_of(strategy, strategy, json_values)


arxiv_ids = st.one_of(
    st.from_regex(r"\A\d{4}\.\d{4,5}(v\d{1,3})?\Z"),
    st.from_regex(r"\A[a-z][a-z\-]{0,300}(\.[A-Z]{2})?/\d{7}(v\d{1,20})?\Z"),
    hostile_text,
)
counts = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=2**64),
    st.sampled_from([2**31 - 1, 2**31, 2**63, 10**30, 1.5, "12", True]),
)
timestamps = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-01-05T10:00:00.000Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-01-05T10:00:00+20:00",  # beyond PostgreSQL's ±15:59
            "2026-01-05T10:00:00+05:00:00.5",  # a fraction of a second, which PostgreSQL refuses
            "9999-12-31",
            "2026-02-30",
            "2026-01-05T25:00:00Z",
            "not a date",
        ]
    ),
    st.datetimes().map(lambda d: d.isoformat()),
    hostile_text,
)
urls = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "https://github.com/example/repo",
            "javascript:alert(1)",
            "https://example.org/\x00",
            "https://example.org/\ud800",
            "https://example.org/" + "a" * 600,
            "http://exa mple.org/",
        ]
    ),
    hostile_text.map(lambda t: "https://example.org/" + t),
)

hf_papers = st.fixed_dictionaries(
    {"id": arxiv_ids},
    optional={
        "title": anything_or(hostile_text),
        "summary": anything_or(hostile_text),
        "authors": anything_or(
            st.lists(
                st.fixed_dictionaries(
                    {"name": anything_or(hostile_text)}, optional={"hidden": st.booleans()}
                ),
                max_size=5,
            )
        ),
        "publishedAt": timestamps,
        "upvotes": counts,
        "githubStars": counts,
        "githubRepo": urls,
        "projectPage": urls,
        "ai_summary": anything_or(hostile_text),
        "ai_keywords": anything_or(st.lists(hostile_text, max_size=5)),
        "organization": anything_or(
            st.fixed_dictionaries({"fullname": anything_or(hostile_text)})
        ),
        "withdrawnAt": timestamps,
    },
)

hf_items = st.one_of(
    st.fixed_dictionaries(
        {"paper": hf_papers},
        optional={
            "title": anything_or(hostile_text),
            "summary": anything_or(hostile_text),
            "numComments": counts,
            "thumbnail": urls,
            "publishedAt": timestamps,
        },
    ),
    json_values,
)


def json_bytes(value):
    """JSON as an API would send it: lone surrogates escaped (``\\ud800``), never raw."""
    return json.dumps(value, ensure_ascii=True).encode("ascii")


# Tokens as they may arrive in a URL: anything a client can put in a path segment.
token_text = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:.", max_size=400),
    st.text(alphabet=ANY_CHARACTER, min_size=1, max_size=60),
    st.sampled_from(HOSTILE_STRINGS),
    st.binary(min_size=1, max_size=60).map(lambda b: b.decode("latin-1")),
)
