import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core import mail
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from papers.models import Paper
from subscriptions import services
from subscriptions.models import Subscriber
from tests.digest.test_email import contrast, css_rules
from tests.factories import PaperFactory, SubscriberFactory
from tests.servers import free_port, redis_cache
from tests.subscriptions.helpers import signup_data

pytestmark = pytest.mark.django_db

SIGNUP = "/subscribe/"


def post_signup(client, **data):
    return client.post(SIGNUP, signup_data(**data))


# --- The page -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/subscribe/"])
def test_the_signup_page_is_at_the_root_and_at_subscribe(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="email"' in html
    assert 'action="/subscribe/"' in html
    assert reverse("subscriptions:signup") == "/"
    assert reverse("subscriptions:subscribe") == "/subscribe/"


@pytest.mark.parametrize("path", ["/", "/subscribe/", "/subscribe/check-your-inbox/", "/subscribe/resend/"])
def test_head_answers_like_get_without_a_body_and_changes_nothing(client, path):
    response = client.head(path)
    assert response.status_code == 200
    assert response.content == b""
    assert not Subscriber.objects.exists() and not mail.outbox


def test_every_visible_field_has_a_label(client):
    html = client.get("/").content.decode()
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
    assert ids
    for field_id in ids:
        assert f'for="{field_id}"' in html, field_id


def test_form_controls_are_outlined_at_3_to_1_on_the_card_in_light_and_dark_mode():
    """WCAG 1.4.11: the edge of a text box, a menu or a choice pill is what shows it is
    there, so it needs 3:1 against the card around it and against its own fill."""
    css = re.sub(r"/\*.*?\*/", "", Path(finders.find("paperboy/site.css")).read_text(), flags=re.S)
    light = css_rules(css.split("@media (prefers-color-scheme: dark)", 1)[0])[":root"]
    dark = {**light, **css_rules(css.split("@media (prefers-color-scheme: dark) {", 1)[1])[":root"]}
    rules = css_rules(css)
    for selector in ('input[type="email"]', "textarea", "select", ".segment span", ".chip span"):
        border = re.search(r"var\((--[\w-]+)\)", rules[selector]["border"]).group(1)
        for mode, colours in (("light", light), ("dark", dark)):
            for background in ("--surface", "--surface-2"):
                ratio = contrast(colours[border], colours[background])
                assert ratio >= 3, (selector, mode, background, round(ratio, 2))


def test_the_page_loads_nothing_from_other_sites(client):
    html = client.get("/").content.decode()
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not url.startswith(("http:", "https:", "//")) or url.startswith("#"), url
    assert "/static/paperboy/site.css" in html
    assert "/static/paperboy/site.js" in html


def test_the_page_shows_a_placeholder_when_there_is_no_edition_yet(client, monkeypatch):
    monkeypatch.setattr(services, "digest_sample", lambda limit=5: [])
    assert "The first edition is on its way" in client.get("/").content.decode()


def test_the_page_shows_a_sample_of_the_latest_edition(client, monkeypatch):
    paper = PaperFactory(title="Tiny recursive reasoners <beat> big ones")
    monkeypatch.setattr(services, "digest_sample", lambda limit=5: [paper])
    html = client.get("/").content.decode()
    assert "Tiny recursive reasoners &lt;beat&gt; big ones" in html
    assert "What a digest looks like" in html


def test_the_page_says_what_happens_next(client):
    assert "What happens next" in client.get("/").content.decode()


# --- Signing up -----------------------------------------------------------------


def test_signing_up_creates_a_pending_subscriber_and_sends_a_confirmation(client):
    response = post_signup(client, email=" New@EXAMPLE.org ", categories=["cs.LG", "cs.CL"])
    assert response.status_code == 302
    assert response["Location"] == reverse("subscriptions:check_inbox")
    subscriber = Subscriber.objects.get()
    assert subscriber.email == "New@example.org"
    assert subscriber.status == "pending"
    assert subscriber.interests == "diffusion models, RLHF"
    assert subscriber.categories == ["cs.LG", "cs.CL"]
    assert subscriber.timezone == "Europe/Berlin"
    assert len(mail.outbox) == 1


def test_email_alone_is_enough(client):
    response = client.post(SIGNUP, {"email": "min@example.org"})
    assert response.status_code == 302
    subscriber = Subscriber.objects.get()
    assert (subscriber.email, subscriber.frequency, subscriber.max_papers) == (
        "min@example.org",
        "daily",
        10,
    )
    assert (subscriber.send_hour, subscriber.timezone, subscriber.interests) == (7, "UTC", "")


def test_the_check_inbox_page_offers_to_resend(client):
    html = client.get(reverse("subscriptions:check_inbox")).content.decode()
    assert "Check your inbox" in html
    assert reverse("subscriptions:resend") in html


def _comparable(response):
    """The response without the per-request CSRF token."""
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())
    return response.status_code, response.get("Location"), body


def test_new_pending_active_and_unsubscribed_addresses_get_identical_responses(client):
    SubscriberFactory(email="pending@example.org", status="pending", confirmed_at=None)
    SubscriberFactory(email="active@example.org")
    SubscriberFactory(email="left@example.org", status="unsubscribed")
    services.suppress_email("bounced@example.org", "bounced")
    emails = [
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "left@example.org",
        "bounced@example.org",
    ]
    responses = [_comparable(post_signup(client, email=email)) for email in emails]
    assert all(r == responses[0] for r in responses)
    followed = [_comparable(Client().get(r[1])) for r in responses]
    assert all(f == followed[0] for f in followed)


def test_the_honeypot_pretends_success_but_does_nothing(client):
    response = post_signup(client, website="http://spam.example")
    assert response.status_code == 302
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


def test_the_form_needs_a_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post(SIGNUP, signup_data())
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()
    assert not Subscriber.objects.exists()


# --- Bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"email": "victim@example.org\nBcc: everyone@example.org"},
        {"email": "victim@example.org\r\nSubject: free money"},
        {"email": "not an address"},
        {"email": "x" * 300 + "@example.org"},
        {"interests": "x" * 2000},
        {"interests": ", ".join(f"t{n}" for n in range(25))},
        {"timezone": "Moon/Tranquility"},
        {"timezone": "x" * 5000},
        {"max_papers": "1000000"},
        {"send_hour": "-1"},
        {"frequency": "hourly"},
        {"categories": ["cs.LG", "<script>"]},
    ],
)
def test_bad_input_is_refused_with_a_message_and_writes_nothing(client, overrides):
    response = post_signup(client, **overrides)
    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


def test_a_refused_form_says_so_in_the_page_title_read_first_after_posting(client):
    signup = post_signup(client, email="nope").content.decode()
    resend = client.post(reverse("subscriptions:resend"), {"email": "nope"}).content.decode()
    assert "<title>Error: Paperboy · Trending ML papers in your inbox</title>" in signup
    assert "<title>Error: Send the confirmation again · Paperboy</title>" in resend
    assert "<title>Paperboy · Trending ML papers in your inbox</title>" in client.get("/").content.decode()


def test_an_email_with_a_newline_gets_a_clear_message(client):
    response = post_signup(client, email="victim@example.org\nBcc: everyone@example.org")
    assert "cannot contain line breaks" in response.content.decode()


def test_an_email_with_accents_before_the_at_gets_a_clear_message_and_writes_nothing(client):
    response = post_signup(client, email="jürgen@example.org")
    assert response.status_code == 400
    assert "before the @ are not supported" in response.content.decode()
    assert not Subscriber.objects.exists() and mail.outbox == []


def test_a_huge_body_is_a_clean_400(client):
    response = client.post(SIGNUP, signup_data(interests="x" * (400 * 1024)))
    assert response.status_code == 400
    assert not Subscriber.objects.exists()


def test_invalid_utf8_is_a_clean_400(client):
    body = b"email=\xff\xfe%40example.org&frequency=daily&max_papers=10&send_hour=7&timezone=UTC"
    response = client.post(SIGNUP, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert not Subscriber.objects.exists()


def test_a_broken_multipart_body_is_not_a_500(client):
    response = client.generic(
        "POST",
        SIGNUP,
        b'--xx\r\nContent-Disposition: form-data; name="email"\r\n\r\n',
        content_type="multipart/form-data; boundary=xx",
    )
    assert response.status_code == 400


def test_too_many_fields_is_a_clean_400(client):
    response = client.post(SIGNUP, {f"f{n}": "x" for n in range(1200)})
    assert response.status_code == 400


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    email=st.text(max_size=80),
    interests=st.text(max_size=300),
    timezone=st.one_of(st.sampled_from(["UTC", "Europe/Berlin"]), st.text(max_size=40)),
    send_hour=st.text(max_size=4),
)
def test_no_input_gives_a_500_or_a_half_made_row(
    client, settings, email, interests, timezone, send_hour
):
    settings.RATELIMIT_ENABLE = False
    data = signup_data(email=email, interests=interests, timezone=timezone, send_hour=send_hour)
    response = client.post(SIGNUP, data)
    assert response.status_code in (302, 400)
    for subscriber in Subscriber.objects.all():
        subscriber.full_clean(exclude=["categories"])
        assert "\n" not in subscriber.email


# --- Rate limits ----------------------------------------------------------------


def test_signup_is_rate_limited_per_ip(client, settings):
    settings.SUBSCRIBE_RATE_PER_IP = "3/m"
    for n in range(3):
        assert post_signup(client, email=f"r{n}@example.org").status_code == 302
    response = post_signup(client, email="r9@example.org")
    assert response.status_code == 429
    assert response["Retry-After"] == "600"
    assert "a lot of requests" in response.content.decode()
    assert not Subscriber.objects.filter(email="r9@example.org").exists()
    other_ip = Client(REMOTE_ADDR="198.51.100.7")
    assert post_signup(other_ip, email="r10@example.org").status_code == 302


def test_signup_is_rate_limited_per_email_across_ips(settings):
    settings.SUBSCRIBE_RATE_PER_EMAIL = "2/h"
    for n in range(2):
        assert (
            post_signup(Client(REMOTE_ADDR=f"198.51.100.{n}"), email="same@example.org").status_code
            == 302
        )
    response = post_signup(Client(REMOTE_ADDR="198.51.100.99"), email="SAME@Example.org ")
    assert response.status_code == 429


def test_resend_is_rate_limited(client, settings):
    settings.SUBSCRIBE_RATE_PER_EMAIL = "2/h"
    url = reverse("subscriptions:resend")
    for _ in range(2):
        assert client.post(url, {"email": "x@example.org"}).status_code == 302
    assert client.post(url, {"email": "x@example.org"}).status_code == 429


def test_reading_the_page_is_not_rate_limited(client, settings):
    settings.SUBSCRIBE_RATE_PER_IP = "1/m"
    assert all(client.get("/").status_code == 200 for _ in range(3))


def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(settings):
    settings.SUBSCRIBE_RATE_PER_IP = "1/m"
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.1"
    first = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.1")
    second = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert post_signup(first, email="a1@example.org").status_code == 302
    assert post_signup(second, email="a2@example.org").status_code == 302
    assert post_signup(first, email="a3@example.org").status_code == 429


@pytest.mark.redis
def test_rate_limits_work_on_the_redis_cache(settings, redis_server):
    settings.CACHES = redis_cache(redis_server.url(3))
    settings.SUBSCRIBE_RATE_PER_IP = "2/m"
    from django.core.cache import cache

    cache.clear()
    client = Client(REMOTE_ADDR="192.0.2.44")
    assert [post_signup(client, email=f"k{n}@example.org").status_code for n in range(3)] == [
        302,
        302,
        429,
    ]
    assert any(key.startswith(b":1:rl:") for key in cache._cache.get_client().keys("*"))


# --- Redis away -----------------------------------------------------------------


@pytest.fixture
def cache_away(settings):
    """The rate limits' cache is Redis on a port nothing listens on: every command fails."""
    settings.CACHES = redis_cache(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("path", ["/", SIGNUP])
def test_a_signup_while_redis_is_away_gets_a_503_page_and_writes_nothing(client, cache_away, path, caplog):
    page_shown = client.get(path)  # showing the form counts nothing: it needs no cache
    response = client.post(path, signup_data(email="during-outage@example.org"))

    assert page_shown.status_code == 200
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "503.html" in [template.name for template in response.templates]
    page = response.content.decode()
    assert "We couldn’t take your signup just now" in page and "try again in a minute" in page
    assert not Subscriber.objects.exists()
    assert mail.outbox == []
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warnings and "ConnectionError" in warnings[0].getMessage()
    assert "during-outage" not in caplog.text


def test_a_resend_while_redis_is_away_gets_the_503_page_and_sends_nothing(client, cache_away, pending):
    assert client.get(reverse("subscriptions:resend")).status_code == 200
    response = client.post(reverse("subscriptions:resend"), {"email": pending.email})

    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert "We couldn’t take your request just now" in response.content.decode()
    assert mail.outbox == []


@pytest.mark.redis
def test_signups_are_taken_and_limited_again_once_redis_answers(client, settings, redis_server):
    settings.CACHES = redis_cache(f"redis://127.0.0.1:{free_port()}/0")
    away = post_signup(client, email="early@example.org")
    settings.CACHES = redis_cache(redis_server.url(3))
    settings.SUBSCRIBE_RATE_PER_IP = "1/m"
    from django.core.cache import cache

    cache.clear()
    answers = [post_signup(client, email=f"back{n}@example.org").status_code for n in range(2)]

    assert away.status_code == 503
    assert answers == [302, 429]
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["back0@example.org"]


# --- Resend ---------------------------------------------------------------------


def test_resend_sends_a_new_link_to_a_pending_address(client, pending):
    response = client.post(reverse("subscriptions:resend"), {"email": pending.email})
    assert response.status_code == 302
    assert "/confirm/" in mail.outbox[0].body


def test_resend_never_creates_a_subscriber(client):
    client.post(reverse("subscriptions:resend"), {"email": "nobody@example.org"})
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


def test_resend_with_a_bad_address_shows_the_error(client):
    response = client.post(reverse("subscriptions:resend"), {"email": "nope"})
    assert response.status_code == 400
    assert "name@example.org" in response.content.decode()


def test_the_sample_comes_from_the_latest_daily_edition(client):
    from digest.models import EditionPaper
    from tests.factories import EditionFactory

    edition = EditionFactory()
    for rank, title in enumerate(["Top of the edition", "Runner-up paper"], start=1):
        EditionPaper.objects.create(
            edition=edition, paper=PaperFactory(title=title), rank=rank, trending_score=1 / rank
        )
    html = client.get("/").content.decode()
    assert html.index("Top of the edition") < html.index("Runner-up paper")


def test_the_sample_leaves_out_a_paper_withdrawn_since_the_edition_was_built(client):
    from django.utils import timezone

    from digest.models import EditionPaper
    from tests.factories import EditionFactory

    edition = EditionFactory()
    for rank, title in enumerate(["Withdrawn after the edition", "Still standing"], start=1):
        EditionPaper.objects.create(edition=edition, paper=PaperFactory(title=title), rank=rank, trending_score=1)
    Paper.objects.filter(title="Withdrawn after the edition").update(withdrawn_at=timezone.now())
    html = client.get("/").content.decode()
    assert "Still standing" in html and "Withdrawn after the edition" not in html


def test_resend_answers_the_same_for_every_address(client, pending, subscriber):
    url = reverse("subscriptions:resend")
    emails = ["nobody@example.org", pending.email, subscriber.email]
    responses = [_comparable(client.post(url, {"email": email})) for email in emails]
    assert all(r == responses[0] for r in responses)
