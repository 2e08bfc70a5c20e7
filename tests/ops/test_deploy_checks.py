"""``check --deploy`` names the settings that fail silently in production."""

import pytest
from django.core.checks import run_checks

from config.checks import IDENTITY_SETTINGS
from tests.hardening.test_security_settings import PRODUCTION_ENV

IDENTITY = {name: PRODUCTION_ENV[name] for name in IDENTITY_SETTINGS}


def deploy_warnings():
    return {message.id: message for message in run_checks(include_deployment_checks=True)
            if message.id.startswith("config.")}


@pytest.fixture
def production(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.ESP, settings.EMAIL_URL = "mailgun", ""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_API_KEY": "key-0123", "MAILGUN_SENDER_DOMAIN": "mg.example.org"}
    for name, value in IDENTITY.items():
        setattr(settings, name, value)
    return settings


def test_production_settings_raise_none_of_them(production):
    assert deploy_warnings() == {}


def test_no_redis_url_is_named(production):
    production.REDIS_URL = ""
    assert list(deploy_warnings()) == ["config.W001"]


@pytest.mark.parametrize(("esp", "email_url", "warned"), [("", "", True), ("", "smtp://relay:587", False), ("postmark", "", False)])
def test_no_email_transport_is_named(production, esp, email_url, warned):
    production.ESP, production.EMAIL_URL = esp, email_url
    assert ("config.W002" in deploy_warnings()) is warned


@pytest.mark.parametrize("name", sorted(IDENTITY))
def test_each_placeholder_address_is_named(production, name):
    setattr(production, name, {"EMAIL_POSTAL_ADDRESS": "Paperboy, 1 Example Street, Cambridge"}.get(
        name, "Paperboy <digest@paperboy.localhost>"))
    warning = deploy_warnings()["config.W003"]
    assert warning.msg.startswith(f"{name} still hold")


@pytest.mark.parametrize(("esp", "credentials", "missing"), [
    ("mailgun", {"MAILGUN_API_KEY": ""}, "MAILGUN_API_KEY is empty"),
    ("mailgun", {"MAILGUN_API_KEY": "", "MAILGUN_SENDER_DOMAIN": ""}, "MAILGUN_API_KEY, MAILGUN_SENDER_DOMAIN are empty"),
    ("postmark", {"POSTMARK_SERVER_TOKEN": ""}, "POSTMARK_SERVER_TOKEN is empty"),
])
def test_an_esp_without_its_credentials_is_named(production, esp, credentials, missing):
    production.ESP, production.EMAIL_BACKEND = esp, f"anymail.backends.{esp}.EmailBackend"
    production.ANYMAIL = {**production.ANYMAIL, "POSTMARK_SERVER_TOKEN": "token", **credentials}
    warning = deploy_warnings()["config.W005"]
    assert warning.msg == f"ESP={esp} but {missing}: the ESP would refuse every email."


def test_an_esp_with_its_credentials_or_with_boto3s_own_is_not_named(production):
    production.ANYMAIL = {**production.ANYMAIL, "POSTMARK_SERVER_TOKEN": "token"}
    for esp in ("mailgun", "postmark", "amazon_ses"):
        production.ESP, production.EMAIL_BACKEND = esp, f"anymail.backends.{esp}.EmailBackend"
        assert "config.W005" not in deploy_warnings(), esp


def test_an_esp_anymail_does_not_know_is_named(production):
    production.ESP, production.EMAIL_BACKEND = "mailgum", "anymail.backends.mailgum.EmailBackend"
    assert deploy_warnings()["config.W004"].msg.startswith("ESP='mailgum' names no email service")


def test_they_are_deploy_checks_only(settings):
    settings.REDIS_URL, settings.ESP, settings.EMAIL_URL = "", "", ""
    assert not [m for m in run_checks() if m.id.startswith("config.")]
