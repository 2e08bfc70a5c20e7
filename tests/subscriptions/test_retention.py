"""UNCONFIRMED_SIGNUP_DAYS: addresses nobody confirmed are let go of, and nothing else is."""

import io
import logging
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from subscriptions import retention, services, tasks, tokens
from subscriptions.checks import unconfirmed_signup_days_long_enough
from subscriptions.models import Subscriber, Suppression
from subscriptions.retention import prune_unconfirmed_signups
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def days_ago(days):
    return NOW - timedelta(days=days)


def signup_of(days_old, *, confirmation_days_old=None, **fields):
    """A reader who signed up ``days_old`` days ago and was last sent a confirmation then
    (or ``confirmation_days_old`` days ago); by default one who never confirmed."""
    sent = days_old if confirmation_days_old is None else confirmation_days_old
    fields = {"status": "pending", "confirmed_at": None, "confirmation_sent_at": days_ago(sent), **fields}
    return SubscriberFactory(created_at=days_ago(days_old), **fields)


def remaining():
    return set(Subscriber.objects.values_list("email", flat=True))


def test_old_signups_nobody_confirmed_are_deleted_and_every_other_reader_is_kept(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    gone = [signup_of(31, email=f"typo{n}@example.org") for n in range(5)]
    gone.append(signup_of(400, confirmation_sent_at=None, email="never-mailed@example.org"))
    kept = [
        signup_of(29, email="recent@example.org"),
        signup_of(60, confirmation_days_old=3, email="asked-again@example.org"),
        signup_of(60, status="unsubscribed", email="unsubscribed-unconfirmed@example.org"),
        signup_of(60, status="unsubscribed", confirmed_at=days_ago(59), email="left@example.org"),
        signup_of(60, status="active", confirmed_at=days_ago(59), email="reader@example.org"),
        signup_of(60, status="bounced", confirmed_at=days_ago(59), email="bounced@example.org"),
    ]

    pruned = prune_unconfirmed_signups(now=NOW, batch_size=2)

    assert (pruned.readers, pruned.before) == (6, days_ago(30))
    assert remaining() == {reader.email for reader in kept}
    assert not Suppression.objects.exists()  # they never asked for anything: no trace is kept


def test_the_admin_history_of_a_deleted_signup_names_it_by_id_not_by_address(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    old, recent = signup_of(45, email="typo@example.org"), signup_of(2, email="recent@example.org")
    staff = get_user_model().objects.create_user("operator", is_staff=True)
    content_type = ContentType.objects.get_for_model(Subscriber)
    for reader in (old, recent):
        LogEntry.objects.create(
            user=staff, content_type=content_type, object_id=str(reader.pk), object_repr=str(reader),
            action_flag=CHANGE, change_message="Resent confirmation",
        )

    prune_unconfirmed_signups(now=NOW)

    names = dict(LogEntry.objects.values_list("object_id", "object_repr"))
    assert names == {str(old.pk): f"deleted subscriber {old.pk}", str(recent.pk): "recent@example.org"}


def test_a_reader_sent_a_confirmation_after_the_batch_was_read_is_not_deleted(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    first, second = signup_of(45), signup_of(45)
    old = retention.unconfirmed_signups(days_ago(30))
    ids = list(old.values_list("pk", flat=True))
    Subscriber.objects.filter(pk=second.pk).update(confirmation_sent_at=NOW)  # signed up again meanwhile

    assert retention._delete_still_unconfirmed(old, ids) == 1

    assert list(Subscriber.objects.values_list("pk", flat=True)) == [second.pk]


def test_the_address_of_a_deleted_signup_can_sign_up_again(settings, mailoutbox):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    signup_of(45, email="typo@example.org", interests="old interests")
    prune_unconfirmed_signups(now=NOW)

    result = services.request_subscription("typo@example.org", {"interests": "RLHF"}, ip="203.0.113.9")

    assert result is services.SignupResult.CREATED
    reader = Subscriber.objects.get(email="typo@example.org")
    assert (reader.status, reader.interests) == ("pending", "RLHF")
    assert [message.to for message in mailoutbox] == [["typo@example.org"]]


def test_an_old_link_of_a_deleted_signup_confirms_nobody(settings, client):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    reader = signup_of(45, email="typo@example.org")
    token = tokens.make_token(reader, tokens.CONFIRM)
    prune_unconfirmed_signups(now=NOW)

    response = client.post(reverse("subscriptions:confirm", args=[token]))

    assert response.status_code == 404  # the link names nobody now
    assert not Subscriber.objects.exists()


def test_zero_keeps_every_signup(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 0
    signup_of(4000)

    pruned = prune_unconfirmed_signups(now=NOW)

    assert (pruned.readers, pruned.before) == (0, None)
    assert Subscriber.objects.count() == 1


def test_fewer_days_than_a_confirmation_link_lives_keep_signups_that_long_and_warn(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 2
    link_still_works, link_expired = signup_of(6), signup_of(9)

    pruned = prune_unconfirmed_signups(now=NOW)

    assert pruned.before == days_ago(retention.MIN_UNCONFIRMED_DAYS) == days_ago(8)
    assert list(Subscriber.objects.values_list("pk", flat=True)) == [link_still_works.pk]
    assert not Subscriber.objects.filter(pk=link_expired.pk).exists()
    [warning] = unconfirmed_signup_days_long_enough(None)
    assert warning.id == "subscriptions.W001" and "kept 8 days" in warning.msg


@pytest.mark.parametrize("days", [0, 8, 30])
def test_no_warning_for_zero_or_enough_days(settings, days):
    settings.UNCONFIRMED_SIGNUP_DAYS = days
    assert unconfirmed_signup_days_long_enough(None) == []


def test_new_addresses_are_forgotten_once_their_link_cannot_work_and_kept_while_it_may(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 0  # the new addresses are forgotten all the same
    link_age = timedelta(seconds=tokens.NEW_ADDRESS_MAX_AGE)
    expired = SubscriberFactory(new_email="expired@example.org", address_change_sent_at=NOW - link_age - timedelta(days=2))
    just_expired = SubscriberFactory(new_email="just@example.org", address_change_sent_at=NOW - link_age - timedelta(hours=1))
    waiting = SubscriberFactory(new_email="waiting@example.org", address_change_sent_at=NOW - timedelta(hours=1))
    moved_long_ago = SubscriberFactory(new_email="", address_change_sent_at=NOW - timedelta(days=90))

    pruned = prune_unconfirmed_signups(now=NOW)

    assert pruned.new_addresses == 1
    new_emails = dict(Subscriber.objects.values_list("pk", "new_email"))
    assert new_emails == {
        expired.pk: "", just_expired.pk: "just@example.org", waiting.pk: "waiting@example.org", moved_long_ago.pk: "",
    }
    expired.refresh_from_db()
    assert expired.email.startswith("reader") and expired.status == "active"  # the reader stays as they were


def test_the_nightly_task_and_the_command_prune_and_say_what_they_did(settings, caplog):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    signup_of(45)
    SubscriberFactory(new_email="expired@example.org", address_change_sent_at=days_ago(10))

    with caplog.at_level(logging.INFO, logger="subscriptions.retention"):
        assert tasks.prune_unconfirmed_signups.delay().get() == 1
    assert "unconfirmed signups pruned readers=1 new_addresses=1" in caplog.text

    signup_of(50)
    out = io.StringIO()
    call_command("prune_unconfirmed_signups", stdout=out)
    assert out.getvalue().startswith("unconfirmed signups deleted: 1 (signed up before ")
    assert "new addresses forgotten: 0" in out.getvalue()

    settings.UNCONFIRMED_SIGNUP_DAYS = 0
    out = io.StringIO()
    call_command("prune_unconfirmed_signups", stdout=out)
    assert out.getvalue().strip() == "UNCONFIRMED_SIGNUP_DAYS is 0: every signup is kept; new addresses forgotten: 0"


def test_when_a_signup_would_go_agrees_with_the_prune(settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    asked_again = signup_of(45, confirmation_days_old=10)
    never_mailed = signup_of(5, confirmation_sent_at=None)

    assert retention.deleted_after(asked_again) == days_ago(10) + timedelta(days=30)
    assert retention.deleted_after(never_mailed) == days_ago(5) + timedelta(days=30)
    for reader in (signup_of(60, status="active", confirmed_at=days_ago(59)), signup_of(60, status="unsubscribed")):
        assert retention.deleted_after(reader) is None
    settings.UNCONFIRMED_SIGNUP_DAYS = 0
    assert retention.deleted_after(asked_again) is None

    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    prune_unconfirmed_signups(now=days_ago(10) + timedelta(days=30))  # at its time: not yet past it
    assert Subscriber.objects.filter(pk=asked_again.pk).exists()
    prune_unconfirmed_signups(now=days_ago(10) + timedelta(days=30, seconds=1))
    assert not Subscriber.objects.filter(pk=asked_again.pk).exists()
    assert Subscriber.objects.filter(pk=never_mailed.pk).exists()


def test_the_admin_says_when_a_signup_nobody_confirmed_will_be_deleted(settings, admin_client):
    settings.UNCONFIRMED_SIGNUP_DAYS = 30
    pending = signup_of(3, email="typo@example.org")
    reader = SubscriberFactory(email="reader@example.org")

    page = admin_client.get(reverse("admin:subscriptions_subscriber_change", args=[pending.pk])).content.decode()
    due = timezone.localtime(days_ago(3) + timedelta(days=30))
    assert f"at the first nightly prune after {due:%Y-%m-%d %H:%M}" in page

    page = admin_client.get(reverse("admin:subscriptions_subscriber_change", args=[reader.pk])).content.decode()
    assert "deleted if not confirmed" in page.lower() and "first nightly prune" not in page
