"""The site's own error pages (templates/400.html, 403.html, 404.html, 500.html, 503.html) with DEBUG off.

404, 403, 400 and 503 (a form's POST while the rate limits' cache, Redis, is away) are
pages of the site (its header, footer and stylesheet).
500 is rendered after something has already failed, with no request: it must
not need the database nor the static files manifest.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory, override_settings
from django.urls import get_resolver

from subscriptions.tokens import VIEW, make_token
from tests.factories import SubscriberFactory
from tests.hardening.test_security_settings import inline_code
from tests.servers import free_port, redis_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug_off():
    with override_settings(DEBUG=False):
        yield


def templates_of(response):
    return [template.name for template in response.templates]


def not_found_paths():
    reader = SubscriberFactory()
    return [
        "/no-such-page/",
        "/digest/daily/2026-13-45/",  # not a date
        "/digest/monthly/2026-11-20/",  # no such cadence
        "/digest/daily/2001-01-01/",  # no edition that day
        f"/d/{make_token(reader, VIEW, e=987654)}/",  # a digest never sent to this reader
        "/feed/not-a-real-feed-token/",
    ]


def test_pages_that_do_not_exist_get_the_sites_404_page(client):
    for path in not_found_paths():
        response = client.get(path)

        assert response.status_code == 404, path
        assert "404.html" in templates_of(response), path
        page = response.content.decode()
        assert "There’s nothing here" in page and 'class="site-header' in page, path
        assert inline_code(response.content) == [], path


def test_a_forged_host_gets_the_sites_400_page(client):
    response = client.get("/", HTTP_HOST="attacker.example.org")

    assert response.status_code == 400
    assert "400.html" in templates_of(response)
    assert "didn’t make sense to us" in response.content.decode()
    assert inline_code(response.content) == []


def test_staff_without_permission_get_the_sites_403_page(client):
    client.force_login(get_user_model().objects.create_user("intern", "intern@example.org", "pw", is_staff=True))

    response = client.get("/admin/subscriptions/subscriber/")

    assert response.status_code == 403
    assert "403.html" in templates_of(response)
    assert "You can’t open this page" in response.content.decode()
    assert inline_code(response.content) == []


def test_a_form_sent_while_redis_is_away_gets_the_sites_503_page(client, settings):
    settings.CACHES = redis_cache(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there

    response = client.post("/subscribe/", {"email": "someone@example.org"})

    assert response.status_code == 503
    assert "503.html" in templates_of(response)
    page = response.content.decode()
    assert "We couldn’t take your signup just now" in page and 'class="site-header' in page
    assert inline_code(response.content) == []


def test_the_500_page_renders_without_the_database_or_a_static_files_manifest(
    settings, tmp_path, django_assert_num_queries
):
    settings.STATIC_ROOT = str(tmp_path)  # collectstatic never ran: no manifest
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    handler500 = get_resolver().resolve_error_handler(500)

    with django_assert_num_queries(0):
        response = handler500(RequestFactory().get("/"))

    assert response.status_code == 500
    page = response.content.decode()
    assert "Something broke on our side" in page
    assert 'href="/static/paperboy/site.css"' in page
    assert settings.CONTACT_EMAIL in page
    assert inline_code(response.content) == []


def test_an_error_in_a_view_shows_the_500_page(monkeypatch):
    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr("config.health.cheap_health", broken)

    response = Client(raise_request_exception=False).get("/healthz")

    assert response.status_code == 500
    assert "Something broke on our side" in response.content.decode()
