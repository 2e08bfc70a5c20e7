"""Keys and rates for django-ratelimit on the signup and resend forms.

Rates come from settings (``SUBSCRIBE_RATE_PER_IP``, ``SUBSCRIBE_RATE_PER_EMAIL``)
and are read per request, so they can be tuned without touching the views.
The counters live in the default cache: Redis in production, so every web
process shares them.
"""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError

from .validation import normalise_email


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
