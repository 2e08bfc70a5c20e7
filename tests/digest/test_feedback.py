"""👍/👎 links: a GET never votes (mail scanners prefetch), a POST does, forged links are refused."""

import re

import pytest

from digest.models import Delivery, Feedback
from digest.sending import load_readers, prepare_edition, send_edition_to
from subscriptions import tokens
from subscriptions.services import export_subscriber_data
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def digest(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="")
    send_edition_to(edition, [subscriber.pk])
    return mailoutbox[0], subscriber, Delivery.objects.get()


def vote_links(message, choice):
    return re.findall(rf"http://[^\s\"<>]+/vote/[^\s\"<>]+/\d+/{choice}/", message.body)


def path_of(url):
    return url.split("127.0.0.1:8000", 1)[1]


def test_every_paper_has_a_like_and_a_dislike_link(digest):
    message, _, delivery = digest
    likes, dislikes = vote_links(message, "up"), vote_links(message, "down")
    assert len(likes) == len(dislikes) == len(delivery.paper_ids)
    assert [int(url.rstrip("/").split("/")[-2]) for url in likes] == delivery.paper_ids


def test_a_get_shows_a_self_submitting_page_and_records_nothing(client, digest):
    message, _, _ = digest
    response = client.get(path_of(vote_links(message, "up")[0]))
    assert response.status_code == 200
    assert b"data-autosubmit" in response.content and b'method="post"' in response.content
    assert b'type="submit"' in response.content  # the fallback button
    assert response["X-Robots-Tag"] == "noindex"
    assert not Feedback.objects.exists()


def test_a_head_request_records_nothing(client, digest):
    message, _, _ = digest
    response = client.head(path_of(vote_links(message, "up")[0]))
    assert response.status_code == 200
    assert not Feedback.objects.exists()


def test_a_post_records_the_vote_and_the_latest_vote_wins(client, digest):
    message, subscriber, delivery = digest
    paper_id = delivery.paper_ids[0]
    assert client.post(path_of(vote_links(message, "up")[0])).status_code == 200
    assert Feedback.objects.get().vote == 1
    client.post(path_of(vote_links(message, "down")[0]))
    feedback = Feedback.objects.get()
    assert (feedback.subscriber, feedback.paper_id, feedback.vote) == (subscriber, paper_id, -1)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("/up/", "/sideways/"),
        lambda url: re.sub(r"/vote/([^/]+?)(.)/", lambda m: f"/vote/{m.group(1)}{'A' if m.group(2) != 'A' else 'B'}/", url),
        lambda url: re.sub(r"/(\d+)/up/", "/999999/up/", url),
    ],
    ids=["unknown choice", "altered signature", "paper not in that edition"],
)
def test_a_tampered_link_is_refused_and_records_nothing(client, digest, tamper):
    message, _, _ = digest
    response = client.post(path_of(tamper(vote_links(message, "up")[0])))
    assert response.status_code in (400, 404)
    assert not Feedback.objects.exists()


def test_a_link_for_another_purpose_or_a_revoked_secret_is_refused(client, digest):
    message, subscriber, delivery = digest
    other_purpose = tokens.make_token(subscriber, tokens.VIEW, e=delivery.edition_id)
    assert client.post(f"/vote/{other_purpose}/{delivery.paper_ids[0]}/up/").status_code == 400
    url = path_of(vote_links(message, "up")[0])
    subscriber.token_secret = "rotated" * 4
    subscriber.save()
    assert client.post(url).status_code == 400
    assert not Feedback.objects.exists()


def test_votes_steer_the_next_ranking_and_show_in_my_data(client, digest):
    message, subscriber, delivery = digest
    client.post(path_of(vote_links(message, "up")[0]))
    liked_id = delivery.paper_ids[0]

    readers = load_readers(delivery.edition, [subscriber.pk])
    assert [p.pk for p in readers.liked[subscriber.pk]] == [liked_id]
    ranked = readers.rank(prepare_edition(delivery.edition).ranker, subscriber, apply_threshold=False)
    assert liked_id not in {r.paper.pk for r in ranked}
    assert any(r.reason.startswith("like “") for r in ranked)

    exported = export_subscriber_data(subscriber)["feedback"]
    assert [item["vote"] for item in exported] == [1]


def test_votes_show_in_the_admin(admin_client, client, digest):
    message, subscriber, _ = digest
    client.post(path_of(vote_links(message, "down")[0]))
    response = admin_client.get("/admin/digest/feedback/")
    assert response.status_code == 200 and subscriber.email in response.content.decode()


@pytest.mark.parametrize("edition_id", [{"x": 1}, [1], "1; DROP TABLE", None, 2**70, 0, -3, True])
def test_a_signed_link_with_a_malformed_edition_is_refused(client, digest, edition_id):
    _, subscriber, delivery = digest
    token = tokens.make_token(subscriber, tokens.FEEDBACK, e=edition_id)
    assert client.post(f"/vote/{token}/{delivery.paper_ids[0]}/up/").status_code == 400


def test_a_paper_id_too_big_for_the_database_is_refused(client, digest):
    message, _, _ = digest
    url = re.sub(r"/(\d+)/up/", f"/{2**70}/up/", path_of(vote_links(message, "up")[0]))
    assert client.post(url).status_code == 400
