"""Keys and rates for django-ratelimit on the signup and resend forms.

Rates come from settings (``SUBSCRIBE_RATE_PER_IP``, ``SUBSCRIBE_RATE_PER_EMAIL``)
and are read per request, so they can be tuned without touching the views.
The counters live in the default cache: Redis in production, so every web
process shares them. ``limited`` puts the limits in front of a view and answers
a request they cannot be counted for, Redis being away, with a 503 page.
"""

import ipaddress
import logging
from functools import wraps

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django_ratelimit.decorators import ratelimit

from .validation import normalise_email

logger = logging.getLogger(__name__)

# What Django's RedisCache raises when Redis does not answer: refused, reset or timed out.
CACHE_AWAY_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
CACHE_AWAY_RETRY_AFTER_SECONDS = 60


def client_ip(request):
    """The visitor's address: REMOTE_ADDR, or the one our own proxies put in X-Forwarded-For.

    With ``TRUSTED_PROXY_COUNT = n`` the n-th address from the right is used:
    the leftmost entries are whatever the client claims and cannot be trusted.
    """
    remote = request.META.get("REMOTE_ADDR", "") or "0.0.0.0"
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < proxies:
        return remote
    candidate = hops[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def email_key(group, request):
    """The submitted address as we would store it, so variants of one address share a count."""
    raw = request.POST.get("email", "")
    try:
        return normalise_email(raw).lower()
    except ValidationError:
        return raw.strip().lower()[:320]


def ip_rate(group, request):
    return settings.SUBSCRIBE_RATE_PER_IP


def email_rate(group, request):
    return settings.SUBSCRIBE_RATE_PER_EMAIL


def limited(*limits, attempt):
    """django-ratelimit's ``ratelimit(**limit)`` for each of ``limits`` (the first checked first)
    in front of a view; a request over a limit gets ``RATELIMIT_VIEW``'s 429 page.

    The limits are counted before the view is called, apart from it: when the cache does not
    answer, the request gets ``cache_away``'s 503 page and the view is not called, so nothing
    happens unlimited and the 503 always means that nothing was done. ``attempt`` names what
    was not taken ("your signup") on that page.
    """
    count = _counted
    for options in reversed(limits):
        count = ratelimit(**options)(count)

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                count(request, *args, **kwargs)
            except CACHE_AWAY_ERRORS as error:
                return cache_away(request, attempt, error)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _counted(request, *args, **kwargs):
    """The innermost "view" of the limits alone: each ``ratelimit`` around it counts the request."""


def cache_away(request, attempt, error):
    logger.warning(
        "%s %s answered 503: the rate limits' cache did not answer (%s: %s)",
        request.method, request.path, type(error).__name__, error,
    )
    response = render(request, "503.html", {"attempt": attempt}, status=503)
    response["Retry-After"] = str(CACHE_AWAY_RETRY_AFTER_SECONDS)
    return response
