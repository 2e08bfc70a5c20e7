"""Every link that carries a signed token: forged, truncated, tampered, expired,
used for another purpose or replayed after revocation, it is refused cleanly
(a 4xx page, never a 500) and changes nothing.

By design two answers are not refusals: an unsubscribe link keeps working
after the subscriber revoked their links (every email ever sent keeps a way
out), and an unsubscribe link of a deleted subscriber says they are gone.
"""

import base64
import json
from datetime import timedelta
from urllib.parse import quote

import pytest
import time_machine
from django.core import signing
from django.test import Client
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st

from digest.models import Delivery, Feedback
from digest.sending import send_edition_to
from subscriptions import services
from subscriptions.models import Subscriber
from subscriptions.tokens import (
    CONFIRM,
    FEED,
    FEEDBACK,
    PREFERENCES,
    UNSUBSCRIBE,
    VIEW,
    make_token,
)
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

from .strategies import HARDENING, json_values, token_text

pytestmark = pytest.mark.django_db

PURPOSES = [CONFIRM, PREFERENCES, UNSUBSCRIBE, VIEW, FEED, FEEDBACK]
REFUSED = {400, 404, 405, 410}


@pytest.fixture
def reader():
    """An active subscriber with one digest sent: every kind of link has something to open."""
    edition = built_edition()
    subscriber = SubscriberFactory(email="reader@example.org", interests="")
    send_edition_to(edition, [subscriber.pk])
    delivery = Delivery.objects.get(subscriber=subscriber)
    assert delivery.status == "sent"
    return subscriber, edition, delivery.paper_ids[0]


def token_for(subscriber, purpose, edition):
    extra = {CONFIRM: {"t": 2_000_000_000}, VIEW: {"e": edition.pk}, FEEDBACK: {"e": edition.pk}}
    return make_token(subscriber, purpose, **extra.get(purpose, {}))


def endpoints(paper_id):
    """(method, path template, purpose) of every link-carrying endpoint."""
    return [
        ("get", "/confirm/{}/", CONFIRM),
        ("post", "/confirm/{}/", CONFIRM),
        ("get", "/preferences/{}/", PREFERENCES),
        ("post", "/preferences/{}/pause/", PREFERENCES),
        ("post", "/preferences/{}/resume/", PREFERENCES),
        ("post", "/preferences/{}/my-data/", PREFERENCES),
        ("get", "/preferences/{}/delete/", PREFERENCES),
        ("post", "/preferences/{}/delete/", PREFERENCES),
        ("post", "/preferences/{}/new-link/", PREFERENCES),
        ("get", "/unsubscribe/{}/", UNSUBSCRIBE),
        ("post", "/unsubscribe/{}/", UNSUBSCRIBE),
        ("get", "/d/{}/", VIEW),
        ("get", "/feed/{}/", FEED),
        ("get", f"/vote/{{}}/{paper_id}/up/", FEEDBACK),
        ("post", f"/vote/{{}}/{paper_id}/down/", FEEDBACK),
    ]


def snapshot(subscriber):
    row = Subscriber.objects.filter(pk=subscriber.pk).values().first()
    return row, Feedback.objects.filter(subscriber_id=subscriber.pk).count()


def request(method, template, token):
    path = template.format(quote(token.encode("utf-8", "surrogatepass"), safe=""))
    return getattr(Client(), method)(path)


# --- Any string at all ----------------------------------------------------------------


@HARDENING
@given(token=token_text, which=st.integers(min_value=0, max_value=14))
def test_any_string_as_a_token_is_refused_cleanly_on_every_endpoint(reader, token, which):
    subscriber, _, paper_id = reader
    method, template, _ = endpoints(paper_id)[which]
    before = snapshot(subscriber)

    response = request(method, template, token)

    assert response.status_code in REFUSED, (template, response.status_code)
    assert snapshot(subscriber) == before


def signed(subscriber, purpose, **extra):
    """A token our own key signed, whatever its payload."""
    payload = {"s": subscriber.pk, "k": subscriber.token_secret[:10], **extra}
    salt = f"paperboy.subscriptions.{purpose}"
    if purpose == CONFIRM:
        return signing.TimestampSigner(salt=salt).sign_object(payload)
    return signing.dumps(payload, salt=salt)


@HARDENING
@given(
    extra=st.dictionaries(st.sampled_from(["s", "k", "t", "e", "p", "v"]), json_values),
    which=st.integers(min_value=0, max_value=14),
)
@example(extra={"k": "s\u00e9cret"}, which=2)  # non-ASCII: hmac.compare_digest raised TypeError
@example(extra={"k": "\ud800"}, which=9)
@example(extra={"s": 2**70}, which=2)
@example(extra={"t": "yesterday"}, which=1)
@example(extra={"t": [1]}, which=1)
@example(extra={"t": 10**30}, which=1)
@example(extra={"e": {"x": 1}}, which=11)
@example(extra={"e": 2**70}, which=14)
def test_a_genuinely_signed_token_with_a_hostile_payload_never_breaks_a_page(reader, extra, which):
    """What our own key signed can still be odd (an old format, a future one): never a 500."""
    subscriber, _, paper_id = reader
    method, template, purpose = endpoints(paper_id)[which]
    if purpose == CONFIRM:
        services.unsubscribe(subscriber, via="page")  # the state in which "t" is read
    if method == "post" and template.endswith(("/delete/", "/new-link/")):
        method = "get"  # a genuine delete link deletes: not what this test is about

    response = request(method, template, signed(subscriber, purpose, **extra))

    assert response.status_code < 500, template


@pytest.mark.parametrize("edition_id", [{"x": 1}, [1], "1; DROP TABLE"])
@pytest.mark.parametrize("template,purpose", [("/d/{}/", VIEW), ("/vote/{}/1/up/", FEEDBACK)])
def test_a_signed_digest_token_with_a_malformed_edition_id_never_breaks_a_page(
    reader, template, purpose, edition_id
):
    subscriber, _, _ = reader
    response = request("get", template, signed(subscriber, purpose, e=edition_id))
    assert response.status_code in (400, 404)


# --- Forged, tampered, truncated ------------------------------------------------------


def forged_tokens(subscriber, purpose, edition):
    genuine = token_for(subscriber, purpose, edition)
    payload = {"s": subscriber.pk, "k": subscriber.token_secret[:10]}
    salt = f"paperboy.subscriptions.{purpose}"
    other_key = "not-the-secret-key-" * 3
    signed_elsewhere = (
        signing.TimestampSigner(key=other_key, salt=salt).sign_object({**payload, "t": 2_000_000_000})
        if purpose == CONFIRM
        else signing.dumps(payload, key=other_key, salt=salt)
    )
    body, _, signature = genuine.rpartition(":")
    encoded = body.split(":")[0]
    data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    data["s"] = data["s"] + 1
    swapped = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
    tampered = genuine.replace(encoded, swapped.rstrip("="), 1)
    return {
        "signed-with-another-key": signed_elsewhere,
        "payload-swapped": tampered,
        "truncated-by-one": genuine[:-1],
        "truncated-by-half": genuine[: len(genuine) // 2],
        "signature-removed": body,
        "extended": genuine + "A",
        "upper-cased": genuine.upper(),
        "unsigned-payload": encoded,
        "oversized": genuine + "A" * 5000,
    }


@pytest.mark.parametrize("purpose", PURPOSES)
def test_forged_tampered_and_truncated_tokens_are_refused_on_their_own_endpoint(reader, purpose):
    subscriber, edition, paper_id = reader
    SubscriberFactory(email="neighbour@example.org")  # the pk a swapped payload points at
    before = snapshot(subscriber)
    for name, token in forged_tokens(subscriber, purpose, edition).items():
        for method, template, endpoint_purpose in endpoints(paper_id):
            if endpoint_purpose == purpose:
                status = request(method, template, token).status_code
                assert status in REFUSED, (name, template, status)
    assert snapshot(subscriber) == before


# --- Used for the wrong purpose -----------------------------------------------------------


def test_a_token_works_only_on_the_endpoints_of_its_own_purpose(reader):
    subscriber, edition, paper_id = reader
    for purpose in PURPOSES:
        token = token_for(subscriber, purpose, edition)
        for method, template, endpoint_purpose in endpoints(paper_id):
            if endpoint_purpose == purpose:
                continue
            before = snapshot(subscriber)
            status = request(method, template, token).status_code
            assert status in REFUSED, (purpose, template, status)
            assert snapshot(subscriber) == before, (purpose, template)


def test_a_confirm_token_on_the_unsubscribe_url_neither_unsubscribes_nor_confirms(client):
    pending = SubscriberFactory(status="pending", confirmed_at=None)
    confirm_token = make_token(pending, CONFIRM, t=2_000_000_000)

    response = client.post(f"/unsubscribe/{confirm_token}/", {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 404
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_genuine_tokens_open_their_own_pages(reader):
    subscriber, edition, paper_id = reader
    expected = {
        "/confirm/{}/": 200, "/preferences/{}/": 200, "/unsubscribe/{}/": 200, "/d/{}/": 200,
        "/feed/{}/": 200, f"/vote/{{}}/{paper_id}/up/": 200,
    }
    for template, status in expected.items():
        purpose = next(p for m, t, p in endpoints(paper_id) if t == template)
        response = request("get", template, token_for(subscriber, purpose, edition))
        assert response.status_code == status, template


# --- Expired ----------------------------------------------------------------------


def test_an_expired_confirm_token_is_refused_with_410_and_confirms_nobody(client):
    pending = SubscriberFactory(status="pending", confirmed_at=None)
    token = make_token(pending, CONFIRM, t=int(timezone.now().timestamp()))

    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        shown = client.get(f"/confirm/{token}/")
        posted = client.post(f"/confirm/{token}/")

    assert shown.status_code == posted.status_code == 410
    pending.refresh_from_db()
    assert pending.status == "pending" and pending.confirmed_at is None


def test_a_confirm_token_still_works_a_day_before_it_expires(client):
    pending = SubscriberFactory(status="pending", confirmed_at=None)
    token = make_token(pending, CONFIRM, t=int(timezone.now().timestamp()))

    with time_machine.travel(timezone.now() + timedelta(days=6)):
        response = client.post(f"/confirm/{token}/")

    assert response.status_code == 200
    pending.refresh_from_db()
    assert pending.status == "active"


# --- Replayed after revocation -----------------------------------------------------------


def test_after_revocation_old_links_are_refused_but_unsubscribe_still_works(reader, client):
    subscriber, edition, paper_id = reader
    old = {purpose: token_for(subscriber, purpose, edition) for purpose in PURPOSES}

    assert client.post(f"/preferences/{old[PREFERENCES]}/new-link/").status_code == 200
    subscriber.refresh_from_db()

    for method, template, purpose in endpoints(paper_id):
        if purpose == UNSUBSCRIBE:
            continue
        before = snapshot(subscriber)
        status = request(method, template, old[purpose]).status_code
        assert status in REFUSED, (template, status)
        assert snapshot(subscriber) == before, template

    page = client.get(f"/unsubscribe/{old[UNSUBSCRIBE]}/")
    assert page.status_code == 200 and "/preferences/" not in page.content.decode()
    left = client.post(f"/unsubscribe/{old[UNSUBSCRIBE]}/")
    assert left.status_code == 200 and "/preferences/" not in left.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.status == "unsubscribed"

    fresh = make_token(subscriber, PREFERENCES)
    assert client.get(f"/preferences/{fresh}/").status_code == 200


def test_a_confirm_link_from_before_an_unsubscription_cannot_resubscribe(client):
    pending = SubscriberFactory(status="pending", confirmed_at=None)
    early = make_token(pending, CONFIRM, t=int(timezone.now().timestamp()) - 60)
    assert client.post(f"/confirm/{early}/").status_code == 200
    services.unsubscribe(pending, via="page")

    replayed = client.post(f"/confirm/{early}/")

    assert replayed.status_code == 404
    pending.refresh_from_db()
    assert pending.status == "unsubscribed"


def test_a_confirm_link_used_twice_confirms_once(client):
    pending = SubscriberFactory(status="pending", confirmed_at=None)
    token = make_token(pending, CONFIRM, t=int(timezone.now().timestamp()))

    first = client.post(f"/confirm/{token}/")
    pending.refresh_from_db()
    confirmed_at = pending.confirmed_at
    second = client.post(f"/confirm/{token}/")

    assert first.status_code == second.status_code == 200
    pending.refresh_from_db()
    assert pending.confirmed_at == confirmed_at


def test_links_of_a_deleted_subscriber_are_refused_and_unsubscribe_says_gone(reader, client):
    subscriber, edition, paper_id = reader
    tokens = {purpose: token_for(subscriber, purpose, edition) for purpose in PURPOSES}
    services.delete_subscriber(subscriber)

    for method, template, purpose in endpoints(paper_id):
        status = request(method, template, tokens[purpose]).status_code
        if purpose == UNSUBSCRIBE:
            assert status == 200, template
        else:
            assert status in REFUSED, (template, status)
    assert not Subscriber.objects.filter(pk=subscriber.pk).exists()
