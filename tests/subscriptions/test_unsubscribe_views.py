import pytest
from django.core import signing
from django.db import connections
from django.test import Client
from django.urls import reverse

from subscriptions import services
from subscriptions.models import Subscriber
from subscriptions.tokens import UNSUBSCRIBE, make_token
from tests.factories import SubscriberFactory
from tests.subscriptions.helpers import unsubscribe_path

pytestmark = pytest.mark.django_db


def status_of(subscriber):
    return Subscriber.objects.get(pk=subscriber.pk).status


def one_click(path):
    """POST exactly as a mailbox provider does (RFC 8058): no cookies, no CSRF token."""
    provider = Client(enforce_csrf_checks=True)
    return provider.post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )


def test_get_asks_and_changes_nothing(client, subscriber):
    response = client.get(unsubscribe_path(subscriber))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unsubscribe from Paperboy?" in html
    assert 'method="post"' in html
    assert status_of(subscriber) == "active"
    assert client.head(unsubscribe_path(subscriber)).status_code == 200
    assert status_of(subscriber) == "active"


def test_the_button_unsubscribes(client, subscriber):
    response = client.post(unsubscribe_path(subscriber))
    assert response.status_code == 200
    assert "You’re unsubscribed" in response.content.decode()
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via) == ("unsubscribed", "page")
    assert row.unsubscribed_at is not None


def test_one_click_post_from_a_mail_provider_unsubscribes_at_once(subscriber):
    response = one_click(unsubscribe_path(subscriber))
    assert response.status_code == 200
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via) == ("unsubscribed", "one-click")


def test_one_click_sets_no_cookie(subscriber):
    response = one_click(unsubscribe_path(subscriber))
    assert not response.cookies


def test_one_click_as_multipart_works_too(subscriber):
    response = Client(enforce_csrf_checks=True).post(
        unsubscribe_path(subscriber), {"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert status_of(subscriber) == "unsubscribed"


def test_the_emailed_link_and_header_point_at_this_endpoint(subscriber):
    from digest.emails import build_email

    message = build_email(
        "already_subscribed",
        {
            "subscriber": subscriber,
            "preferences_url": "x",
            "unsubscribe_url": services.unsubscribe_url(subscriber),
        },
        subscriber.email,
        "s",
    )
    header = message.extra_headers["List-Unsubscribe"]
    path = header.split("<")[1].split(">")[0].split("://", 1)[1].split("/", 1)[1]
    assert one_click("/" + path).status_code == 200
    assert status_of(subscriber) == "unsubscribed"


@pytest.mark.django_db(transaction=True)
def test_unsubscribing_is_committed_before_the_response():
    """A sending worker on its own connection must see the change at once."""
    subscriber = SubscriberFactory()
    one_click(unsubscribe_path(subscriber))
    worker = connections.create_connection("default")
    try:
        with worker.cursor() as cursor:
            cursor.execute(
                "SELECT status FROM subscriptions_subscriber WHERE id = %s", [subscriber.pk]
            )
            assert cursor.fetchone() == ("unsubscribed",)
    finally:
        worker.close()


def test_already_unsubscribed_still_sees_success(client, subscriber):
    one_click(unsubscribe_path(subscriber))
    first = Subscriber.objects.get(pk=subscriber.pk).unsubscribed_at
    for response in (
        client.get(unsubscribe_path(subscriber)),
        client.post(unsubscribe_path(subscriber)),
        one_click(unsubscribe_path(subscriber)),
    ):
        assert response.status_code == 200
        assert "You’re unsubscribed" in response.content.decode()
    assert Subscriber.objects.get(pk=subscriber.pk).unsubscribed_at == first


def test_a_deleted_subscriber_still_sees_success(client, subscriber):
    path = unsubscribe_path(subscriber)
    services.delete_subscriber(subscriber)
    assert one_click(path).status_code == 200
    response = client.get(path)
    assert response.status_code == 200
    assert "no longer hold any data" in response.content.decode()


def test_links_in_old_emails_work_after_revocation(subscriber):
    path = unsubscribe_path(subscriber)
    services.revoke_links(subscriber)
    assert one_click(path).status_code == 200
    assert status_of(subscriber) == "unsubscribed"


def test_a_revoked_link_does_not_lead_to_the_preferences(client, subscriber):
    path = unsubscribe_path(subscriber)
    services.revoke_links(subscriber)
    assert "/preferences/" not in client.get(path).content.decode()
    assert "/preferences/" not in client.post(path).content.decode()


def test_a_current_link_offers_the_way_back(client, subscriber):
    assert "/preferences/" in client.post(unsubscribe_path(subscriber)).content.decode()


@pytest.mark.parametrize("token", ["nope", "x" * 3000, "€€€", "1:2:3"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_or_garbage_tokens_get_a_friendly_page(client, token, method):
    response = getattr(client, method)(f"/unsubscribe/{token}/")
    assert response.status_code == 404
    assert "This link doesn’t work" in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_a_tampered_token_unsubscribes_nobody(subscriber):
    token = make_token(subscriber, UNSUBSCRIBE)
    forged = token.rsplit(":", 1)[0] + ":" + "A" * 27
    assert one_click(reverse("subscriptions:unsubscribe", args=[forged])).status_code == 404
    assert status_of(subscriber) == "active"


def test_a_preferences_token_cannot_unsubscribe(subscriber):
    from subscriptions.tokens import PREFERENCES

    path = reverse("subscriptions:unsubscribe", args=[make_token(subscriber, PREFERENCES)])
    assert one_click(path).status_code == 404
    assert status_of(subscriber) == "active"


def test_the_preferences_page_button_records_where_they_left(client, subscriber):
    client.post(unsubscribe_path(subscriber), {"from": "preferences"})
    assert Subscriber.objects.get(pk=subscriber.pk).unsubscribed_via == "preferences"


def test_unsubscribe_by_put_is_refused(client, subscriber):
    assert client.put(unsubscribe_path(subscriber)).status_code == 405
    assert status_of(subscriber) == "active"


def test_a_post_with_a_broken_body_still_unsubscribes(subscriber):
    response = Client(enforce_csrf_checks=True).generic(
        "POST",
        unsubscribe_path(subscriber),
        b"--xx\r\nContent-Disposition: form-data; name=",
        content_type="multipart/form-data; boundary=xx",
    )
    assert response.status_code == 200
    assert status_of(subscriber) == "unsubscribed"


# --- The lean RFC 8058 one-click path -------------------------------------------------


def test_one_click_answers_a_short_plain_text_200_without_a_page_or_a_session(subscriber):
    response = one_click(unsubscribe_path(subscriber))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == "You’re unsubscribed from Paperboy.\n"
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert "no-cache" in response["Cache-Control"]
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via) == ("unsubscribed", "one-click")
    assert row.unsubscribed_at is not None and row.updated_at >= row.unsubscribed_at


def test_one_click_costs_one_query_and_reads_no_row(subscriber, django_assert_num_queries):
    path = unsubscribe_path(subscriber)
    with django_assert_num_queries(1) as captured:
        one_click(path)
    assert captured.captured_queries[0]["sql"].startswith("UPDATE")
    with django_assert_num_queries(1):  # the second time too: nothing is read first
        one_click(path)


@pytest.mark.parametrize("status", ["pending", "active", "paused"])
def test_one_click_unsubscribes_from_every_receiving_status(status):
    subscriber = SubscriberFactory(status=status)
    assert one_click(unsubscribe_path(subscriber)).status_code == 200
    assert status_of(subscriber) == "unsubscribed"


def test_one_click_is_idempotent(subscriber):
    path = unsubscribe_path(subscriber)
    one_click(path)
    first = Subscriber.objects.values("unsubscribed_at", "unsubscribed_via", "updated_at").get()
    second = one_click(path)
    assert second.status_code == 200
    fields = ("unsubscribed_at", "unsubscribed_via", "updated_at")
    assert Subscriber.objects.values(*fields).get() == first


def test_one_click_after_leaving_another_way_keeps_how_they_left(client, subscriber):
    path = unsubscribe_path(subscriber)
    client.post(path)  # the page's button
    response = one_click(path)
    assert response.status_code == 200
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via) == ("unsubscribed", "page")


@pytest.mark.parametrize("status", ["bounced", "complained", "suppressed"])
def test_one_click_leaves_a_blocked_subscriber_as_they_are(status):
    subscriber = SubscriberFactory(status=status)
    assert one_click(unsubscribe_path(subscriber)).status_code == 200
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via, row.unsubscribed_at) == (status, "", None)


def test_one_click_answers_the_same_for_a_live_a_gone_and_a_deleted_subscriber(
    subscriber, django_assert_num_queries
):
    """No enumeration: the answer does not tell whether the address still exists."""
    live, left, deleted = subscriber, SubscriberFactory(), SubscriberFactory()
    one_click(unsubscribe_path(left))
    deleted_path = unsubscribe_path(deleted)
    services.delete_subscriber(deleted)
    answers = [one_click(unsubscribe_path(s)) for s in (live, left)]
    with django_assert_num_queries(1):
        answers.append(one_click(deleted_path))
    assert {(a.status_code, a.content, a["Content-Type"]) for a in answers} == {
        (200, "You’re unsubscribed from Paperboy.\n".encode(), "text/plain; charset=utf-8")
    }
    for answer, person in zip(answers, (live, left, deleted), strict=True):
        assert person.email.encode() not in answer.content
        assert person.email not in str(answer.headers)
    assert not Subscriber.objects.filter(pk=deleted.pk).exists()


def test_one_click_with_a_revoked_link_still_works_without_reading_the_secret(subscriber):
    path = unsubscribe_path(subscriber)
    services.revoke_links(subscriber)
    assert one_click(path).status_code == 200
    assert Subscriber.objects.get(pk=subscriber.pk).unsubscribed_via == "one-click"


@pytest.mark.parametrize("purpose", ["confirm", "preferences", "view", "feed", "feedback"])
def test_one_click_with_another_purposes_token_is_refused(subscriber, purpose):
    path = reverse("subscriptions:unsubscribe", args=[make_token(subscriber, purpose)])
    response = one_click(path)
    assert response.status_code == 404
    assert "This link doesn’t work" in response.content.decode()
    assert status_of(subscriber) == "active"


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token.rsplit(":", 1)[0] + ":" + "A" * 27,  # signature replaced
        lambda token: token[:-1],  # truncated
        lambda token: token.rsplit(":", 1)[0],  # signature removed
        lambda token: token.upper(),
        lambda token: "x" * 3000,
    ],
    ids=["resigned", "truncated", "unsigned", "upper", "oversized"],
)
def test_one_click_with_a_forged_token_is_refused_and_changes_nothing(subscriber, forge):
    path = reverse("subscriptions:unsubscribe", args=[forge(make_token(subscriber, UNSUBSCRIBE))])
    response = one_click(path)
    assert response.status_code == 404
    assert "This link doesn’t work" in response.content.decode()
    assert status_of(subscriber) == "active"


def test_a_token_for_another_subscriber_id_needs_our_key(subscriber):
    other = SubscriberFactory()
    forged = signing.dumps(
        {"s": other.pk, "k": ""}, salt="paperboy.subscriptions.unsubscribe", key="not-ours"
    )
    assert one_click(reverse("subscriptions:unsubscribe", args=[forged])).status_code == 404
    assert status_of(other) == "active"


@pytest.mark.parametrize(
    "payload",
    [{"s": 2**70}, {"s": -1}, {"s": "1"}, {"s": True}, {"s": 1.0}, {}, [1], "1", None],
    ids=repr,
)
def test_one_click_with_a_hostile_payload_signed_with_our_key_never_errors(subscriber, payload):
    token = signing.dumps(payload, salt="paperboy.subscriptions.unsubscribe", compress=False)
    response = one_click(reverse("subscriptions:unsubscribe", args=[token]))
    assert response.status_code in (200, 404)
    assert status_of(subscriber) == "active"


def test_a_form_post_without_the_one_click_body_still_renders_the_page(client, subscriber):
    response = client.post(unsubscribe_path(subscriber), {"List-Unsubscribe": "one-click"})
    assert "<html" in response.content.decode().lower()
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via) == ("unsubscribed", "page")
