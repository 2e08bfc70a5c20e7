"""Small helpers shared by the subscription tests."""

import re

from django.urls import reverse

from subscriptions.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_token

FAR_FUTURE = 2_000_000_000  # a "requested at" after any unsubscription in these tests


def confirm_path(subscriber, **extra):
    extra.setdefault("t", FAR_FUTURE)
    return reverse("subscriptions:confirm", args=[make_token(subscriber, CONFIRM, **extra)])


def preferences_path(subscriber):
    return reverse("subscriptions:preferences", args=[make_token(subscriber, PREFERENCES)])


def unsubscribe_path(subscriber):
    return reverse("subscriptions:unsubscribe", args=[make_token(subscriber, UNSUBSCRIBE)])


def signup_data(email="new@example.org", **overrides):
    data = {
        "email": email,
        "interests": "diffusion models, RLHF",
        "frequency": "daily",
        "max_papers": "10",
        "send_hour": "7",
        "timezone": "Europe/Berlin",
        "website": "",
    }
    data.update(overrides)
    return data


def preference_data(**overrides):
    data = signup_data(**overrides)
    del data["email"], data["website"]
    return data


def link_in(text, name):
    """The path of the first ``/<name>/<token>/`` link in an email body."""
    match = re.search(rf"https?://[^/\s]+(/{name}/[^/\s]+/)", text)
    assert match, f"no {name} link in:\n{text}"
    return match.group(1)
