"""Signup, confirmation, preferences and unsubscribe pages.

Views parse the request, call ``subscriptions.services`` and render. Pages
reached through an emailed link find their subscriber by signed token
(``subscriptions.tokens``); a link that does not check out gets a friendly
page, never an error. GET never changes anything: every change is a POST.
"""

import json
import logging
from functools import wraps

from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from digest.scheduling import published_after_their_morning, upcoming_digest

from . import services
from .forms import NewAddressForm, PreferencesForm, ResendForm, SignupForm
from .ratelimits import client_ip, email_key, email_rate, ip_rate, limited
from .tokens import (
    CONFIRM,
    NEW_ADDRESS,
    PREFERENCES,
    UNSUBSCRIBE,
    ExpiredToken,
    InvalidToken,
    UnknownSubscriber,
    read_token,
    unsubscribe_token_subscriber_id,
)

logger = logging.getLogger(__name__)

ONE_CLICK_BODY = "One-Click"
ONE_CLICK_ANSWER = "You’re unsubscribed from Paperboy.\n"


def _limited(group, attempt):
    """Per-IP and per-address limits on a form's POSTs: blocked requests get ``rate_limited``,
    and those the limits cannot be counted for (Redis away) a 503 page (``ratelimits.limited``)."""
    return limited(
        {"group": f"{group}:ip", "key": "ip", "rate": ip_rate, "method": "POST"},
        {"group": f"{group}:email", "key": email_key, "rate": email_rate, "method": "POST"},
        attempt=attempt,
    )


def rate_limited(request, exception):
    response = render(request, "subscriptions/rate_limited.html", status=429)
    response["Retry-After"] = "600"
    return response


def csrf_failure(request, reason=""):
    return render(request, "subscriptions/csrf_failure.html", status=403)


def invalid_link(request):
    return render(request, "subscriptions/invalid_link.html", status=404)


# --- Joining ----------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
@_limited("signup", attempt="your signup")
def signup(request):
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            if form.is_bot:
                logger.info("Signup honeypot filled from %s", client_ip(request))
            else:
                services.request_subscription(
                    form.cleaned_data["email"], form.preferences, ip=client_ip(request)
                )
            return redirect("subscriptions:check_inbox")
    else:
        form = SignupForm()
    context = {"form": form, "sample": services.digest_sample(limit=5)}
    return render(request, "subscriptions/signup.html", context, status=400 if form.errors else 200)


@require_safe
def check_inbox(request):
    return render(request, "subscriptions/check_inbox.html", {"form": ResendForm()})


@require_http_methods(["GET", "HEAD", "POST"])
@_limited("resend", attempt="your request")
def resend(request):
    form = ResendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not form.is_bot:
            services.resend_confirmation(form.cleaned_data["email"])
        return redirect("subscriptions:check_inbox")
    status = 400 if form.errors else 200
    return render(request, "subscriptions/resend.html", {"form": form}, status=status)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, token):
    """GET shows a button (auto-submitted by site.js); only the POST confirms.

    Link scanners in mail systems fetch every URL in a message: a GET that
    confirmed would subscribe people who never clicked.
    """
    try:
        payload = read_token(token, CONFIRM)
    except ExpiredToken:
        return render(
            request, "subscriptions/link_expired.html", {"form": ResendForm()}, status=410
        )
    except InvalidToken:
        return invalid_link(request)
    subscriber = payload.subscriber
    if subscriber.status in services.JOINED:
        return _confirmed(request, subscriber, already=True)
    requested_at = payload.extra.get("t")
    if not services.can_confirm(subscriber, requested_at):
        return invalid_link(request)
    if request.method == "POST" and services.confirm_subscriber(subscriber, requested_at):
        return _confirmed(request, subscriber, already=False)
    return render(request, "subscriptions/confirm.html", {"subscriber": subscriber})


def _confirmed(request, subscriber, already):
    first = upcoming_digest(subscriber) if subscriber.is_active else None
    context = {
        "subscriber": subscriber,
        "already": already,
        "preferences_url": services.preferences_path(subscriber),
        "first_digest": first.when.value if first else "",
        "first_day": first and first.day,
        "first_edition": first and first.edition,
    }
    return render(request, "subscriptions/confirmed.html", context)


# --- Preferences ------------------------------------------------------------


def _preferences_subscriber(view):
    """Resolve the preferences token to a subscriber, or answer with the invalid-link page."""

    @wraps(view)
    def wrapped(request, token):
        try:
            subscriber = read_token(token, PREFERENCES).subscriber
        except InvalidToken:
            return invalid_link(request)
        return view(request, token, subscriber)

    return never_cache(wrapped)


@require_http_methods(["GET", "HEAD", "POST"])
@_preferences_subscriber
def preferences(request, token, subscriber):
    form = None
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            services.update_preferences(subscriber, form.cleaned_data)
            messages.success(request, "Saved. Your next digest follows these preferences.")
            return redirect("subscriptions:preferences", token)
    return _preferences_page(request, token, subscriber, form=form)


def _preferences_page(request, token, subscriber, form=None, address_form=None):
    """The preferences page, with the forms a POST left invalid (else fresh ones)."""
    form = form or PreferencesForm(initial=PreferencesForm.initial_for(subscriber))
    context = {
        "form": form,
        "address_form": address_form or NewAddressForm(),
        "can_change_address": services.can_change_address(subscriber),
        "address_waiting": services.address_waiting(subscriber),
        "subscriber": subscriber,
        "token": token,
        "unsubscribe_token": services.unsubscribe_token(subscriber),
        "published_at": published_after_their_morning(subscriber),
    }
    invalid = form.errors or (address_form is not None and address_form.errors)
    return render(request, "subscriptions/preferences.html", context, status=400 if invalid else 200)


def _preferences_action(view):
    """A button of the preferences page (a POST). Opened otherwise (the page reloaded from the
    history, a link followed), it changes nothing and leads back to the preferences page,
    instead of a blank "method not allowed"."""

    @require_http_methods(["GET", "HEAD", "POST"])
    @wraps(view)
    def wrapped(request, token):
        if request.method != "POST":
            return redirect("subscriptions:preferences", token)
        return view(request, token)

    return wrapped


@_preferences_action
@_preferences_subscriber
def pause(request, token, subscriber):
    if services.pause(subscriber):
        messages.success(request, "Paused. No digests until you resume.")
    return redirect("subscriptions:preferences", token)


@_preferences_action
@_preferences_subscriber
def resume(request, token, subscriber):
    if services.resume(subscriber):
        messages.success(request, "Welcome back: your digests start again.")
    return redirect("subscriptions:preferences", token)


@_preferences_action
@_preferences_subscriber
def new_link(request, token, subscriber):
    context = {"subscriber": subscriber, "result": services.revoke_links(subscriber, asked_by_reader=True).value}
    return render(request, "subscriptions/new_link_sent.html", context)


@_preferences_action
@_preferences_subscriber
def my_data(request, token, subscriber):
    data = services.export_subscriber_data(subscriber)
    response = HttpResponse(
        json.dumps(data, indent=2, ensure_ascii=False),
        content_type="application/json; charset=utf-8",
    )
    stamp = timezone.now().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="paperboy-my-data-{stamp}.json"'
    return response


ADDRESS_CHANGE_MESSAGES = {
    services.AddressChangeResult.SAME: (messages.INFO, "That is already your address: nothing to change."),
    services.AddressChangeResult.THROTTLED: (
        messages.WARNING,
        "We emailed a link for a new address less than ten minutes ago: look for it, or ask again later.",
    ),
    services.AddressChangeResult.NOT_ALLOWED: (
        messages.ERROR,
        "This subscription can’t move to another address. Write to us if you need it to.",
    ),
}


@_preferences_action
@_limited("new-address", attempt="your change of address")
@_preferences_subscriber
def change_address(request, token, subscriber):
    form = NewAddressForm(request.POST)
    if not form.is_valid():
        return _preferences_page(request, token, subscriber, address_form=form)
    result = services.request_address_change(subscriber, form.cleaned_data["email"])
    if result is services.AddressChangeResult.REQUESTED:
        return render(request, "subscriptions/new_address_sent.html", {"subscriber": subscriber, "token": token})
    messages.add_message(request, *ADDRESS_CHANGE_MESSAGES[result])
    return redirect("subscriptions:preferences", token)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm_new_address(request, token):
    """GET shows what the link does and a button; only the POST moves the reader (a mail
    system's link scanner fetches every URL it sees)."""
    try:
        payload = read_token(token, NEW_ADDRESS)
    except ExpiredToken:
        return render(request, "subscriptions/new_address.html", {"outcome": "expired"}, status=410)
    except InvalidToken:
        return invalid_link(request)
    subscriber, key = payload.subscriber, payload.extra.get("a")
    if request.method != "POST":
        if services.is_address_asked_for(subscriber, key):
            return render(request, "subscriptions/new_address.html", {"outcome": "ask", "subscriber": subscriber})
        context = {"outcome": "stale", "subscriber": subscriber}
        return render(request, "subscriptions/new_address.html", context, status=409)
    result = services.confirm_new_address(subscriber, key)
    if result is services.AddressMoveResult.MOVED:
        messages.success(request, f"Done: your digests now go to {subscriber.email}.")
        return redirect(services.preferences_path(subscriber))
    context = {"outcome": result.name.lower(), "subscriber": subscriber}
    return render(request, "subscriptions/new_address.html", context, status=409)


@require_http_methods(["GET", "HEAD", "POST"])
@_preferences_subscriber
def delete(request, token, subscriber):
    if request.method == "POST":
        services.delete_subscriber(subscriber)
        return render(request, "subscriptions/deleted.html")
    return render(request, "subscriptions/delete.html", {"subscriber": subscriber, "token": token})


# --- Leaving ----------------------------------------------------------------


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token):
    """GET asks; any POST unsubscribes, including RFC 8058 one-click from a mail provider.

    CSRF-exempt on purpose: one-click requests carry no cookie and no CSRF
    token, and the signed token in the URL is the authorisation. The worst a
    forged cross-site POST could do is what the link itself does. Revoked
    tokens still work here, so that every email ever sent keeps a way out.
    """
    if request.method == "POST" and _is_one_click(request):
        return _one_click_unsubscribe(request, token)
    try:
        payload = read_token(token, UNSUBSCRIBE, allow_revoked=True)
    except UnknownSubscriber:
        return render(request, "subscriptions/unsubscribed.html", {"gone": True})
    except InvalidToken:
        return invalid_link(request)
    subscriber = payload.subscriber
    if request.method == "POST":
        services.unsubscribe(subscriber, via=_unsubscribe_channel(request))
    context = {"subscriber": subscriber}
    if not payload.revoked:  # a revoked link may leave, but must not lead to the preferences
        context["preferences_url"] = services.preferences_path(subscriber)
    if request.method != "POST" and subscriber.status in services.RECEIVING:
        return render(request, "subscriptions/unsubscribe.html", context)
    left = subscriber.status == subscriber.Status.UNSUBSCRIBED
    context["can_resume"] = left and "preferences_url" in context
    return render(request, "subscriptions/unsubscribed.html", context)


def _is_one_click(request):
    """Is the body RFC 8058's ``List-Unsubscribe=One-Click`` (urlencoded or multipart)?"""
    try:
        return request.POST.get("List-Unsubscribe") == ONE_CLICK_BODY
    except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError):
        return False


def _one_click_unsubscribe(request, token):
    """A mail provider's one-click POST: check the signature, one UPDATE, a short answer.

    Nobody reads this answer, so there is no page, no session and no read of
    the row: the same 200 whether this request unsubscribed them, they had left
    before, or they no longer exist (the answer tells nothing about an address).
    A token that is not a genuine unsubscribe token gets the invalid-link page.
    """
    try:
        subscriber_id = unsubscribe_token_subscriber_id(token)
    except InvalidToken:
        return invalid_link(request)
    services.unsubscribe_by_id(subscriber_id, via="one-click")
    return HttpResponse(ONE_CLICK_ANSWER, content_type="text/plain; charset=utf-8")


def _unsubscribe_channel(request):
    """How the POST came: recorded for operators, never a reason to refuse it."""
    try:
        form = request.POST
    except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError):
        return "page"
    if form.get("List-Unsubscribe") == ONE_CLICK_BODY:
        return "one-click"
    return "preferences" if form.get("from") == "preferences" else "page"
