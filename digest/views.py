"""Public edition pages and archive, "view in browser", feedback votes. Views only call services."""

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.dateparse import parse_date
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from subscriptions import tokens

from . import calls, retention, services
from . import feedback as feedback_service
from .feeds import SubscriberDigestFeed
from .models import Cadence, Edition
from .rendering import render_delivery_html

ARCHIVE_LENGTH = 60


def archive(request):
    editions = Edition.objects.order_by("-date", "cadence")[:ARCHIVE_LENGTH]
    return render(request, "digest/archive.html", {"editions": editions})


def edition_date(text):
    """The date in an edition URL, or None for anything that is not a real YYYY-MM-DD date."""
    try:
        return parse_date(text) if len(text) == 10 else None
    except ValueError:
        return None


def edition_page(request, cadence, date):
    day = edition_date(date)
    if cadence not in Cadence.values or day is None:
        raise Http404("No such edition")
    edition = get_object_or_404(Edition, cadence=cadence, date=day)
    entries = services.shown_entries(edition)
    siblings = Edition.objects.filter(cadence=cadence)
    context = {
        "edition": edition,
        "entries": entries,
        "previous": siblings.filter(date__lt=day).order_by("-date").first(),
        "next": siblings.filter(date__gt=day).order_by("date").first(),
    }
    return render(request, "digest/edition.html", context)


@never_cache  # the reader's own email, with their address and working links: no shared cache keeps it
def view_in_browser(request, token):
    try:
        payload = tokens.read_token(token, tokens.VIEW)
    except tokens.InvalidToken:
        return render(request, "digest/invalid_link.html", status=400)
    edition_id = payload.extra.get("e")
    if not feedback_service.is_row_id(edition_id):
        return render(request, "digest/invalid_link.html", status=400)
    delivery = calls.sent_delivery(payload.subscriber, edition_id)
    if delivery is None:
        edition = Edition.objects.filter(pk=edition_id).first()
        if edition is None:
            raise Http404("No such digest")
        return digest_not_found(request, edition)
    response = HttpResponse(render_delivery_html(delivery))
    response["X-Robots-Tag"] = "noindex"
    return response


def digest_not_found(request, edition):
    """A signed link to a digest of ``edition`` the ledger does not hold: older than the
    retention, or not sent. The page says which and links to the public edition."""
    kept_days = retention.retention_days() if retention.past_retention(edition) else None
    context = {"edition": edition, "kept_days": kept_days}
    response = render(request, "digest/digest_not_found.html", context, status=404)
    response["X-Robots-Tag"] = "noindex"
    return response


@csrf_exempt  # the signed token is the credential; only a POST votes (mail scanners prefetch links)
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def vote(request, token, paper_id, choice):
    try:
        vote = feedback_service.vote_from_link(token, paper_id, choice)
    except (tokens.InvalidToken, feedback_service.InvalidVote):
        return render(request, "digest/invalid_link.html", status=400)
    if request.method == "POST":
        feedback_service.record_vote(vote)
        response = render(request, "digest/vote_recorded.html", {"vote": vote})
    else:
        response = render(request, "digest/vote_confirm.html", {"vote": vote})
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"
    return response


subscriber_feed = SubscriberDigestFeed()
