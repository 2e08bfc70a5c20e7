"""Production settings: `check --deploy` is clean, and every response carries the headers.

The production values are read from a fresh interpreter started with the
production environment (DEBUG=false), then applied to the test settings to
check what the site actually sends: HTTPS redirect, HSTS, secure and
HttpOnly cookies, the Content-Security-Policy, nosniff, the referrer policy.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from lxml import html as lxml_html

from subscriptions.tokens import PREFERENCES, UNSUBSCRIBE, make_token
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "production-like-secret-key-" + "x" * 40,
    "ALLOWED_HOSTS": "paperboy.example.org",
    "SITE_URL": "https://paperboy.example.org",
    "DATABASE_URL": "postgres://paperboy@127.0.0.1:5432/paperboy",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "WEBHOOK_SECRET": "mailgun:webhook-password",
    "EMAIL_URL": "smtp://relay.example.org:587",
    "DEFAULT_FROM_EMAIL": "Paperboy <digest@mg.example.org>",
    "EMAIL_LIST_ID": "Paperboy digest <digest.paperboy.example.org>",
    "EMAIL_MESSAGE_ID_DOMAIN": "mg.example.org",
    "EMAIL_UNSUBSCRIBE_MAILTO": "unsubscribe@mg.example.org",
    "EMAIL_POSTAL_ADDRESS": "Example Lab, 2 Research Way, Cambridge",
    "CONTACT_EMAIL": "hello@paperboy.example.org",
}
SECURITY_SETTINGS = [
    "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY",
    "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS",
    "SECURE_REDIRECT_EXEMPT", "CONTENT_SECURITY_POLICY", "MIDDLEWARE",
]
# Variables of a developer's shell that would change what production settings mean.
SCRUBBED = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "ESP",
            "EMAIL_URL", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "DJANGO_SETTINGS_MODULE"}


def run_python(code_or_args, **env):
    base = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    base.update(DJANGO_SETTINGS_MODULE="config.settings", **env)
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def production():
    code = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {SECURITY_SETTINGS!r}}}))"
    )
    result = run_python(code, **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def production_settings(settings, production):
    """The test settings with the production values of every security setting."""
    for name, value in production.items():
        if name != "MIDDLEWARE":
            setattr(settings, name, tuple(value) if name == "SECURE_PROXY_SSL_HEADER" else value)
    settings.ALLOWED_HOSTS = ["paperboy.example.org", "testserver"]
    return settings


def https_client(**kwargs):
    return Client(HTTP_HOST="paperboy.example.org", **kwargs)


# --- check --deploy and the settings themselves ---------------------------------------


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {**PRODUCTION_ENV, "STATIC_ROOT": str(tmp_path)}
    collected = run_python(["manage.py", "collectstatic", "--noinput", "-v", "0"], **env)  # the build step
    assert collected.returncode == 0, collected.stderr
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_turn_on_https_hsts_and_secure_cookies(production):
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert production["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert production["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and production["SECURE_HSTS_PRELOAD"]
    for name in ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
                 "CSRF_COOKIE_HTTPONLY", "SECURE_CONTENT_TYPE_NOSNIFF"]:
        assert production[name] is True, name
    assert production["SECURE_REFERRER_POLICY"] == "same-origin"
    assert production["X_FRAME_OPTIONS"] == "DENY"
    assert "config.csp.CSPMiddleware" in production["MIDDLEWARE"]
    directives = production["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]


def test_production_refuses_to_start_without_a_secret_key():
    env = {**PRODUCTION_ENV, "SECRET_KEY": ""}
    result = run_python("from django.conf import settings; settings.SECRET_KEY", **env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_secrets_come_only_from_the_environment():
    """No credential has a default other than empty, except the DEBUG-only development key."""
    source = (ROOT / "config" / "settings.py").read_text()
    secret_names = re.findall(
        r'env\("([A-Z_]*(?:SECRET|KEY|TOKEN|PASSWORD)[A-Z_]*)"(?:, default=([^)]*))?\)', source
    )
    assert {name for name, _ in secret_names} >= {
        "SECRET_KEY", "MAILGUN_API_KEY", "MAILGUN_WEBHOOK_SIGNING_KEY", "POSTMARK_SERVER_TOKEN",
        "WEBHOOK_SECRET",
    }
    for name, default in secret_names:
        assert default in ('""', ""), f"{name} has a default: {default}"
    assert '"insecure-local-development-key-change-me" if DEBUG else ""' in source
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert ".env" not in tracked


# --- What the site sends --------------------------------------------------------------


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_but_health_probes_are_not(production_settings):
    client = https_client()

    page = client.get("/subscribe/?ref=x")
    probe = client.get("/healthz")

    assert page.status_code == 301
    assert page["Location"] == "https://paperboy.example.org/subscribe/?ref=x"
    assert probe.status_code == 200


@pytest.mark.django_db
def test_https_responses_carry_hsts_nosniff_referrer_policy_frame_denial_and_the_csp(
    production_settings,
):
    response = https_client().get("/", secure=True)

    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp


@pytest.mark.django_db
def test_cookies_are_secure_and_http_only_in_production(production_settings):
    get_user_model().objects.create_superuser("operator", "op@example.org", "a-long-passphrase")
    client = https_client()

    form = client.get("/", secure=True)
    login = client.post(
        "/admin/login/?next=/admin/",
        {"username": "operator", "password": "a-long-passphrase"},
        secure=True,
    )

    assert login.status_code == 302
    for cookie in (form.cookies["csrftoken"], login.cookies["sessionid"]):
        assert cookie["secure"] is True and cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"


@pytest.mark.django_db
def test_a_forged_host_header_is_refused(production_settings):
    response = Client(HTTP_HOST="evil.example").get("/", secure=True)
    assert response.status_code == 400


# --- No inline code for the CSP to block -------------------------------------------------


def inline_code(markup):
    """Inline scripts, style elements, style attributes and event handlers in a page."""
    tree = lxml_html.fromstring(markup)
    found = [f"<script> without src: {s.text[:60]!r}" for s in tree.iter("script") if not s.get("src")]
    found += ["<style> element" for _ in tree.iter("style")]
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if name == "style" or name.startswith("on"):
                found.append(f"<{element.tag} {name}={value[:40]!r}>")
            if name in ("href", "src", "action") and value.strip().lower().startswith("javascript:"):
                found.append(f"<{element.tag} {name}={value[:40]!r}>")
    return found


@pytest.mark.django_db
def test_no_page_of_the_site_or_the_admin_has_inline_code_for_the_csp_to_block(client):
    edition = built_edition()
    subscriber = SubscriberFactory(email="reader@example.org")
    operator = get_user_model().objects.create_superuser("operator", "op@example.org", "pw-123456")
    public = [
        "/", "/subscribe/check-your-inbox/", "/subscribe/resend/", "/digest/",
        f"/digest/daily/{edition.date:%Y-%m-%d}/",
        f"/preferences/{make_token(subscriber, PREFERENCES)}/",
        f"/preferences/{make_token(subscriber, PREFERENCES)}/delete/",
        f"/unsubscribe/{make_token(subscriber, UNSUBSCRIBE)}/",
        "/confirm/not-a-token/", "/admin/login/",
    ]
    admin = [
        reverse("admin:index"), reverse("paperboy_dashboard"),
        reverse("admin:subscriptions_subscriber_changelist"),
        reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk]),
        reverse("admin:subscriptions_subscriber_add"),
        reverse("admin:digest_edition_changelist"),
        reverse("admin:digest_edition_change", args=[edition.pk]),
        reverse("admin:digest_delivery_changelist"),
        reverse("admin:auth_user_change", args=[operator.pk]),
    ]
    for path in public + admin:
        if path == admin[0]:
            client.force_login(operator)
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert inline_code(response.content) == [], path


def test_the_inline_code_detector_finds_what_the_csp_would_block():
    page = (
        b"<html><head><style>p{}</style><script>x()</script><script src='/s.js'></script></head>"
        b"<body><p style='color:red' onclick='x()'><a href='javascript:x()'>a</a></p></body></html>"
    )
    assert len(inline_code(page)) == 5
