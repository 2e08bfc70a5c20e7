"""The admin login, rate-limited per client address and per username (django-ratelimit).

Wired in ``config.urls`` in front of ``admin.site.urls``: the same URL, the
same view, but a password-guessing client gets the 429 page after
``ADMIN_LOGIN_RATE_PER_IP`` attempts from one address, or
``ADMIN_LOGIN_RATE_PER_USERNAME`` attempts at one account from anywhere.
Only POSTs (attempts) count; the counters live in the shared cache (Redis).
While Redis is away an attempt gets a 503 page, never an unlimited try.
"""

import unicodedata

from django.conf import settings
from django.contrib import admin

from subscriptions.ratelimits import limited


def per_ip(group, request):
    return settings.ADMIN_LOGIN_RATE_PER_IP


def per_username(group, request):
    return settings.ADMIN_LOGIN_RATE_PER_USERNAME


def username_key(group, request):
    """The account a login tries, as the login form reads it: the form NFKC-normalises the username
    (``ｏperator``, in fullwidth letters, signs in as ``operator``), so the limit must count every
    such spelling as one."""
    return unicodedata.normalize("NFKC", request.POST.get("username", "")).strip().casefold()[:150]


@limited(
    {"group": "admin-login:username", "key": username_key, "rate": per_username, "method": "POST"},
    {"group": "admin-login:ip", "key": "ip", "rate": per_ip, "method": "POST"},
    attempt="your sign-in",
)
def login(request, extra_context=None):
    return admin.site.login(request, extra_context)
