"""DELIVERY_RETENTION_DAYS: the ledger lets go of old digests, and only of those that are over."""

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from digest.checks import delivery_retention_long_enough
from digest.models import Delivery, EditionPaper, Feedback, SendCall, WebhookEvent
from digest import retention
from digest.retention import prune_old_digests
from subscriptions import tokens
from tests.factories import EditionFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 18)


def edition_of(days_old, *, cadence="daily"):
    edition = EditionFactory(cadence=cadence, date=TODAY - timedelta(days=days_old))
    EditionPaper.objects.create(edition=edition, paper=PaperFactory(), rank=1, trending_score=1.0)
    return edition


def digest(edition, status="sent", reader=None):
    return Delivery.objects.create(subscriber=reader or SubscriberFactory(), edition=edition, status=status,
                                   paper_ids=[edition.papers.get().pk])


def call_of(edition, *, settled=True):
    return SendCall.objects.create(
        edition=edition, token=f"t{SendCall.objects.count()}", status="sent", first_delivery_id=1,
        last_delivery_id=1, delivery_ids=[1], papers="{}", settled_at=timezone.now() if settled else None,
    )


def test_final_digests_of_editions_past_the_retention_are_deleted_and_the_rest_kept(settings):
    settings.DELIVERY_RETENTION_DAYS = 90
    old, edge, recent = edition_of(91), edition_of(90), edition_of(3)
    reader = SubscriberFactory()
    gone = [digest(old, status, reader if status == "sent" else None) for status in ("sent", "failed", "skipped")]
    left_open = [digest(old, "pending"), digest(old, "sending")]
    kept = [digest(edge, reader=reader), digest(recent, reader=reader), *left_open]
    old_call, open_call, edge_call = call_of(old), call_of(old, settled=False), call_of(edge)
    Feedback.objects.create(subscriber=reader, paper=old.papers.get(), vote=1)
    event = WebhookEvent.objects.create(event_id="e1", esp="mailgun", event_type="opened", delivery=gone[0])

    pruned = prune_old_digests(today=TODAY, batch_size=2)

    assert (pruned.deliveries, pruned.calls, pruned.before) == (3, 1, TODAY - timedelta(days=90))
    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert set(SendCall.objects.values_list("pk", flat=True)) == {open_call.pk, edge_call.pk}
    assert not SendCall.objects.filter(pk=old_call.pk).exists()
    event.refresh_from_db()
    assert event.delivery is None  # the event is kept, without its row
    assert old.papers.count() == 1 and Feedback.objects.filter(subscriber=reader).count() == 1  # archive and votes stay
    assert reader.deliveries.count() == 2


def test_an_edition_past_the_retention_is_never_deleted_its_rows_gone_or_not(settings, admin_client, time_machine):
    """Its rows were what showed that its digests went out, and what stopped a second send: once
    they may have been pruned, a deleted edition would be built and emailed again."""
    from digest.services import delete_unsent_edition, edition_handed_to_esp

    time_machine.move_to(datetime(2026, 11, 18, 12, 0, tzinfo=UTC))  # TODAY
    settings.DELIVERY_RETENTION_DAYS = 90
    old = edition_of(91)
    digest(old)
    call_of(old)
    prune_old_digests(today=TODAY)
    assert not Delivery.objects.filter(edition=old).exists() and not SendCall.objects.filter(edition=old).exists()

    page = admin_client.get(reverse("admin:digest_edition_delete", args=[old.pk]))

    assert page.status_code == 403
    assert edition_handed_to_esp(old) and not delete_unsent_edition(old)
    assert old.__class__.objects.filter(pk=old.pk).exists()
    assert not edition_handed_to_esp(edition_of(89))  # within the retention, its rows still say


def test_every_digest_is_kept_while_the_retention_is_zero(settings):
    settings.DELIVERY_RETENTION_DAYS = 0
    digest(edition_of(3000))
    assert prune_old_digests(today=TODAY).before is None
    assert Delivery.objects.count() == 1


def test_a_retention_below_sixty_days_keeps_sixty_and_the_checks_say_so(settings):
    settings.DELIVERY_RETENTION_DAYS = 7
    kept, gone = digest(edition_of(59)), digest(edition_of(61))

    assert prune_old_digests(today=TODAY).deliveries == 1
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not Delivery.objects.filter(pk=gone.pk).exists()
    [warning] = delivery_retention_long_enough(None)
    assert warning.id == "digest.W006" and "kept 60 days" in warning.msg

    for days in (0, 60, 400):
        settings.DELIVERY_RETENTION_DAYS = days
        assert delivery_retention_long_enough(None) == []


def test_the_command_says_what_it_deleted_or_that_every_digest_is_kept(settings, time_machine):
    time_machine.move_to("2026-11-18 12:00Z", tick=False)
    settings.DELIVERY_RETENTION_DAYS = 0
    out = io.StringIO()
    call_command("prune_old_digests", stdout=out)
    assert out.getvalue() == "DELIVERY_RETENTION_DAYS is 0: every digest is kept\n"

    settings.DELIVERY_RETENTION_DAYS = 100
    digest(edition_of(101))
    call_of(edition_of(120))
    out = io.StringIO()
    call_command("prune_old_digests", stdout=out)
    assert out.getvalue() == "digests deleted: 1 deliveries and 1 ESP call of editions before 2026-08-10\n"
    assert not Delivery.objects.exists()


def test_a_row_that_is_no_longer_over_when_its_batch_is_deleted_is_kept(settings, monkeypatch):
    settings.DELIVERY_RETENTION_DAYS = 60
    old = edition_of(100)
    resent, gone = digest(old, "failed"), digest(old, "sent")
    event = WebhookEvent.objects.create(event_id="e2", esp="mailgun", event_type="opened", delivery=resent)
    delete_rows = retention.delete_rows

    def resend_meanwhile(rows, ids):
        Delivery.objects.filter(pk=resent.pk).update(status="pending")  # an operator's resend
        return delete_rows(rows, ids)

    monkeypatch.setattr(retention, "delete_rows", resend_meanwhile)
    assert prune_old_digests(today=TODAY).deliveries == 1
    assert list(Delivery.objects.values_list("pk", "status")) == [(resent.pk, "pending")]
    assert not Delivery.objects.filter(pk=gone.pk).exists()
    event.refresh_from_db()
    assert event.delivery_id == resent.pk


def test_the_prune_unlinks_every_model_that_points_at_a_delivery():
    pointing = {(f.related_model, f.field.name) for f in Delivery._meta.related_objects}
    assert pointing == {(WebhookEvent, "delivery")}  # a new one must be unlinked by delete_rows too


@pytest.mark.django_db(transaction=True)
def test_a_pruned_digests_events_are_unlinked_in_the_same_committed_transaction(settings):
    """Committed for real: the events' link to a deleted row is checked when each batch commits."""
    settings.DELIVERY_RETENTION_DAYS = 60
    gone = digest(edition_of(61))
    event = WebhookEvent.objects.create(event_id="e3", esp="mailgun", event_type="delivered", delivery=gone)

    assert prune_old_digests(today=TODAY).deliveries == 1
    event.refresh_from_db()
    assert event.delivery_id is None and not Delivery.objects.exists()


def test_an_old_emails_view_link_says_its_digest_is_no_longer_kept_and_its_other_links_still_work(
    settings, client, time_machine
):
    time_machine.move_to("2026-11-18 12:00Z", tick=False)
    settings.DELIVERY_RETENTION_DAYS = 60
    old = edition_of(61)
    reader = SubscriberFactory()
    digest(old, reader=reader)
    view = reverse("digest:view_in_browser", args=[tokens.make_token(reader, tokens.VIEW, e=old.pk)])
    assert client.get(view).status_code == 200

    prune_old_digests()

    page = client.get(view)
    html = page.content.decode()
    assert page.status_code == 404 and page["X-Robots-Tag"] == "noindex"
    assert "This digest is no longer kept" in html and "for 60 days" in html
    assert f'href="/digest/daily/{old.date.isoformat()}/"' in html
    paper = old.papers.get()
    vote = reverse("digest:vote", args=[tokens.make_token(reader, tokens.FEEDBACK, e=old.pk), paper.pk, "up"])
    assert client.get(vote).status_code == 200
    unsubscribe = reverse("subscriptions:unsubscribe", args=[tokens.make_token(reader, tokens.UNSUBSCRIBE)])
    assert client.post(unsubscribe).status_code in (200, 302)
    reader.refresh_from_db()
    assert reader.status == "unsubscribed"


def test_a_view_link_to_a_digest_never_sent_says_so_without_blaming_the_retention(settings, client):
    settings.DELIVERY_RETENTION_DAYS = 60
    edition = edition_of(0)
    reader = SubscriberFactory()
    page = client.get(reverse("digest:view_in_browser", args=[tokens.make_token(reader, tokens.VIEW, e=edition.pk)]))
    html = page.content.decode()
    assert page.status_code == 404
    assert "There is no digest behind this link" in html and "no longer kept" not in html
    assert f'href="/digest/daily/{edition.date.isoformat()}/"' in html
