"""The digest email: subject, preheader, links and the two bodies.

``DigestRenderer`` renders one edition's digests. What every reader shares,
each paper's block (title, authors, summary, links), is rendered once per
edition from ``emails/digest_paper.{html,txt}`` and marked safe; a reader's
email is the ``emails/digest.{html,txt}`` frame around those blocks with what
is theirs alone: rank, why-line, vote links, footer links. All of it is
Django templates, autoescaped; nothing is built by concatenating HTML.
"""

import re
import secrets
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from json.encoder import encode_basestring_ascii
from operator import attrgetter
from typing import NamedTuple

from django.conf import settings
from django.template.loader import get_template
from django.urls import reverse
from django.utils.safestring import mark_safe

from subscriptions import tokens

from .emails import absolute_url, inline_css
from .templatetags.digest_text import paragraph
from .trending import counted

SUMMARY_LIMIT = 320
AUTHORS_SHOWN = 3
SUBJECT_TITLE_LIMIT = 70
# A full stop, ! or ? (maybe closing a quote or a bracket) and a space. Sentences may start in
# lowercase ("tpSGD generalizes"), so what follows does not decide; the word before may.
ITEM_INDENT = 4  # a text item's lines, under its rank (" 1. ", "10. ")
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+")
# Words that end in a full stop without ending the sentence ("e.g. the", "et al. propose").
ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "al.", "cf.", "vs.", "fig.", "figs.", "eq.", "eqs.", "sec.", "approx.", "resp.", "no.",
    "w.r.t.", "a.k.a.",
})
VOTES = {"up": 1, "down": -1}
# Printable ASCII but " & < > and backslash: text that no escaping here (HTML text, HTML
# attribute, the inside of a JSON string) changes. A reader's links are all such text.
UNCHANGED_BY_ESCAPING = re.compile(r"[ !#-%'-;=?-\[\]-~]*").fullmatch


def short_summary(paper):
    """The AI summary when there is one, else the abstract cut at a sentence."""
    text = " ".join((paper.ai_summary or paper.abstract).split())
    if len(text) <= SUMMARY_LIMIT:
        return text
    kept = ""
    for sentence in sentences(text):
        if len(kept) + len(sentence) > SUMMARY_LIMIT:
            break
        kept = f"{kept} {sentence}".strip()
    return kept or text[:SUMMARY_LIMIT].rsplit(" ", 1)[0] + "…"


def sentences(text):
    """``text`` split into sentences, not after an abbreviation such as "e.g." or "et al."."""
    found, start = [], 0
    for end in SENTENCE_END.finditer(text):
        last_word = text[start:end.start()].rsplit(None, 1)[-1].lstrip("([\"'").lower()
        if last_word not in ABBREVIATIONS:
            found.append(text[start:end.start()])
            start = end.end()
    found.append(text[start:])
    return found


def author_line(paper):
    names = paper.author_names or []
    if names:
        shown = ", ".join(names[:AUTHORS_SHOWN])
        return f"{shown} et al." if len(names) > AUTHORS_SHOWN else shown
    if paper.authors_count:
        return f"{paper.authors_count} author{'s' if paper.authors_count != 1 else ''}"
    return ""


def paper_page_url(paper, fallback):
    return paper.hf_url or paper.arxiv_url or fallback


def meta_line(paper):
    """Authors, organisation, upvotes and comments: the parts the paper has."""
    parts = [author_line(paper), paper.organization]
    if paper.upvotes:
        parts.append(f"▲ {counted(paper.upvotes, 'upvote')}")
    if paper.num_comments:
        parts.append(f"💬 {counted(paper.num_comments, 'comment')}")
    return [p for p in parts if p]


def paper_links(paper):
    links = [
        ("arXiv", paper.arxiv_url),
        ("PDF", paper.pdf_url),
        ("Hugging Face", paper.hf_url),
        ("Code", paper.code_url),
        ("Project", paper.project_url),
    ]
    return [(label, url) for label, url in links if url]


def digest_subject(edition, ranked):
    top = ranked[0].paper.title if ranked else "nothing new"
    return subject_line(edition.cadence, edition.date, top)


@lru_cache(maxsize=4096)
def subject_line(cadence, date, top):
    """The subject for a digest led by the paper titled ``top``: readers share a few hundred."""
    top = " ".join(top.split())
    if len(top) > SUBJECT_TITLE_LIMIT:
        top = shortened(top, SUBJECT_TITLE_LIMIT)
    # "=?" starts an RFC 2047 encoded word, which a mail client decodes in a Subject (to a
    # right-to-left override, say): a word joiner, which shows as nothing, keeps it as written.
    top = top.replace("=?", "=\u2060?")
    if cadence == "weekly":
        return f"Paperboy weekly, {date:%-d %b}: {top}"
    return f"Paperboy {date:%a %-d %b}: {top}"


def shortened(text, limit):
    """``text`` cut to ``limit`` characters with "…", after its last whole word when that keeps
    at least half of it: "Beyond Last-Iterate…", not "Beyond Last-Iterate Con…". A text without
    spaces to cut at (a long word, CJK) is cut where the limit falls."""
    cut = text[: limit - 1]
    if text[limit - 1] != " ":  # the limit falls inside a word
        words = cut.rsplit(" ", 1)[0]
        if len(words) >= limit // 2:
            cut = words
    return cut.rstrip(" ,;:–—-(") + "…"


def preheader(ranked):
    others = [r.paper.title for r in ranked[1:3]]
    if not others:
        return "One paper, picked for you"  # daily or weekly alike
    more = len(ranked) - 3
    return "Also: " + " · ".join(others) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class PaperBlock:
    """One paper's shared part of the email, rendered once per edition."""

    html: str
    text: str


# Per-reader values are escaped as css-inline's serialiser writes them (``escape_text``,
# ``escape_attribute``), so an email assembled from pieces is byte for byte the email
# rendered whole.
FRAME_SLOTS = {  # slot: (context key, in an attribute)
    "preheader": ("preheader", False),
    "email": ("email", False),
    "view": ("view_url", True),
    "preferences": ("preferences_url", True),
    "unsubscribe": ("unsubscribe_url", True),
    "feed": ("feed_url", True),
}
FRAME_ORDER = tuple(FRAME_SLOTS)
# How a piece's fill takes its values: its parameters, and what each slot reads of them.
# The frame's values come as one list in FRAME_ORDER. An item's come apart: its rank, its
# (reason, why-line) pair as the reader's reason is shown in this body, and ``vote``, the
# reader's vote link up to the paper (``…/vote/<token>``; the paper and the choice follow
# it in the piece).
FRAME_FILL = (("values",), {slot: f"values[{n}]" for n, slot in enumerate(FRAME_ORDER)})
ITEM_FILL = (("rank", "reason", "vote"), {"rank": "rank", "reason": "reason[0]", "why": "reason[1]", "vote": "vote"})
# Frame values many readers share (the preheader names papers, not the reader): escaped once each.
SHARED_VALUES = frozenset({"preheader"})
LINK_KEYS = frozenset({"vote_base", "view_url", "feed_url", "unsubscribe_url", "preferences_url"})
KEPT_PER_CACHE = 20_000  # why-lines or preheaders, each escaped once (``kept``)


def ascii_html(html):
    """Non-ASCII characters as numeric references (``👍`` → ``&#128077;``): the same page.

    A Python string holding one emoji stores every character in four bytes; a
    digest batch is hundreds of these strings, and the ESP payload is built from
    them, so ASCII keeps a send worker's memory and JSON encoding four times lighter.
    """
    return html if html.isascii() else html.encode("ascii", "xmlcharrefreplace").decode("ascii")


def inline_html(html):
    return ascii_html(inline_css(html))


def newlines_as_parsed(value):
    """``value`` with each CR or CRLF a LF, as css-inline's HTML parser reads its input before
    the serialiser writes it back. A title edited in the admin may hold a CRLF."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value


def escape_text(value):
    value = newlines_as_parsed(str(value))
    value = value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace("<", "&lt;").replace(">", "&gt;")
    return ascii_html(value)


def escape_attribute(value):
    value = newlines_as_parsed(str(value)).replace("&", "&amp;").replace("\xa0", "&nbsp;").replace('"', "&quot;")
    return ascii_html(value)


@lru_cache(maxsize=8192)
def why_paragraph(reason):
    """The plain-text why-line, wrapped: readers share a few thousand distinct reasons."""
    return paragraph(f"Why: {reason}", ITEM_INDENT)


def json_string(value):
    """``value`` as a JSON string, quotes included, in bytes: the ESP payload is bytes, and a
    body built of bytes goes into it without a copy being encoded per call.

    ASCII, as ``json.dumps`` writes it by default: one "▲" in a text body would
    otherwise widen a whole batch payload to two or four bytes per character.
    """
    return encode_basestring_ascii(value).encode("ascii")


def json_inside(value):
    """``value`` as it is written inside a JSON string (``json_string`` without the quotes)."""
    return json_string(value)[1:-1]


def in_json(escape):
    return lambda value: json_inside(escape(value))


def ascii_bytes(value):
    return value.encode("ascii")


@dataclass(frozen=True)
class BodyFormat:
    """How one body (HTML or plain text) of the digest is cut and filled."""

    template: str
    separator: str  # wraps the item marker in the rendered body
    finish: object  # applied to the whole rendered frame (CSS inlining for HTML)
    escape_text: object
    escape_attribute: object
    literal: object = str  # applied to each pre-rendered piece
    unescaped: object = str  # applied to a value no escaping changes (a link, a rank)
    join: object = "".join
    rank_width: int = 0  # ranks right-aligned to this width, as the template's ``rjust`` writes them

    def escape(self, value, attribute):
        """``value`` escaped for an attribute or for text; as it is when no escaping changes it."""
        if UNCHANGED_BY_ESCAPING(value):
            return self.unescaped(value)
        return (self.escape_attribute if attribute else self.escape_text)(value)

    def for_json(self):
        """The same body written inside a JSON string, in ASCII bytes, pieces and values escaped
        once each: an ESP batch payload is joined from the bodies as they are, without
        re-escaping or encoding megabytes of HTML per call."""
        return replace(self, escape_text=in_json(self.escape_text), escape_attribute=in_json(self.escape_attribute),
                       literal=json_inside, unescaped=ascii_bytes, join=b"".join)


HTML_BODY = BodyFormat("digest.html", "<!--{}-->", inline_html, escape_text, escape_attribute)
# The text template does not autoescape; its ranks line up (" 9." above "10.") over the
# items' four-space indent.
TEXT_BODY = BodyFormat("digest.txt", "{}", str, str, str, rank_width=2)


def kept(cache, key, value):
    """``cache[key] = value``, the cache emptied first once it holds KEPT_PER_CACHE values: what
    readers share is kept for the renderer's life, and a long send meets ever more of it."""
    if len(cache) >= KEPT_PER_CACHE:
        cache.clear()
    cache[key] = value
    return value


@dataclass(frozen=True)
class JsonText:
    """A body already escaped for the inside of a JSON string, in ASCII bytes (see
    ``BodyFormat.for_json``)."""

    escaped: bytes


class BodyPieces:
    """One body of the email cut into pre-rendered pieces with per-reader slots.

    The body's template is rendered (HTML: autoescaped, then CSS-inlined) with
    a placeholder for every per-reader value, once per edition; each paper's
    item is rendered once, when a reader first gets it. Each piece is kept as
    a ``Piece``, its literals with its slots between them, so a reader's body is
    the pieces filled with their own values, escaped for their place.
    """

    def __init__(self, renderer, body):
        self.renderer = renderer
        self.body = body
        self.nonce = secrets.token_hex(6)
        self.slot = re.compile(f"PB{self.nonce}S([a-z]+)E")
        self.marker = f"PB{self.nonce}M"
        self.head = self.tail = None
        self.frame_slots = set()
        self.item_fills = {}  # each paper's item, as its ``Piece.fill``, by paper id
        self.item_slots = set()
        self.frame_plans = {}
        self.reasons = {}
        self.shared = {}
        self.ranks = [body.unescaped(str(n).rjust(body.rank_width)) for n in range(21)]

    def placeholder(self, name):
        return f"PB{self.nonce}S{name}E"

    def compile(self, piece, fill):
        """``piece`` as a ``Piece`` filled as ``fill`` says (``FRAME_FILL`` or ``ITEM_FILL``)."""
        parts = self.slot.split(piece)
        parts[0::2] = [self.body.literal(literal) for literal in parts[0::2]]
        return Piece(parts, *fill)

    def prepare(self, papers):
        """Render the frame (once) and the items of ``papers`` not rendered yet."""
        missing = [p for p in {p.pk: p for p in papers}.values() if p.pk not in self.item_fills]
        if not missing and self.head is not None:
            return
        missing = missing or papers[:1]
        renderer = self.renderer
        vote = self.placeholder("vote")
        context = {
            "marker": self.marker,
            "subscriber": {"email": self.placeholder("email")},
            "items": [
                {
                    "block": renderer.block(p), "paper": p, "rank": self.placeholder("rank"),
                    "reason": self.placeholder("reason"), "why": self.placeholder("why"),
                    "like_url": vote_link(vote, p.pk, "up"), "dislike_url": vote_link(vote, p.pk, "down"),
                }
                for p in missing
            ],
            **{key: self.placeholder(slot) for slot, (key, _) in FRAME_SLOTS.items() if key != "email"},
            **renderer.edition_context(),
        }
        rendered = self.body.finish(renderer.templates[self.body.template].render(context))
        pieces = rendered.split(self.body.separator.format(self.marker))
        if len(pieces) != len(missing) + 2:
            raise ValueError(f"{self.body.template}: the items could not be cut into pieces")
        if self.head is None:
            self.head, self.tail = self.compile(pieces[0], FRAME_FILL), self.compile(pieces[-1], FRAME_FILL)
            self.frame_slots = self.head.names() | self.tail.names()
            self.frame_plans.clear()  # made for no slots at all, if asked for before
        for paper, piece in zip(missing, pieces[1:-1]):
            item = self.compile(piece, ITEM_FILL)
            self.item_fills[paper.pk] = item.fill
            self.item_slots = item.names()

    def frame_values(self, values, verbatim=frozenset()):
        """The frame's slot values in order, escaped for their place (unused ones left empty).

        ``verbatim``: keys whose values no escaping changes (``DigestLinks.verbatim``).
        """
        plan = self.frame_plans.get(verbatim)
        if plan is None:
            plan = self.frame_plans[verbatim] = self.frame_plan(verbatim)
        return [write(values[key]) for key, write in plan]

    def frame_plan(self, verbatim):
        """(context key, how its value is written) for each frame slot, in order: decided once
        per renderer, not for every reader's every slot."""
        body, empty = self.body, self.body.unescaped("")
        return [
            (key, (lambda value: empty) if slot not in self.frame_slots
             else body.unescaped if key in verbatim
             else partial(self.escape_shared, attribute=attribute) if key in SHARED_VALUES
             else partial(body.escape, attribute=attribute))
            for slot, (key, attribute) in FRAME_SLOTS.items()
        ]

    def escape_shared(self, value, attribute):
        """``body.escape`` for a value readers share, escaped once per renderer."""
        escaped = self.shared.get((value, attribute))
        if escaped is None:
            escaped = kept(self.shared, (value, attribute), self.body.escape(value, attribute))
        return escaped

    def reason_values(self, reason):
        """(reason, why-paragraph) as the items show them, escaped: readers share a few thousand reasons."""
        values = self.reasons.get(reason)
        if values is None:
            body = self.body
            values = kept(self.reasons, reason, (
                body.escape_text(reason) if "reason" in self.item_slots else body.unescaped(""),
                body.escape_text(why_paragraph(reason)) if "why" in self.item_slots else body.unescaped(""),
            ))
        return values

    def rank(self, rank):
        """``rank`` as the items write it: the first twenty are made once."""
        return self.ranks_through(rank)[rank]

    def ranks_through(self, rank):
        """The ranks as the items write them (``ranks[n]`` is rank ``n``), up to ``rank`` at least."""
        if rank >= len(self.ranks):
            self.ranks += [
                self.body.unescaped(str(n).rjust(self.body.rank_width)) for n in range(len(self.ranks), rank + 1)
            ]
        return self.ranks

    def assemble(self, values, items, vote_base, verbatim=frozenset()):
        """A reader's body. ``values``: the frame's values by context key; ``items``: their
        ``DigestItems``; ``vote_base``: the reader's vote link up to the paper; ``verbatim``:
        the keys (of ``values``, and ``vote_base``) to write as they are."""
        fills = self.item_fills
        if self.head is None or not all(map(fills.__contains__, items.ids)):
            self.prepare([r.paper for r in items.ranked])
        body = self.body
        frame = self.frame_values(values, verbatim)
        vote = body.unescaped(vote_base) if "vote_base" in verbatim else body.escape(vote_base, attribute=True)
        ranks = self.ranks_through(len(items.ids))
        shown, show = self.reasons.get, self.reason_values
        out = []
        self.head.fill(out, frame)
        for fill, rank, reason in zip(map(fills.__getitem__, items.ids), ranks[1:], items.reasons):
            fill(out, rank, shown(reason) or show(reason), vote)
        self.tail.fill(out, frame)
        return body.join(out)


PAPER_ID, REASON = attrgetter("paper.id"), attrgetter("reason")


class DigestItems(NamedTuple):
    """A reader's papers as ``BodyPieces.assemble`` reads them, for both bodies: their ids and
    their reasons in rank order, and the ``RankedPaper`` rows (for items not rendered yet)."""

    ids: list
    reasons: list
    ranked: list

    @classmethod
    def of(cls, ranked):
        return cls(list(map(PAPER_ID, ranked)), list(map(REASON, ranked)), ranked)


class Piece:
    """Pre-rendered text with slots: literals at the even positions of ``parts``, slot names at
    the odd ones. ``fill(out, *arguments)`` appends the piece to ``out``, each slot's value
    read from the arguments as ``reads`` says (``FRAME_FILL``, ``ITEM_FILL``)."""

    def __init__(self, parts, parameters, reads):
        self.parts = parts
        self.fill = filler(parts[0::2], [reads[name] for name in parts[1::2]], parameters)

    def names(self):
        return set(self.parts[1::2])  # the odd positions hold the slot names


def filler(literals, reads, parameters):
    """``fill(out, *parameters)``: appends the literals to ``out`` with the values ``reads``
    (expressions of the parameters, one per slot) between them.

    Generated once per piece, as ``dataclasses`` generates its methods: one tuple
    display of the literals and values is a third of the cost of copying the
    piece's list and assigning a slice, and a reader's two bodies take two fills
    per paper and two per frame. The source holds only the parameters and their
    reads, fixed in this module (``FRAME_FILL``, ``ITEM_FILL``); the literals are
    the function's globals.
    """
    names = {f"_{n}": literal for n, literal in enumerate(literals)}
    terms = [f"_{n}, {read}" for n, read in enumerate(reads)] + [f"_{len(reads)}"]
    exec(f"def fill(out, {', '.join(parameters)}):\n    out += ({', '.join(terms)},)\n", names)
    return names["fill"]


class RenderedDigest(NamedTuple):
    subject: str
    context: dict
    text: str
    html: str


def token_url(name, *more_args):
    """``reverse(name, args=[token, *more_args])`` as a function of the token: one reverse()
    per renderer instead of one per link. Tokens are URL-safe base64 and ``:``, which
    reverse() leaves as they are (a test compares the two)."""
    sentinel = "PAPERBOYTOKEN"
    prefix, suffix = absolute_url(reverse(name, args=[sentinel, *more_args])).split(sentinel)
    return lambda token: f"{prefix}{token}{suffix}"


def vote_link(vote_base, paper_id, choice):
    """A vote link from the reader's vote link up to the paper (``DigestLinks.vote``)."""
    return f"{vote_base}/{paper_id}/{choice}/"


class DigestLinks:
    """Every per-reader link of a digest, signed with keys derived once per renderer."""

    def __init__(self):
        self.makers = {
            purpose: tokens.TokenMaker(purpose)
            for purpose in (tokens.FEEDBACK, tokens.VIEW, tokens.FEED, tokens.UNSUBSCRIBE, tokens.PREFERENCES)
        }
        vote = token_url("digest:vote", 1, "up")
        self.vote = lambda token: vote(token).removesuffix(vote_link("", 1, "up"))
        self.view = token_url("digest:view_in_browser")
        self.feed = token_url("digest:feed")
        self.unsubscribe = token_url("subscriptions:unsubscribe")
        self.preferences = token_url("subscriptions:preferences")
        # A token is URL-safe base64 and ":" (``TokenMaker.sign``), which no escaping changes:
        # when the site's URLs around it need none either, a reader's links are written as they are.
        sample = "eyJzIjoxfQ:1abc:Zm9v-_"
        urls = (self.vote, self.view, self.feed, self.unsubscribe, self.preferences)
        self.verbatim = LINK_KEYS if all(UNCHANGED_BY_ESCAPING(url(sample)) for url in urls) else frozenset()

    def for_reader(self, subscriber, edition):
        """The reader's links: two payloads (with and without the edition), five signatures."""
        with_edition, plain = tokens.digest_token_values(subscriber, edition.pk)
        makers = self.makers
        return {
            "vote_base": self.vote(makers[tokens.FEEDBACK].sign(with_edition)),
            "view_url": self.view(makers[tokens.VIEW].sign(with_edition)),
            "feed_url": self.feed(makers[tokens.FEED].sign(plain)),
            "unsubscribe_url": self.unsubscribe(makers[tokens.UNSUBSCRIBE].sign(plain)),
            "preferences_url": self.preferences(makers[tokens.PREFERENCES].sign(plain)),
        }


class DigestRenderer:
    """Renders the digests of one edition; paper blocks are rendered once and reused."""

    def __init__(self, edition):
        self.edition = edition
        self.edition_url = absolute_url(edition.public_path())
        self.templates = {
            name: get_template(f"emails/{name}")
            for name in ("digest.html", "digest.txt", "digest_paper.html", "digest_paper.txt")
        }
        self.blocks = {}
        self.links = DigestLinks()
        self.pieces = {
            False: (BodyPieces(self, TEXT_BODY), BodyPieces(self, HTML_BODY)),
            True: (BodyPieces(self, TEXT_BODY.for_json()), BodyPieces(self, HTML_BODY.for_json())),
        }

    def edition_context(self):
        return {
            "edition": self.edition,
            "edition_url": self.edition_url,
            "site_url": settings.SITE_URL,
            "postal_address": settings.EMAIL_POSTAL_ADDRESS,
            "contact_email": settings.CONTACT_EMAIL,
        }

    def block(self, paper):
        if paper.pk not in self.blocks:
            context = {
                "paper": paper,
                "page_url": paper_page_url(paper, self.edition_url),
                "meta": meta_line(paper),
                "summary": short_summary(paper),
                "links": paper_links(paper),
            }
            self.blocks[paper.pk] = PaperBlock(
                html=mark_safe(self.templates["digest_paper.html"].render(context)),  # autoescaped above
                text=self.templates["digest_paper.txt"].render(context),
            )
        return self.blocks[paper.pk]

    def context(self, subscriber, ranked):
        """Everything the digest templates show, for rendering the email whole."""
        links = self.links.for_reader(subscriber, self.edition)
        vote_base = links.pop("vote_base")
        return {
            "subscriber": subscriber,
            "edition": self.edition,
            "items": [
                {
                    "block": self.block(r.paper),
                    "paper": r.paper,
                    "rank": rank,
                    "reason": r.reason,
                    "why": why_paragraph(r.reason),
                    "like_url": vote_link(vote_base, r.paper.pk, "up"),
                    "dislike_url": vote_link(vote_base, r.paper.pk, "down"),
                }
                for rank, r in enumerate(ranked, start=1)
            ],
            "preheader": preheader(ranked),
            **self.edition_context(),
            **links,
        }

    def render(self, subscriber, ranked, *, for_json=False):
        """The reader's email from the pre-rendered pieces; ``context`` holds its links only.

        ``for_json``: the bodies come as ``JsonText``, ready for an ESP's JSON payload.
        """
        links = self.links.for_reader(subscriber, self.edition)
        vote_base = links.pop("vote_base")
        values = {**links, "email": subscriber.email, "preheader": preheader(ranked)}
        items = DigestItems.of(ranked)
        text_pieces, html_pieces = self.pieces[for_json]
        verbatim = self.links.verbatim
        text = text_pieces.assemble(values, items, vote_base, verbatim)
        html = html_pieces.assemble(values, items, vote_base, verbatim)
        return RenderedDigest(
            subject=digest_subject(self.edition, ranked),
            context={"subscriber": subscriber, "edition": self.edition, **links},
            text=JsonText(text) if for_json else text,
            html=JsonText(html) if for_json else html,
        )

    def render_whole(self, subscriber, ranked):
        """The same email rendered in one piece, for each body (the reference for ``render``)."""
        context = self.context(subscriber, ranked)
        return RenderedDigest(
            subject=digest_subject(self.edition, ranked),
            context=context,
            text=self.templates["digest.txt"].render(context),
            html=inline_html(self.templates["digest.html"].render(context)),
        )


def delivered_papers(delivery):
    """The papers of a sent digest as RankedPaper rows, from the ledger (blocked papers left out)."""
    from papers.models import Paper

    from .ranking import RankedPaper

    papers = Paper.objects.filter(pk__in=delivery.paper_ids, block__isnull=True).in_bulk()
    why_lines = delivery.why_lines()
    return [
        RankedPaper(papers[pid], 0.0, 0.0, why_lines.get(pid, ""))
        for pid in delivery.paper_ids
        if pid in papers
    ]


def render_delivery(delivery):
    """A digest as it was sent (same papers, same reasons), rebuilt from the ledger."""
    return DigestRenderer(delivery.edition).render(delivery.subscriber, delivered_papers(delivery))


def render_delivery_html(delivery):
    return render_delivery(delivery).html
