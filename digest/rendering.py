"""The digest email for one subscriber: subject, links and the two bodies."""

import re

from django.conf import settings
from django.urls import reverse

from subscriptions import tokens

from .emails import absolute_url, render_bodies

SUMMARY_LIMIT = 320
AUTHORS_SHOWN = 3
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


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


def subscriber_links(subscriber):
    unsubscribe = tokens.make_token(subscriber, tokens.UNSUBSCRIBE)
    return {
        "unsubscribe_url": absolute_url(reverse("subscriptions:unsubscribe", args=[unsubscribe])),
        "preferences_url": absolute_url(
            reverse("subscriptions:preferences", args=[tokens.make_token(subscriber, tokens.PREFERENCES)])
        ),
    }


def feedback_urls(subscriber, paper):
    def url(vote):
        token = tokens.make_token(subscriber, tokens.FEEDBACK, p=paper.pk, v=vote)
        return absolute_url(reverse("digest:feedback", args=[token]))

    return url(1), url(-1)


def paper_item(subscriber, ranked):
    like_url, dislike_url = feedback_urls(subscriber, ranked.paper)
    return {
        "paper": ranked.paper,
        "reason": ranked.reason,
        "authors": author_line(ranked.paper),
        "summary": short_summary(ranked.paper),
        "like_url": like_url,
        "dislike_url": dislike_url,
    }


def digest_subject(edition, ranked):
    top = ranked[0].paper.title if ranked else ""
    if len(top) > 70:
        top = top[:69].rstrip() + "…"
    return f"Paperboy {edition.date:%a %-d %b}: {top}"


def digest_context(subscriber, edition, ranked):
    view_token = tokens.make_token(subscriber, tokens.VIEW, e=edition.pk)
    return {
        "subscriber": subscriber,
        "edition": edition,
        "items": [paper_item(subscriber, r) for r in ranked],
        "preheader": " · ".join(r.paper.title for r in ranked[1:3]) or "Today's trending papers",
        "view_url": absolute_url(reverse("digest:view_in_browser", args=[view_token])),
        "edition_url": absolute_url(
            reverse("digest:edition", args=[edition.cadence, edition.date.isoformat()])
        ),
        "site_url": settings.SITE_URL,
        "postal_address": settings.EMAIL_POSTAL_ADDRESS,
        "contact_email": settings.CONTACT_EMAIL,
        **subscriber_links(subscriber),
    }


def render_digest(subscriber, edition, ranked):
    """Return (subject, context, (text, html)) for one subscriber's digest."""
    context = digest_context(subscriber, edition, ranked)
    return digest_subject(edition, ranked), context, render_bodies("digest", context)


def render_delivery_html(delivery):
    """The HTML of a digest as it was sent, rebuilt from the ledger (same papers, same reasons)."""
    from papers.models import Paper

    from .ranking import RankedPaper

    papers = Paper.objects.in_bulk(delivery.paper_ids)
    ranked = [
        RankedPaper(papers[pid], 0.0, 0.0, delivery.reasons.get(str(pid), ""))
        for pid in delivery.paper_ids
        if pid in papers
    ]
    _, _, (_, html) = render_digest(delivery.subscriber, delivery.edition, ranked)
    return html
