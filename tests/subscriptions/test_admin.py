import csv
import re
import io
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from digest import pause
from digest.models import Delivery, Feedback
from subscriptions import admin, services
from subscriptions.models import Subscriber, Suppression
from tests.digest.builders import built_edition
from tests.factories import EditionFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:subscriptions_subscriber_changelist"
IMPORT = "admin:subscriptions_subscriber_import"


def run_action(admin_client, action, subscribers, **extra):
    return admin_client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [s.pk for s in subscribers], **extra},
        follow=True,
    )


def upload(text, name="subscribers.csv"):
    data = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, content_type="text/csv")


def test_the_list_shows_status_frequency_interests_dates_and_last_delivery(
    admin_client, subscriber
):
    Delivery.objects.create(
        subscriber=subscriber, edition=EditionFactory(), status="sent", sent_at=timezone.now()
    )
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    html = response.content.decode()
    for header in (
        "Email",
        "Status",
        "Frequency",
        "Interests",
        "Created at",
        "Confirmed at",
        "Last delivery",
    ):
        assert header in html, header
    assert "diffusion models" in html


def test_the_list_shows_each_readers_last_delivery_read_for_its_page_alone(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    earlier, later = timezone.now() - timedelta(days=3), timezone.now() - timedelta(days=1)
    readers = SubscriberFactory.create_batch(3)
    for when in (earlier, later):
        edition = EditionFactory(date=when.date())
        Delivery.objects.create(subscriber=readers[0], edition=edition, status="sent", sent_at=when)
    Delivery.objects.create(subscriber=readers[1], edition=edition, status="sent", sent_at=earlier)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(CHANGELIST))

    rows = {s.pk: s.last_delivery_at for s in response.context["cl"].result_list}
    assert rows == {readers[0].pk: later, readers[1].pk: earlier, readers[2].pk: None}
    ledger_reads = [q["sql"] for q in queries.captured_queries if '"digest_delivery"' in q["sql"]]
    assert len(ledger_reads) == 1 and '"digest_delivery"."subscriber_id" IN (' in ledger_reads[0]
    assert "JOIN" not in ledger_reads[0]


def test_the_list_reads_its_page_newest_first_through_the_sign_up_index(admin_client):
    from django.db import connection

    SubscriberFactory.create_batch(3)
    cl = admin_client.get(reverse(CHANGELIST)).context["cl"]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = cl.queryset[:100].explain()

    assert cl.queryset.query.order_by[0] == "-created_at"
    assert "subscriber_created_idx" in plan


def test_the_export_gives_each_reader_its_last_delivery(admin_client, subscriber):
    sent_at = timezone.now() - timedelta(hours=5)
    Delivery.objects.create(subscriber=subscriber, edition=EditionFactory(cadence="weekly"), status="sent",
                            sent_at=sent_at)
    Delivery.objects.create(subscriber=subscriber, edition=EditionFactory(), status="failed")
    other = SubscriberFactory()

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "export_csv", "_selected_action": [subscriber.pk, other.pk]}
    )

    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    assert rows[subscriber.email]["last_delivery_at"] == sent_at.isoformat()
    assert rows[other.email]["last_delivery_at"] == ""


def test_search_by_email_and_filter_by_status(admin_client):
    SubscriberFactory(email="findme@example.org")
    SubscriberFactory(email="other@example.org", status="pending", confirmed_at=None)
    html = admin_client.get(reverse(CHANGELIST), {"q": "findme"}).content.decode()
    assert "findme@example.org" in html and "other@example.org" not in html
    html = admin_client.get(reverse(CHANGELIST), {"status__exact": "pending"}).content.decode()
    assert "other@example.org" in html and "findme@example.org" not in html


def test_the_change_page_shows_deliveries_and_feedback_inline(admin_client, subscriber):
    paper = PaperFactory(title="Inline paper title")
    Delivery.objects.create(
        subscriber=subscriber, edition=EditionFactory(), paper_ids=[paper.pk], status="sent"
    )
    Feedback.objects.create(subscriber=subscriber, paper=paper, vote=1)
    response = admin_client.get(
        reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk])
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Deliveries" in html and "Feedback" in html
    assert "Inline paper title" in html
    assert subscriber.token_secret not in html


def test_the_change_page_shows_the_latest_deliveries_and_votes_and_links_to_all(admin_client, subscriber):
    other = SubscriberFactory()
    today = timezone.localdate()
    deliveries = [
        Delivery.objects.create(subscriber=subscriber, edition=EditionFactory(date=today - timedelta(days=n)),
                                status="sent")
        for n in range(35)
    ]
    Delivery.objects.create(subscriber=other, edition=EditionFactory(date=today - timedelta(days=40)))
    votes = [Feedback.objects.create(subscriber=subscriber, paper=PaperFactory(), vote=1) for _ in range(33)]

    response = admin_client.get(reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk]))

    assert response.status_code == 200
    shown = {
        formset.formset.model: [form.instance.pk for form in formset.formset.forms]
        for formset in response.context["inline_admin_formsets"]
    }
    assert shown[Delivery] == [d.pk for d in reversed(deliveries)][:admin.LATEST_SHOWN]
    assert shown[Feedback] == [v.pk for v in reversed(votes)][:admin.LATEST_SHOWN]
    html = response.content.decode()
    all_deliveries = f'{reverse("admin:digest_delivery_changelist")}?subscriber={subscriber.pk}'
    assert f'<a href="{all_deliveries}">35 deliveries</a>' in html
    all_votes = f'{reverse("admin:digest_feedback_changelist")}?subscriber={subscriber.pk}'
    assert f'<a href="{all_votes}">33 votes</a>' in html

    for url, rows in ((all_deliveries, deliveries), (all_votes, votes)):
        listed = admin_client.get(url)
        assert listed.status_code == 200
        assert sorted(row.pk for row in listed.context["cl"].result_list) == sorted(row.pk for row in rows)
        assert subscriber.email in listed.content.decode().split('id="changelist-filter"')[1]  # the filter names them


@pytest.mark.parametrize("value", ["1%20OR%201", "%C2%B2", "%D9%A3"])  # "1 OR 1", "²", an Arabic-Indic 3
def test_a_reader_filter_that_is_not_an_id_is_refused_not_an_error(admin_client, value):
    response = admin_client.get(reverse("admin:digest_delivery_changelist") + f"?subscriber={value}")
    assert response.status_code == 302 and "e=1" in response["Location"]


def test_the_add_page_links_to_no_history(admin_client):
    response = admin_client.get(reverse("admin:subscriptions_subscriber_add"))
    assert response.status_code == 200
    assert "?subscriber=" not in response.content.decode()


def test_operators_edit_preferences_but_not_the_status(admin_client, subscriber):
    url = reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk])
    response = admin_client.post(
        url,
        {
            "interests": "world models",
            "categories": ["cs.CV"],
            "frequency": "weekly",
            "max_papers": "5",
            "send_hour": "9",
            "timezone": "Europe/Paris",
            "status": "bounced",
            "deliveries-TOTAL_FORMS": "0",
            "deliveries-INITIAL_FORMS": "0",
            "feedback-TOTAL_FORMS": "0",
            "feedback-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    subscriber.refresh_from_db()
    assert (subscriber.interests, subscriber.frequency, subscriber.timezone) == (
        "world models",
        "weekly",
        "Europe/Paris",
    )
    assert subscriber.status == "active"


def test_action_resend_confirmation_only_mails_pending(admin_client, subscriber, pending):
    response = run_action(admin_client, "resend_confirmation", [subscriber, pending])
    assert [m.to for m in mail.outbox] == [["pending@example.org"]]
    assert "1 skipped" in response.content.decode()


def test_action_send_preview_digest_calls_the_digest_app(admin_client, subscriber, monkeypatch):
    import digest.services

    previewed = []
    monkeypatch.setattr(
        digest.services,
        "send_preview_digest",
        lambda s: previewed.append(s) or "sent",
        raising=False,
    )
    response = run_action(admin_client, "send_preview_digest", [subscriber])
    assert previewed == [subscriber]
    assert "Preview digest sent for 1" in response.content.decode()


def test_action_send_preview_digest_emails_only_active_readers_and_says_why_not(
    admin_client, subscriber, pending
):
    built_edition()
    paused = SubscriberFactory(email="paused@example.org", status="paused")
    suppressed = SubscriberFactory(email="gone@example.org", status="suppressed")
    response = run_action(
        admin_client, "send_preview_digest", [subscriber, pending, paused, suppressed]
    )
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]
    html = response.content.decode()
    assert "Preview digest sent for 1 subscriber(s)." in html
    assert "pending@example.org (pending: never confirmed)" in html
    assert "paused@example.org (paused" in html
    assert "gone@example.org (suppressed: never email again)" in html


def test_action_send_preview_digest_sends_nothing_when_the_digest_has_no_papers(
    admin_client, subscriber
):
    built_edition(papers=[])
    response = run_action(admin_client, "send_preview_digest", [subscriber])
    assert mail.outbox == []
    html = response.content.decode()
    assert "Preview digest sent for 0 subscriber(s)." in html
    assert "ada@example.org (no papers for them in the Daily edition" in html


def test_action_send_preview_digest_is_refused_while_digest_sending_is_paused(admin_client, subscriber):
    built_edition()
    pause.pause_sending("alice", "a broken edition")
    response = run_action(admin_client, "send_preview_digest", [subscriber])
    assert mail.outbox == []
    assert "No preview sent: digest sending paused since" in response.content.decode()


def test_action_suppress_and_reactivate(admin_client, subscriber, pending):
    run_action(admin_client, "suppress", [subscriber, pending])
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"suppressed"}
    assert Suppression.objects.count() == 2
    response = run_action(admin_client, "reactivate", [subscriber, pending])
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"
    assert Subscriber.objects.get(pk=pending.pk).status == "suppressed"
    assert "Never confirmed" in response.content.decode()


def test_action_revoke_links_emails_only_readers_we_may_email_and_counts_both(
    admin_client, subscriber, pending
):
    suppressed = SubscriberFactory(email="gone@example.org", status="suppressed")
    secrets = {s.pk: s.token_secret for s in (subscriber, pending, suppressed)}
    response = run_action(admin_client, "revoke_links", [subscriber, pending, suppressed])
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]
    rotated = Subscriber.objects.filter(pk__in=secrets).values_list("pk", "token_secret")
    assert all(secret != secrets[pk] for pk, secret in rotated)
    html = response.content.decode()
    assert "Links revoked for 3 subscriber(s); a new link emailed to 1." in html
    assert "Links only revoked for 2 subscriber(s)" in html
    assert "pending@example.org" in html and "gone@example.org" in html


def test_action_reactivate_counts_only_the_readers_it_moved(admin_client, subscriber, pending):
    suppressed = SubscriberFactory(email="gone@example.org")
    services.suppress(suppressed, reason="suppressed")
    response = run_action(admin_client, "reactivate", [subscriber, suppressed, pending])
    assert Subscriber.objects.get(pk=suppressed.pk).status == "active"
    html = response.content.decode()
    assert "Reactivated 1 subscriber(s). 1 already active, left as they were." in html
    assert "Never confirmed, so not reactivated (resend the confirmation instead): " \
        "pending@example.org" in html


def history_of(admin_client, subscriber):
    """The reader's "History" page in the admin, as HTML."""
    response = admin_client.get(
        reverse("admin:subscriptions_subscriber_history", args=[subscriber.pk])
    )
    assert response.status_code == 200
    return response.content.decode()


def logged_changes(subscriber):
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Subscriber),
            object_id=str(subscriber.pk),
            action_flag=CHANGE,
        ).values_list("user__username", "change_message")
    )


def test_suppressing_is_in_the_history_of_each_reader_it_changed(admin_client, subscriber):
    already = SubscriberFactory(email="gone@example.org", status="suppressed")

    run_action(admin_client, "suppress", [subscriber, already])

    assert logged_changes(subscriber) == [("admin", "Suppressed: never email again (was active).")]
    assert logged_changes(already) == []  # nothing changed for them
    html = history_of(admin_client, subscriber)
    assert "Suppressed: never email again (was active)." in html
    assert "admin" in html


def test_reactivating_is_in_the_history_of_each_reader_it_moved(admin_client, subscriber, pending):
    suppressed = SubscriberFactory(email="gone@example.org")
    services.suppress(suppressed, reason="suppressed")

    run_action(admin_client, "reactivate", [subscriber, suppressed, pending])

    assert logged_changes(suppressed) == [("admin", "Reactivated (was suppressed).")]
    assert logged_changes(subscriber) == [] and logged_changes(pending) == []  # active; refused
    assert "Reactivated (was suppressed)." in history_of(admin_client, suppressed)


def test_revoking_links_is_in_each_readers_history_with_whether_a_new_link_was_emailed(
    admin_client, subscriber, pending
):
    run_action(admin_client, "revoke_links", [subscriber, pending])

    assert logged_changes(subscriber) == [("admin", "Revoked email links: a new link was emailed.")]
    assert logged_changes(pending) == [
        ("admin", "Revoked email links: no new link emailed (may not be emailed).")
    ]
    assert "Revoked email links: a new link was emailed." in history_of(admin_client, subscriber)


def test_action_export_csv_is_spreadsheet_safe(admin_client, subscriber):
    subscriber.interests = '=HYPERLINK("http://evil.example"), RLHF'
    subscriber.save()
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "export_csv", "_selected_action": [subscriber.pk]}
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["email"] == "ada@example.org"
    assert rows[0]["status"] == "active"
    assert rows[0]["interests"].startswith("'=")


def test_import_creates_pending_with_confirmation_or_active_with_consent(admin_client):
    text = (
        "email,interests,categories,frequency,max_papers,confirmed_at,consent_note\n"
        "new@example.org,RLHF,cs.CL cs.LG,weekly,5,,\n"
        "old@example.org,diffusion,,daily,10,2024-03-01,2024 newsletter form\n"
    )
    response = admin_client.post(reverse(IMPORT), {"file": upload(text)}, follow=True)
    assert "Imported 1 pending" in response.content.decode()
    new = Subscriber.objects.get(email="new@example.org")
    assert (new.status, new.frequency, new.categories) == ("pending", "weekly", ["cs.CL", "cs.LG"])
    old = Subscriber.objects.get(email="old@example.org")
    assert (old.status, old.confirmed_at.date().isoformat()) == ("active", "2024-03-01")
    assert old.consent_note == "2024 newsletter form"
    assert [m.to for m in mail.outbox] == [["new@example.org"]]


def test_import_skips_existing_deleted_and_invalid_rows_and_says_so(admin_client, subscriber):
    services.delete_subscriber(SubscriberFactory(email="deleted@example.org"))
    future = (timezone.now() + timedelta(days=3)).date().isoformat()
    text = (
        "email,timezone,confirmed_at\n"
        "ADA@example.org,,\n"
        "deleted@example.org,,2020-01-01\n"
        "broken\nBcc,,\n"
        "tz@example.org,Mars/Base,\n"
        f"future@example.org,,{future}\n"
        "fine@example.org,Asia/Tokyo,\n"
    )
    response = admin_client.post(reverse(IMPORT), {"file": upload(text)}, follow=True)
    html = response.content.decode()
    assert "skipped 1 existing and 1 suppressed" in html
    assert "not imported" in html
    assert set(Subscriber.objects.values_list("email", flat=True)) == {
        "ada@example.org",
        "fine@example.org",
    }


def round_tripped(admin_client, subscriber):
    """The reader exported, then gone from this instance with their hashed suppression (another
    instance, or the suppression lost: only the file speaks), then the file imported."""
    export = admin_client.post(
        reverse(CHANGELIST), {"action": "export_csv", "_selected_action": [subscriber.pk]}
    )
    text = b"".join(export.streaming_content).decode()
    services.delete_subscriber(subscriber)
    Suppression.objects.all().delete()
    return admin_client.post(reverse(IMPORT), {"file": upload(text)}, follow=True)


def test_import_of_a_round_tripped_export_recognises_consent(admin_client, subscriber):
    round_tripped(admin_client, subscriber)
    assert Subscriber.objects.get().status == "active"


@pytest.mark.parametrize("left", ["unsubscribe", "bounced", "complained", "suppressed"])
def test_a_round_tripped_export_does_not_bring_back_a_reader_who_left(admin_client, subscriber, left):
    if left == "unsubscribe":
        services.unsubscribe(subscriber, via="page")
    else:
        services.suppress(subscriber, reason=left)

    response = round_tripped(admin_client, subscriber)

    assert not Subscriber.objects.exists()
    assert "may not be emailed, so not imported" in response.content.decode()


def test_a_round_tripped_export_brings_a_paused_reader_back_paused(admin_client, subscriber):
    services.pause(subscriber)
    confirmed_at = subscriber.confirmed_at

    response = round_tripped(admin_client, subscriber)

    imported = Subscriber.objects.get()
    assert (imported.status, imported.confirmed_at) == ("paused", confirmed_at)
    assert mail.outbox == []
    assert "0 active and 1 paused with earlier consent" in response.content.decode()


def test_import_refuses_a_file_that_is_not_utf8(admin_client):
    response = admin_client.post(reverse(IMPORT), {"file": upload(b"email\n\xff\xfe@x.org\n")})
    assert response.status_code == 200
    assert "not UTF-8" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_import_needs_an_email_column(admin_client):
    response = admin_client.post(reverse(IMPORT), {"file": upload("mail,name\na@example.org,A\n")})
    assert "email" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_the_import_page_is_for_staff_only(client):
    response = client.get(reverse(IMPORT))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_adding_a_subscriber_by_hand_starts_pending_and_sends_a_confirmation(admin_client):
    response = admin_client.post(
        reverse("admin:subscriptions_subscriber_add"),
        {
            "email": "Hand@EXAMPLE.org",
            "interests": "",
            "frequency": "daily",
            "max_papers": "10",
            "send_hour": "7",
            "timezone": "UTC",
            "deliveries-TOTAL_FORMS": "0",
            "deliveries-INITIAL_FORMS": "0",
            "feedback-TOTAL_FORMS": "0",
            "feedback-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    subscriber = Subscriber.objects.get()
    assert (subscriber.email, subscriber.status) == ("Hand@example.org", "pending")
    assert mail.outbox[0].to == ["Hand@example.org"]


def test_suppressions_are_searchable_by_address(admin_client):
    services.suppress_email("hidden@example.org", "complained")
    html = admin_client.get(
        reverse("admin:subscriptions_suppression_changelist"), {"q": "Hidden@Example.org"}
    ).content.decode()
    assert "complained" in html


def test_deleting_a_subscriber_in_the_admin_keeps_a_hashed_suppression_as_their_own_delete_does(
    admin_client,
):
    one, two, three = SubscriberFactory.create_batch(3)
    admin_client.post(reverse("admin:subscriptions_subscriber_delete", args=[one.pk]), {"post": "yes"})
    run_action(admin_client, "delete_selected", [two, three], post="yes")
    assert not Subscriber.objects.filter(pk__in=[one.pk, two.pk, three.pk]).exists()
    for gone in (one, two, three):
        assert Suppression.objects.get(email_hash=services.email_hash(gone.email)).reason == "deleted"


def test_a_deleted_readers_admin_history_stays_but_no_longer_names_their_address(admin_client):
    one, two, three = SubscriberFactory.create_batch(3)
    ids = [one.pk, two.pk, three.pk]
    run_action(admin_client, "suppress", [one, two, three])
    admin_client.post(reverse("admin:subscriptions_subscriber_delete", args=[one.pk]), {"post": "yes"})
    run_action(admin_client, "delete_selected", [two], post="yes")
    services.delete_subscriber(three)  # the reader's own "delete everything"

    for pk in ids:
        entries = LogEntry.objects.filter(object_id=str(pk), content_type__model="subscriber")
        assert entries.filter(change_message__startswith="Suppressed").exists()
        assert {e.object_repr for e in entries} == {f"deleted subscriber {pk}"}
    assert LogEntry.objects.filter(object_id__in=[str(one.pk), str(two.pk)], action_flag=DELETION).count() == 2
    assert not LogEntry.objects.filter(object_repr__contains="@").exists()


# --- Moving a reader to a new address ---------------------------------------------


def new_address_page(subscriber):
    return reverse("admin:subscriptions_subscriber_new_address", args=[subscriber.pk])


def test_an_operator_emails_a_new_address_the_link_that_moves_the_reader(admin_client, client, subscriber):
    change_page = admin_client.get(reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk]))
    assert new_address_page(subscriber) in change_page.content.decode()

    response = admin_client.post(new_address_page(subscriber), {"email": "ada@new.example"}, follow=True)

    assert "was emailed there; nothing changes until it is followed" in response.content.decode()
    [message] = mail.outbox
    assert message.to == ["ada@new.example"]
    subscriber.refresh_from_db()
    assert (subscriber.email, subscriber.new_email) == ("ada@example.org", "ada@new.example")
    entry = LogEntry.objects.get(object_id=str(subscriber.pk))
    assert entry.action_flag == CHANGE and "new address" in entry.get_change_message()
    client.post(re.search(r"https?://[^/\s]+(/new-address/[^/\s]+/)", message.body).group(1))
    assert Subscriber.objects.get(pk=subscriber.pk).email == "ada@new.example"


@pytest.mark.parametrize(
    "email, refusal",
    [
        ("taken@example.org", "Another subscriber has this address"),
        ("bounced@example.org", "on the suppression list"),
        ("ADA@example.org", "already this subscriber’s address"),
    ],
)
def test_the_operator_is_told_why_no_link_goes_out(admin_client, subscriber, email, refusal):
    SubscriberFactory(email="taken@example.org")
    services.suppress_email("bounced@example.org", "bounced")
    response = admin_client.post(new_address_page(subscriber), {"email": email})
    assert response.status_code == 200 and refusal in response.content.decode()
    assert mail.outbox == [] and Subscriber.objects.get(pk=subscriber.pk).new_email == ""


def test_a_reader_who_never_confirmed_cannot_be_moved_by_an_operator(admin_client, pending):
    response = admin_client.post(new_address_page(pending), {"email": "elsewhere@example.org"})
    assert "Only a subscriber who confirmed once" in response.content.decode()
    assert mail.outbox == []


def test_the_new_address_page_shows_a_link_still_waiting(admin_client, subscriber):
    services.request_address_change(subscriber, "ada@new.example")
    html = admin_client.get(new_address_page(subscriber)).content.decode()
    assert "Already waiting for a link to be followed: <strong>ada@new.example</strong>" in html


def test_the_new_address_page_is_for_staff_only(client, subscriber):
    response = client.post(new_address_page(subscriber), {"email": "eve@example.org"})
    assert response.status_code == 302 and "/login/" in response.url
    assert mail.outbox == [] and Subscriber.objects.get(pk=subscriber.pk).new_email == ""
