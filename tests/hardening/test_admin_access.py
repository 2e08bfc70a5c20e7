"""The admin is for staff only, its login is rate-limited, and no redirect leaves the site."""

from urllib.parse import quote, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from tests.servers import free_port, redis_cache

from .strategies import HARDENING, HOSTILE_STRINGS

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-passphrase"
ADMIN_PAGES = [
    "/admin/",
    "/admin/dashboard/",
    "/admin/subscriptions/subscriber/",
    "/admin/subscriptions/subscriber/import/",
    "/admin/digest/delivery/",
    "/admin/auth/user/",
    "/admin/papers/paper/",
    "/admin/papers/author/",
    "/admin/papers/papersignal/",
    "/admin/papers/fetchrun/",
]
OFFSITE_TARGETS = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "https:evil.example",
    "http://paperboy.example.org@evil.example/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    " //evil.example",
    "\t//evil.example",
    "/%2F%2Fevil.example",
    "/admin/\r\nLocation: https://evil.example/",
]


def user(username, **flags):
    return get_user_model().objects.create_user(username, f"{username}@example.org", PASSWORD, **flags)


def is_on_site(location):
    """A redirect target that stays on this site: a path, or an absolute URL to testserver."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        return parts.scheme in ("http", "https") and parts.netloc == "testserver"
    return location.startswith("/") and not location.startswith(("//", "/\\"))


# --- Staff only ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_a_logged_in_non_staff_user_is_sent_to_the_login_page(client, path):
    client.force_login(user("reader"))
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_non_staff_user_cannot_log_in_to_the_admin(client):
    user("reader")
    response = client.post("/admin/login/", {"username": "reader", "password": PASSWORD})
    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session


def test_staff_without_permissions_see_no_subscriber_data(client):
    client.force_login(user("intern", is_staff=True))
    assert client.get("/admin/").status_code == 200
    for path in ADMIN_PAGES[2:]:
        response = client.get(path, follow=True)
        assert response.status_code == 403, path  # the import page sends them to a 403


def test_staff_with_view_permission_see_subscribers_but_cannot_change_them(client):
    viewer = user("support", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_subscriber"))
    client.force_login(viewer)
    assert client.get("/admin/subscriptions/subscriber/").status_code == 200
    assert client.get("/admin/subscriptions/subscriber/add/").status_code == 403


# Each admin action that changes a row or emails someone, by the list it is run from.
CHANGING_ACTIONS = {
    "/admin/subscriptions/subscriber/": (
        "view_subscriber",
        ["resend_confirmation", "send_preview_digest", "suppress", "reactivate", "revoke_links"],
    ),
    "/admin/digest/delivery/": ("view_delivery", ["resend_failed"]),
}


@pytest.mark.django_db
@pytest.mark.parametrize("changelist", CHANGING_ACTIONS)
def test_staff_who_may_only_view_are_offered_no_action_that_changes_or_emails(client, mailoutbox, changelist):
    from digest.models import Delivery
    from tests.digest.builders import built_edition
    from tests.factories import SubscriberFactory

    permission, actions = CHANGING_ACTIONS[changelist]
    reader = SubscriberFactory(status="unsubscribed")
    failed = Delivery.objects.create(subscriber=reader, edition=built_edition(), status="failed", reason="refused")
    viewer = user("support", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename=permission))
    client.force_login(viewer)
    selected = failed.pk if "delivery" in changelist else reader.pk

    action_form = client.get(changelist).context["action_form"]  # None when no action is left
    offered = action_form.fields["action"].choices if action_form else []
    answers = [client.post(changelist, {"action": action, "_selected_action": [selected]}) for action in actions]

    assert not set(actions) & {name for name, _ in offered}
    assert {answer.status_code for answer in answers} <= {200, 302}  # the list again, nothing done
    assert mailoutbox == []
    reader.refresh_from_db()
    failed.refresh_from_db()
    assert (reader.status, failed.status, failed.reason) == ("unsubscribed", "failed", "refused")


# --- Rate-limited login -----------------------------------------------------------------


def attempt(client, username, password="wrong-guess"):
    return client.post("/admin/login/", {"username": username, "password": password})


def test_every_spelling_the_login_form_reads_as_one_username_shares_its_limit(settings):
    """The form NFKC-normalises the username: "ｏperator" (a fullwidth o) signs in as "operator"."""
    settings.ADMIN_LOGIN_RATE_PER_USERNAME = "5/10m"
    user("operator", is_staff=True, is_superuser=True)
    answers = [attempt(Client(REMOTE_ADDR=f"203.0.113.{n}"), "operator").status_code for n in range(5)]
    guesser = Client(REMOTE_ADDR="203.0.113.99")

    blocked = attempt(guesser, "\uff4fperator", PASSWORD)

    assert answers == [200] * 5
    assert blocked.status_code == 429 and "_auth_user_id" not in guesser.session


def test_login_attempts_are_limited_per_client_address(settings):
    settings.ADMIN_LOGIN_RATE_PER_IP = "10/10m"
    settings.ADMIN_LOGIN_RATE_PER_USERNAME = "1000/10m"
    user("operator", is_staff=True, is_superuser=True)
    guesser = Client(REMOTE_ADDR="203.0.113.9")

    answers = [attempt(guesser, f"guess{n}").status_code for n in range(10)]
    blocked = attempt(guesser, "operator", PASSWORD)

    assert answers == [200] * 10
    assert blocked.status_code == 429 and blocked["Retry-After"]
    assert "_auth_user_id" not in guesser.session
    other = Client(REMOTE_ADDR="198.51.100.1")
    assert attempt(other, "operator", PASSWORD).status_code == 302


def test_login_attempts_on_one_account_are_limited_from_every_address(settings):
    settings.ADMIN_LOGIN_RATE_PER_USERNAME = "5/10m"
    user("operator", is_staff=True, is_superuser=True)

    answers = [
        attempt(Client(REMOTE_ADDR=f"203.0.113.{n}"), "Operator ").status_code for n in range(5)
    ]
    blocked = attempt(Client(REMOTE_ADDR="203.0.113.99"), "operator", PASSWORD)

    assert answers == [200] * 5
    assert blocked.status_code == 429
    assert attempt(Client(REMOTE_ADDR="203.0.113.100"), "someone-else").status_code == 200


def test_showing_the_login_page_is_not_an_attempt(settings, client):
    settings.ADMIN_LOGIN_RATE_PER_IP = "2/10m"
    for _ in range(5):
        assert client.get("/admin/login/").status_code == 200


def test_a_login_while_redis_is_away_gets_the_503_page_and_logs_no_one_in(settings, client):
    user("operator", is_staff=True, is_superuser=True)
    settings.CACHES = redis_cache(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there

    shown = client.get("/admin/login/")
    response = attempt(client, "operator", PASSWORD)

    assert shown.status_code == 200
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert "We couldn’t take your sign-in just now" in response.content.decode()
    assert "_auth_user_id" not in client.session


# --- No open redirects ---------------------------------------------------------------------


@pytest.mark.parametrize("target", OFFSITE_TARGETS)
def test_the_admin_login_never_redirects_off_site(client, target):
    user("operator", is_staff=True, is_superuser=True)
    response = client.post(
        f"/admin/login/?next={quote(target, safe='')}",
        {"username": "operator", "password": PASSWORD, "next": target},
    )
    assert response.status_code == 302
    assert is_on_site(response["Location"]), response["Location"]


@HARDENING
@given(
    path=st.one_of(
        st.sampled_from(OFFSITE_TARGETS + HOSTILE_STRINGS),
        st.text(alphabet="/\\.:@%?#&=evil.examplehtps ", max_size=40),
        st.text(max_size=30),
    ),
    secure=st.booleans(),
)
def test_no_url_of_the_site_redirects_off_site(path, secure):
    """CommonMiddleware's slash redirect, the HTTPS redirect, the admin's login redirect:
    whatever the path, a redirect stays on this site."""
    raw = "/" + path.lstrip("/") if not path.startswith("//") else path
    response = Client().get(quote(raw.encode("utf-8", "surrogatepass"), safe="/\\:@?&=%#"), secure=secure)
    assert response.status_code < 500
    if 300 <= response.status_code < 400:
        assert is_on_site(response["Location"]), (raw, response["Location"])


def test_every_redirect_of_the_public_forms_goes_to_a_page_of_ours(client, settings):
    settings.RATELIMIT_ENABLE = False
    answers = [
        client.post("/subscribe/?next=https://evil.example/", {"email": "ada@example.org"}),
        client.post("/subscribe/resend/?next=//evil.example/", {"email": "ada@example.org"}),
    ]
    for response in answers:
        assert response.status_code == 302
        assert response["Location"] == reverse("subscriptions:check_inbox")
