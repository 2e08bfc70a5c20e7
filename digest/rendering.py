"""The digest email: subject, preheader, links and the two bodies.

``DigestRenderer`` renders one edition's digests. What every reader shares,
each paper's block (title, authors, summary, links), is rendered once per
edition from ``emails/digest_paper.{html,txt}`` and marked safe; a reader's
email is the ``emails/digest.{html,txt}`` frame around those blocks with what
is theirs alone: rank, why-line, vote links, footer links. All of it is
Django templates, autoescaped; nothing is built by concatenating HTML.
"""

import re
from dataclasses import dataclass

from django.conf import settings
from django.template.loader import get_template
from django.urls import reverse
from django.utils.safestring import mark_safe

from subscriptions import tokens

from .emails import absolute_url, inline_css

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


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    context: dict
    text: str
    html: str


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
        vote_url = vote_url_pattern(tokens.make_token(subscriber, tokens.FEEDBACK, e=self.edition.pk))
        view_token = tokens.make_token(subscriber, tokens.VIEW, e=self.edition.pk)
        return {
            "subscriber": subscriber,
            "edition": self.edition,
            "items": [
                {
                    "block": self.block(r.paper),
                    "paper": r.paper,
                    "reason": r.reason,
                    "like_url": vote_url.format(paper=r.paper.pk, choice="up"),
                    "dislike_url": vote_url.format(paper=r.paper.pk, choice="down"),
                }
                for r in ranked
            ],
            "preheader": preheader(ranked),
            "view_url": absolute_url(reverse("digest:view_in_browser", args=[view_token])),
            "feed_url": feed_url(subscriber),
            "edition_url": self.edition_url,
            "site_url": settings.SITE_URL,
            "postal_address": settings.EMAIL_POSTAL_ADDRESS,
            "contact_email": settings.CONTACT_EMAIL,
            **subscriber_links(subscriber),
        }

    def render(self, subscriber, ranked):
        context = self.context(subscriber, ranked)
        return RenderedDigest(
            subject=digest_subject(self.edition, ranked),
            context=context,
            text=self.templates["digest.txt"].render(context),
            html=inline_css(self.templates["digest.html"].render(context)),
        )


def vote_url_pattern(token):
    """This digest's vote URL with ``{paper}`` and ``{choice}`` to fill in.

    One reverse() per digest instead of two per paper: reversing is a large
    part of rendering a digest.
    """
    example = reverse("digest:vote", args=[token, 1, "up"])
    return absolute_url(example.removesuffix("/1/up/") + "/{paper}/{choice}/")


def feed_url(subscriber):
    return absolute_url(reverse("digest:feed", args=[tokens.make_token(subscriber, tokens.FEED)]))


def subscriber_links(subscriber):
    unsubscribe = tokens.make_token(subscriber, tokens.UNSUBSCRIBE)
    preferences = tokens.make_token(subscriber, tokens.PREFERENCES)
    return {
        "unsubscribe_url": absolute_url(reverse("subscriptions:unsubscribe", args=[unsubscribe])),
        "preferences_url": absolute_url(reverse("subscriptions:preferences", args=[preferences])),
    }


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
