"""anymail's webhook URLs other than Mailgun's tracking, resolved against anymail only when one is posted."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from digest.models import Delivery, WebhookEvent
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "postmark:webhook-password"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


def basic_auth(secret):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def postmark_delivery(delivery):
    return {
        "RecordType": "Delivery", "MessageID": "0a1b2c3d-0000-4000-8000-000000000001",
        "Recipient": delivery.subscriber.email, "DeliveredAt": "2026-11-20T07:15:00Z",
        "Metadata": {"delivery_id": str(delivery.pk)}, "Details": "250 OK", "Tag": "",
    }


def test_a_postmark_delivery_event_stamps_its_delivery_through_a_csrf_checking_client(
    django_capture_on_commit_callbacks,
):
    delivery = Delivery.objects.create(subscriber=SubscriberFactory(), edition=built_edition(), status="sent")
    client = Client(enforce_csrf_checks=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/anymail/postmark/tracking/", data=json.dumps(postmark_delivery(delivery)),
                               content_type="application/json", **basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 200
    [event] = WebhookEvent.objects.all()
    assert (event.esp, event.event_type, event.delivery_id) == ("Postmark", "delivered", delivery.pk)
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None


def test_anymail_still_checks_the_webhook_secret():
    delivery = Delivery.objects.create(subscriber=SubscriberFactory(), edition=built_edition(), status="sent")
    response = Client().post("/anymail/postmark/tracking/", data=json.dumps(postmark_delivery(delivery)),
                             content_type="application/json", **basic_auth("postmark:wrong"))
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_path_anymail_does_not_serve_is_not_found(client):
    assert client.post("/anymail/postmark/no-such-hook/", data="{}", content_type="application/json").status_code == 404
    assert client.get("/anymail/").status_code == 404


def test_resolving_the_sites_urls_imports_no_esp_webhook_module():
    """A worker's first digest link resolves the URL conf; boto3 (for SES webhooks) is not imported by it."""
    code = (
        "import sys, django; django.setup(); from django.urls import reverse; "
        "reverse('healthz'); reverse('paperboy_dashboard'); "
        "print(sorted(m for m in ('anymail.urls', 'anymail.webhooks.amazon_ses', 'boto3') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
