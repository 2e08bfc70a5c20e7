"""The whole journey in headless Chromium against the app on localhost.

Set SCREENSHOT_DIR (e.g. ``SCREENSHOT_DIR=docs/screenshots``) to keep the
signup and preferences screenshots; otherwise they go to a temporary folder.
"""

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from subscriptions import services
from subscriptions.models import Subscriber
from tests.factories import PaperFactory
from tests.subscriptions.helpers import link_in

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SAMPLE = [
    (
        "Sparse Mixture-of-Experts Routers Learn to Specialise Early",
        ["Mei Tanaka", "Lucas Ferreira", "Anika Patel", "Jonas Weber"],
        "Kyoto ML Lab",
        412,
        "Routers in sparse MoE models settle on expert specialisations within the first few "
        "thousand steps; freezing them early saves a fifth of training compute at equal quality.",
    ),
    (
        "Direct Preference Optimisation Without a Reference Model",
        ["Sara Lindqvist", "Omar Haddad"],
        "Nordic AI Institute",
        287,
        "A reference-free variant of DPO that matches RLHF quality on chat benchmarks "
        "while halving memory use.",
    ),
    (
        "Diffusion Transformers Are Secretly Good Video Predictors",
        ["Priya Raman", "Tomás Ortega", "Hannah Kim"],
        "Open Vision Collective",
        240,
        "A pretrained image diffusion transformer, fine-tuned on 2% of the usual data, "
        "predicts the next second of video.",
    ),
    (
        "Graph Neural Networks for Retrosynthesis at Industrial Scale",
        ["Felix Braun", "Aylin Demir"],
        "ChemAI Group",
        156,
        "Message passing over reaction graphs plans syntheses for 94% of a held-out set "
        "of drug candidates.",
    ),
]


def make_sample():
    return [
        PaperFactory(
            title=title, author_names=authors, organization=lab, upvotes=upvotes, ai_summary=summary
        )
        for title, authors, lab, upvotes, summary in SAMPLE
    ]


def save_screenshot(page, directory, name):
    """Full-page screenshot; also copied to $SCREENSHOT_DIR when set (docs/screenshots)."""
    path = directory / name
    page.screenshot(path=path, full_page=True)
    target = os.environ.get("SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


@pytest.fixture
def page(live_server, monkeypatch):
    """A Chromium page in Berlin's time zone, with every host it contacts recorded in page.hosts."""
    # Playwright's sync API keeps an event loop in this thread; the ORM calls
    # the test makes between steps are ordinary blocking calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                timezone_id="Europe/Berlin",
                viewport={"width": 1280, "height": 900},
                accept_downloads=True,
            )
            context.set_default_timeout(10_000)
            page = context.new_page()
            page.hosts = set()
            page.on("request", lambda request: page.hosts.add(urlsplit(request.url).hostname))
            yield page
        finally:
            browser.close()
            # ORM calls made while Playwright runs get their own connection: close
            # it, or the test database cannot be dropped at the end of the session.
            connections.close_all()


@pytest.mark.browser
def test_a_reader_joins_confirms_steers_downloads_their_data_moves_and_leaves(
    page, live_server, settings, monkeypatch, tmp_path
):
    settings.SITE_URL = live_server.url
    sample = make_sample()
    monkeypatch.setattr(services, "digest_sample", lambda limit=5: sample[:limit])

    # Signup: the time zone comes from the browser.
    page.goto(f"{live_server.url}/")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(page.get_by_text("Sparse Mixture-of-Experts Routers")).to_be_visible()
    save_screenshot(page, tmp_path, "signup.png")

    page.get_by_label("Email address").fill("reader@example.org")
    page.get_by_label("Your interests").fill("diffusion models, RLHF")
    page.get_by_label("Weekly (Monday)").check()
    page.get_by_label("20", exact=True).check()
    page.get_by_role("button", name="Send me the confirmation link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    subscriber = Subscriber.objects.get()
    assert (subscriber.status, subscriber.frequency, subscriber.max_papers) == (
        "pending",
        "weekly",
        20,
    )
    assert subscriber.timezone == "Europe/Berlin"

    # Confirm from the email: the page submits itself.
    assert len(mail.outbox) == 1
    page.goto(live_server.url + link_in(mail.outbox[0].body, "confirm"))
    expect(page.get_by_role("heading", name="You’re in!")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.status == "active"

    # Preferences.
    page.get_by_role("link", name="Fine-tune your preferences").click()
    expect(page.get_by_role("heading", name="Your preferences")).to_be_visible()
    page.get_by_label("Your interests").fill("diffusion models, RLHF, mixture of experts")
    page.get_by_label("Computer vision (cs.CV)").check()
    page.get_by_label("Daily (weekdays)").check()
    page.get_by_label("Send at").select_option("18")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.interests == "diffusion models, RLHF, mixture of experts"
    assert (subscriber.frequency, subscriber.send_hour, subscriber.categories) == (
        "daily",
        18,
        ["cs.CV"],
    )
    save_screenshot(page, tmp_path, "preferences.png")

    # My data.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data (JSON)").click()
    data = json.loads(Path(download.value.path()).read_text())
    assert data["profile"]["email"] == "reader@example.org"
    assert data["profile"]["frequency"] == "daily"

    # Move to a new address: a link mailed there, its page's button.
    page.get_by_label("New email address").fill("reader@lab.example")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your new inbox")).to_be_visible()
    assert mail.outbox[-1].to == ["reader@lab.example"]
    page.goto(live_server.url + link_in(mail.outbox[-1].body, "new-address"))
    page.get_by_role("button", name="Yes, use this address").click()
    expect(page.get_by_text("Done: your digests now go to reader@lab.example.")).to_be_visible()
    subscriber.refresh_from_db()
    assert (subscriber.email, subscriber.status) == ("reader@lab.example", "active")

    # Leave.
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You’re unsubscribed")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.status == "unsubscribed"
    assert subscriber.unsubscribed_via == "preferences"

    assert page.hosts <= {"localhost", "127.0.0.1"}, f"the pages fetched from {page.hosts}"
