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
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.template.loader import get_template
from django.urls import reverse
from django.utils.safestring import mark_safe

from subscriptions import tokens

from .emails import absolute_url, inline_css
from .templatetags.digest_text import paragraph

SUMMARY_LIMIT = 320
AUTHORS_SHOWN = 3
SUBJECT_TITLE_LIMIT = 70
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
VOTES = {"up": 1, "down": -1}


def short_summary(paper):
    """The AI summary when there is one, else the abstract cut at a sentence."""
    text = " ".join((paper.ai_summary or paper.abstract).split())
    if len(text) <= SUMMARY_LIMIT:
        return text
    kept = ""
    for sentence in SENTENCE_END.split(text):
        if len(kept) + len(sentence) > SUMMARY_LIMIT:
            break
        kept = f"{kept} {sentence}".strip()
    return kept or text[:SUMMARY_LIMIT].rsplit(" ", 1)[0] + "…"


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
        parts.append(f"▲ {paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}")
    if paper.num_comments:
        parts.append(f"💬 {paper.num_comments} comment{'s' if paper.num_comments != 1 else ''}")
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
    top = " ".join(top.split())
    if len(top) > SUBJECT_TITLE_LIMIT:
        top = top[: SUBJECT_TITLE_LIMIT - 1].rstrip() + "…"
    if edition.cadence == "weekly":
        return f"Paperboy weekly, {edition.date:%-d %b}: {top}"
    return f"Paperboy {edition.date:%a %-d %b}: {top}"


def preheader(ranked):
    others = [r.paper.title for r in ranked[1:3]]
    if not others:
        return "Today's pick, chosen for you"
    more = len(ranked) - 3
    return "Also: " + " · ".join(others) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class PaperBlock:
    """One paper's shared part of the email, rendered once per edition."""

    html: str
    text: str


# Per-reader values are escaped as css-inline's serialiser writes them, so an
# email assembled from pieces is byte for byte the email rendered whole.
TEXT_ESCAPES = str.maketrans({"&": "&amp;", "\xa0": "&nbsp;", "<": "&lt;", ">": "&gt;"})
ATTRIBUTE_ESCAPES = str.maketrans({"&": "&amp;", "\xa0": "&nbsp;", '"': "&quot;"})
FRAME_SLOTS = {  # slot: (context key, in an attribute)
    "preheader": ("preheader", False),
    "email": ("email", False),
    "view": ("view_url", True),
    "preferences": ("preferences_url", True),
    "unsubscribe": ("unsubscribe_url", True),
    "feed": ("feed_url", True),
}
ITEM_SLOTS = {"rank": ("rank", False), "reason": ("reason", False), "why": ("why", False),
              "like": ("like_url", True), "dislike": ("dislike_url", True)}


def ascii_html(html):
    """Non-ASCII characters as numeric references (``👍`` → ``&#128077;``): the same page.

    A Python string holding one emoji stores every character in four bytes; a
    digest batch is hundreds of these strings, and the ESP payload is built from
    them, so ASCII keeps a send worker's memory and JSON encoding four times lighter.
    """
    return html if html.isascii() else html.encode("ascii", "xmlcharrefreplace").decode("ascii")


def inline_html(html):
    return ascii_html(inline_css(html))


def escape_text(value):
    return ascii_html(str(value).translate(TEXT_ESCAPES))


def escape_attribute(value):
    return ascii_html(str(value).translate(ATTRIBUTE_ESCAPES))


@lru_cache(maxsize=8192)
def why_paragraph(reason):
    """The plain-text why-line, wrapped: readers share a few thousand distinct reasons."""
    return paragraph(f"Why: {reason}")


@dataclass(frozen=True)
class BodyFormat:
    """How one body (HTML or plain text) of the digest is cut and filled."""

    template: str
    separator: str  # wraps the item marker in the rendered body
    finish: object  # applied to the whole rendered frame (CSS inlining for HTML)
    escape_text: object
    escape_attribute: object


HTML_BODY = BodyFormat("digest.html", "<!--{}-->", inline_html, escape_text, escape_attribute)
TEXT_BODY = BodyFormat("digest.txt", "{}", str, str, str)  # the text template does not autoescape


class BodyPieces:
    """One body of the email cut into pre-rendered pieces with per-reader slots.

    The body's template is rendered (HTML: autoescaped, then CSS-inlined) with
    a placeholder for every per-reader value, once per edition; each paper's
    item is rendered once, when a reader first gets it. A reader's body is
    then the pieces joined with their own values, escaped for their place.
    """

    def __init__(self, renderer, body):
        self.renderer = renderer
        self.body = body
        self.nonce = secrets.token_hex(6)
        self.slot = re.compile(f"PB{self.nonce}S([a-z]+)E")
        self.marker = f"PB{self.nonce}M"
        self.head = self.tail = None
        self.items = {}
        self.frame_slots = self.item_slots = ()

    def placeholder(self, name):
        return f"PB{self.nonce}S{name}E"

    def compile(self, piece):
        """[(literal, slot or None), …] for a piece."""
        parts = self.slot.split(piece)
        return [(parts[i], parts[i + 1] if i + 1 < len(parts) else None) for i in range(0, len(parts), 2)]

    def prepare(self, papers):
        missing = [p for p in dict.fromkeys(papers) if p.pk not in self.items]
        if not missing and self.head is not None:
            return
        missing = missing or papers[:1]
        renderer = self.renderer
        item_slots = {key: self.placeholder(slot) for slot, (key, _) in ITEM_SLOTS.items()}
        context = {
            "marker": self.marker,
            "subscriber": {"email": self.placeholder("email")},
            "items": [{"block": renderer.block(p), "paper": p, **item_slots} for p in missing],
            **{key: self.placeholder(slot) for slot, (key, _) in FRAME_SLOTS.items() if key != "email"},
            **renderer.edition_context(),
        }
        rendered = self.body.finish(renderer.templates[self.body.template].render(context))
        pieces = rendered.split(self.body.separator.format(self.marker))
        if len(pieces) != len(missing) + 2:
            raise ValueError(f"{self.body.template}: the items could not be cut into pieces")
        if self.head is None:
            self.head, self.tail = self.compile(pieces[0]), self.compile(pieces[-1])
            self.frame_slots = self.used(FRAME_SLOTS, self.head + self.tail)
        for paper, piece in zip(missing, pieces[1:-1]):
            self.items[paper.pk] = self.compile(piece)
        if missing:
            self.item_slots = self.used(ITEM_SLOTS, self.items[missing[0].pk])

    def used(self, slots, parts):
        """(slot, context key, escape) for the slots ``parts`` fill: nothing else is escaped."""
        present = {slot for _, slot in parts if slot is not None}
        body = self.body
        return [
            (slot, key, body.escape_attribute if attribute else body.escape_text)
            for slot, (key, attribute) in slots.items()
            if slot in present
        ]

    @staticmethod
    def values(slots, source):
        return {slot: escape(source[key]) for slot, key, escape in slots}

    def assemble(self, context):
        self.prepare([item["paper"] for item in context["items"]])
        values = self.values(self.frame_slots, {**context, "email": context["subscriber"].email})
        out = []
        self.fill(self.head, values, out)
        for item in context["items"]:
            self.fill(self.items[item["paper"].pk], self.values(self.item_slots, item), out)
        self.fill(self.tail, values, out)
        return "".join(out)

    @staticmethod
    def fill(parts, values, out):
        for literal, slot in parts:
            out.append(literal)
            if slot is not None:
                out.append(values[slot])


@dataclass(frozen=True)
class RenderedDigest:
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


class DigestLinks:
    """Every per-reader link of a digest, signed with keys derived once per renderer."""

    def __init__(self):
        self.makers = {
            purpose: tokens.TokenMaker(purpose)
            for purpose in (tokens.FEEDBACK, tokens.VIEW, tokens.FEED, tokens.UNSUBSCRIBE, tokens.PREFERENCES)
        }
        vote = token_url("digest:vote", 1, "up")  # {paper} and {choice} filled in per paper
        self.vote = lambda token: vote(token).removesuffix("/1/up/") + "/{paper}/{choice}/"
        self.view = token_url("digest:view_in_browser")
        self.feed = token_url("digest:feed")
        self.unsubscribe = token_url("subscriptions:unsubscribe")
        self.preferences = token_url("subscriptions:preferences")

    def token(self, subscriber, purpose, **extra):
        return self.makers[purpose].make(subscriber, **extra)

    def for_reader(self, subscriber, edition):
        return {
            "vote_url": self.vote(self.token(subscriber, tokens.FEEDBACK, e=edition.pk)),
            "view_url": self.view(self.token(subscriber, tokens.VIEW, e=edition.pk)),
            "feed_url": self.feed(self.token(subscriber, tokens.FEED)),
            "unsubscribe_url": self.unsubscribe(self.token(subscriber, tokens.UNSUBSCRIBE)),
            "preferences_url": self.preferences(self.token(subscriber, tokens.PREFERENCES)),
        }


class DigestRenderer:
    """Renders the digests of one edition; paper blocks are rendered once and reused."""

    def __init__(self, edition):
        self.edition = edition
        self.edition_url = absolute_url(
            reverse("digest:edition", args=[edition.cadence, edition.date.isoformat()])
        )
        self.templates = {
            name: get_template(f"emails/{name}")
            for name in ("digest.html", "digest.txt", "digest_paper.html", "digest_paper.txt")
        }
        self.blocks = {}
        self.links = DigestLinks()
        self.html_pieces = BodyPieces(self, HTML_BODY)
        self.text_pieces = BodyPieces(self, TEXT_BODY)

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
        links = self.links.for_reader(subscriber, self.edition)
        vote_url = links.pop("vote_url")
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
                    "like_url": vote_url.format(paper=r.paper.pk, choice="up"),
                    "dislike_url": vote_url.format(paper=r.paper.pk, choice="down"),
                }
                for rank, r in enumerate(ranked, start=1)
            ],
            "preheader": preheader(ranked),
            **self.edition_context(),
            **links,
        }

    def render(self, subscriber, ranked):
        context = self.context(subscriber, ranked)
        return RenderedDigest(
            subject=digest_subject(self.edition, ranked),
            context=context,
            text=self.text_pieces.assemble(context),
            html=self.html_pieces.assemble(context),
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


def render_digest(subscriber, edition, ranked):
    """Return (subject, context, (text, html)) for one subscriber's digest."""
    digest = DigestRenderer(edition).render(subscriber, ranked)
    return digest.subject, digest.context, (digest.text, digest.html)


def delivered_papers(delivery):
    """The papers of a sent digest as RankedPaper rows, from the ledger (blocked papers left out)."""
    from papers.models import Paper

    from .ranking import RankedPaper

    papers = Paper.objects.filter(pk__in=delivery.paper_ids, block__isnull=True).in_bulk()
    return [
        RankedPaper(papers[pid], 0.0, 0.0, delivery.reasons.get(str(pid), ""))
        for pid in delivery.paper_ids
        if pid in papers
    ]


def render_delivery(delivery):
    """A digest as it was sent (same papers, same reasons), rebuilt from the ledger."""
    return DigestRenderer(delivery.edition).render(delivery.subscriber, delivered_papers(delivery))


def render_delivery_html(delivery):
    return render_delivery(delivery).html
