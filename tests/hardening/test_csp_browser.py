"""The Content-Security-Policy in a real browser: every page renders and scripts run,
and Chromium reports no violation, on the public pages, the admin and the dashboard.

Set SCREENSHOT_DIR to keep the screenshots (signup, admin dashboard, the email
in the browser); otherwise they go to a temporary folder.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.urls import reverse
from playwright.sync_api import expect, sync_playwright

from digest.models import Delivery
from digest.sending import send_edition_to
from subscriptions.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, VIEW, make_token
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.subscriptions.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(live_server, monkeypatch):
    """A Chromium page whose CSP violations (console errors) are collected in page.violations."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(10_000)
            page.violations = []
            page.on(
                "console",
                lambda message: page.violations.append(f"{page.url}: {message.text}")
                if "Content Security Policy" in message.text
                else None,
            )
            yield page
        finally:
            browser.close()
            connections.close_all()


def screenshot(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=path, full_page=True)
    target = os.environ.get("SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


def test_public_pages_admin_and_dashboard_work_under_the_csp(browser_page, live_server, tmp_path):
    page = browser_page
    edition = built_edition()
    reader = SubscriberFactory(email="reader@example.org", interests="")
    send_edition_to(edition, [reader.pk])
    assert Delivery.objects.get(subscriber=reader).status == "sent"
    pending = SubscriberFactory(email="pending@example.org", status="pending", confirmed_at=None)
    get_user_model().objects.create_superuser("operator", "operator@example.org", "a-long-passphrase")
    url = live_server.url

    response = page.goto(f"{url}/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    expect(page.get_by_label("Time zone")).to_be_visible()
    # site.js ran (a blocked script would leave the zone at UTC)
    assert page.evaluate("() => !!document.querySelector('select[data-detect-timezone]')")
    screenshot(page, tmp_path, "csp-signup.png")

    for path in [
        "/subscribe/check-your-inbox/",
        f"/preferences/{make_token(reader, PREFERENCES)}/",
        f"/unsubscribe/{make_token(reader, UNSUBSCRIBE)}/",
        "/digest/",
        f"/digest/daily/{edition.date:%Y-%m-%d}/",
    ]:
        assert page.goto(url + path).status == 200, path

    # The confirmation page submits itself through site.js: proof that scripts run.
    page.goto(f"{url}/confirm/{make_token(pending, CONFIRM, t=2_000_000_000)}/")
    expect(page.get_by_role("heading", name="You’re in!")).to_be_visible()
    pending.refresh_from_db()
    assert pending.status == "active"

    # The email in the browser keeps its inline styles, and only there.
    view = page.goto(f"{url}/d/{make_token(reader, VIEW, e=edition.pk)}/")
    assert view.status == 200
    assert "style-src 'self' 'unsafe-inline'" in view.headers["content-security-policy"]
    assert "script-src 'self'" in view.headers["content-security-policy"]
    screenshot(page, tmp_path, "csp-view-in-browser.png")

    # The admin: login form, index, dashboard, change list and change form.
    page.goto(f"{url}/admin/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("a-long-passphrase")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Dashboard")).to_be_visible()
    for path in [
        reverse("paperboy_dashboard"),
        reverse("admin:subscriptions_subscriber_changelist"),
        reverse("admin:subscriptions_subscriber_change", args=[reader.pk]),
        reverse("admin:subscriptions_subscriber_add"),
        reverse("admin:digest_edition_change", args=[edition.pk]),
        reverse("admin:papers_paper_changelist"),
        reverse("admin:papers_paper_change", args=[edition.entries.first().paper_id]),
        reverse("admin:digest_delivery_preview", args=[reader.pk]),
        reverse("admin:digest_delivery_email", args=[Delivery.objects.get(subscriber=reader).pk]),
    ]:
        assert page.goto(url + path).status == 200, path
        if path == reverse("paperboy_dashboard"):
            screenshot(page, tmp_path, "csp-admin-dashboard.png")
    # Admin JavaScript runs: the change list's "select all" checkbox ticks every row.
    page.goto(url + reverse("admin:subscriptions_subscriber_changelist"))
    page.locator("#action-toggle").check()
    expect(page.locator("input.action-select").first).to_be_checked()

    assert page.violations == []
