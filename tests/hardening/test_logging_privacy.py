"""No email address reaches the log at INFO: every flow a subscriber or an ESP
drives, captured from the configured console handler (filters included)."""

import base64
import io
import json
import logging
import re

import pytest
from django.core import mail
from django.test import Client

from config.logging import EMAIL_RE, RedactEmailsFilter
from subscriptions import services
from subscriptions.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_token
from tests.factories import SubscriberFactory
from tests.fakes import mailgun_webhooks as webhooks
from tests.subscriptions.helpers import link_in

pytestmark = pytest.mark.django_db

ADDRESSES = [
    "newcomer@example.org", "Reader.One+tag@Example.ORG", "complainer@example.org", "mover@example.org",
    "moved@example.org",
]


@pytest.fixture
def console_output(settings):
    """What the configured console handler writes, at INFO."""
    root = logging.getLogger()
    handlers = [
        h for h in root.handlers
        if isinstance(h, logging.StreamHandler) and any(isinstance(f, RedactEmailsFilter) for f in h.filters)
    ]
    assert handlers, "the console handler with the address filter is configured"
    stream = io.StringIO()
    previous = [h.setStream(stream) for h in handlers]
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.setLevel(level)
    for handler, old in zip(handlers, previous, strict=True):
        handler.setStream(old)


def test_subscriber_and_webhook_flows_log_no_address_at_info(console_output, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "mailgun:pw",
                        "MAILGUN_WEBHOOK_SIGNING_KEY": "key-test"}
    settings.SUBSCRIBE_RATE_PER_EMAIL = "2/h"
    client = Client()
    # Join, confirm, steer, leave.
    client.post("/subscribe/", {"email": ADDRESSES[0], "interests": "diffusion"})
    client.post("/confirm/" + link_in(mail.outbox[-1].body, "confirm").split("/")[2] + "/")
    newcomer = services.find_subscriber(ADDRESSES[0])
    client.post(f"/preferences/{make_token(newcomer, PREFERENCES)}/", {"interests": "rlhf"})
    client.post(f"/preferences/{make_token(newcomer, PREFERENCES)}/pause/")
    client.post(f"/preferences/{make_token(newcomer, PREFERENCES)}/new-link/")
    client.post(f"/unsubscribe/{make_token(newcomer, UNSUBSCRIBE)}/", {"List-Unsubscribe": "One-Click"})
    # Move to a new address: one that another reader has (nothing sent), then a free one.
    mover = SubscriberFactory(email=ADDRESSES[3])
    client.post(f"/preferences/{make_token(mover, PREFERENCES)}/address/", {"email": ADDRESSES[0]})
    mover.refresh_from_db()
    mover.address_change_sent_at = None
    mover.save()
    client.post(f"/preferences/{make_token(mover, PREFERENCES)}/address/", {"email": ADDRESSES[4]})
    client.post(link_in(mail.outbox[-1].body, "new-address"))
    assert services.find_subscriber(ADDRESSES[4]).pk == mover.pk
    # Resend, a honeypot bot, a flood that hits the rate limit, an invalid address.
    pending = SubscriberFactory(email=ADDRESSES[1].lower(), status="pending", confirmed_at=None)
    client.post("/subscribe/resend/", {"email": ADDRESSES[1]})
    client.post("/subscribe/", {"email": ADDRESSES[1], "website": "http://spam.example"})
    for _ in range(3):
        client.post("/subscribe/", {"email": ADDRESSES[1]})
    client.post("/subscribe/", {"email": "not-an-address@"})
    client.get(f"/confirm/{make_token(pending, CONFIRM, t=1)}/")
    # An ESP complaint, and an email that fails to send.
    complainer = SubscriberFactory(email=ADDRESSES[2])
    event = webhooks.complaint("key-test", ADDRESSES[2], "20261120.1@mg.example.org")
    client.generic(
        "POST", "/anymail/mailgun/tracking/", json.dumps(event), content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"mailgun:pw").decode(),
    )
    complainer.refresh_from_db()
    assert complainer.status == "complained"

    output = console_output.getvalue()
    info_lines = [line for line in output.splitlines() if re.search(r" (INFO|DEBUG) ", line)]
    assert len(info_lines) >= 2, output  # the honeypot and the webhook log at INFO
    assert any("No new-address link sent" in line for line in info_lines), output
    for line in info_lines:
        assert not EMAIL_RE.search(line), line
        for address in ADDRESSES:
            assert address.lower() not in line.lower(), line
