"""Operators: editions with scores, the ledger, previews, guarded resends and the blocklist."""

import re
from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.sites import site
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from digest import pause
from digest.models import BlockedPaper, Delivery, EditionPaper, Feedback, SendingPause, SwitchTurn, WebhookEvent
from digest.sending import send_edition_to
from digest.services import block_paper
from tests.digest.builders import built_edition
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def test_an_edition_shows_its_ranked_papers_and_scores(admin_client):
    edition = built_edition()
    html = admin_client.get(f"/admin/digest/edition/{edition.pk}/change/").content.decode()
    top = edition.entries.order_by("rank").first()
    assert top.paper.title in html and f"{top.trending_score:.4f}" in html and top.trending_reason in html


def test_deliveries_filter_by_status_and_edition(admin_client, mailoutbox):
    edition = built_edition()
    sent, skipped = SubscriberFactory(interests=""), SubscriberFactory(interests="medieval poetry manuscripts")
    send_edition_to(edition, [sent.pk, skipped.pk])
    html = admin_client.get(f"/admin/digest/delivery/?status__exact=skipped&edition__id__exact={edition.pk}").content.decode()
    assert skipped.email in html and sent.email not in html


def test_deliveries_in_sending_are_listed_through_their_partial_index(admin_client):
    edition = built_edition()
    stuck, done = SubscriberFactory(), SubscriberFactory()
    Delivery.objects.create(subscriber=stuck, edition=edition, status="sending")
    Delivery.objects.create(subscriber=done, edition=edition, status="sent")

    html = admin_client.get("/admin/digest/delivery/?status__exact=sending").content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = Delivery.objects.with_status("sending").explain()

    assert stuck.email in html and done.email not in html
    assert "delivery_stale_send_idx" in plan


def test_failed_deliveries_are_listed_newest_first_through_their_partial_index(admin_client):
    edition = built_edition()
    older, newer, sent = SubscriberFactory(), SubscriberFactory(), SubscriberFactory()
    Delivery.objects.create(subscriber=older, edition=edition, status="failed", reason="refused")
    Delivery.objects.create(subscriber=newer, edition=edition, status="failed", reason="refused")
    Delivery.objects.create(subscriber=sent, edition=edition, status="sent")

    response = admin_client.get("/admin/digest/delivery/?status__exact=failed")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = Delivery.objects.with_status("failed").order_by("-pk")[:100].explain()

    assert [d.subscriber for d in response.context["cl"].result_list] == [newer, older]
    assert "delivery_failed_idx" in plan


def ledger_of(edition, count):
    """``count`` deliveries, claimed out of time order (the list orders them by id)."""
    from datetime import timedelta

    from django.utils import timezone

    return [
        Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="sent",
                                created_at=timezone.now() - timedelta(hours=(3 * n) % 5))
        for n in range(count)
    ]


def test_the_ledger_is_listed_newest_first_by_id_and_counted_from_the_estimate(admin_client, monkeypatch):
    from digest import admin as digest_admin

    rows = ledger_of(built_edition(), 4)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE digest_delivery")
    monkeypatch.setattr(digest_admin, "ESTIMATED_COUNT_FROM", 1)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/digest/delivery/")

    cl = response.context["cl"]
    assert [d.pk for d in cl.result_list] == sorted((d.pk for d in rows), reverse=True)
    assert cl.result_count == digest_admin.estimated_rows(Delivery) == 4
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"] and "digest_delivery" in q["sql"]]


def test_a_filtered_or_small_ledger_is_counted_exactly(admin_client, monkeypatch):
    from digest import admin as digest_admin

    edition = built_edition()
    ledger_of(edition, 3)
    Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="failed")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE digest_delivery")
    monkeypatch.setattr(digest_admin, "ESTIMATED_COUNT_FROM", 1)
    Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="failed")  # not in the estimate

    failed = admin_client.get("/admin/digest/delivery/?status__exact=failed").context["cl"]
    monkeypatch.setattr(digest_admin, "ESTIMATED_COUNT_FROM", 1000)
    small = admin_client.get("/admin/digest/delivery/").context["cl"]

    assert failed.result_count == 2 and small.result_count == 5


def test_the_ledger_is_searched_by_exact_address_or_message_id_through_their_indexes(admin_client):
    edition = built_edition()
    ada, bob = SubscriberFactory(email="ada@example.org"), SubscriberFactory(email="bob@example.org")
    by_ada = Delivery.objects.create(subscriber=ada, edition=edition, status="sent")
    by_bob = Delivery.objects.create(subscriber=bob, edition=edition, status="sent",
                                     esp_message_id="<20261204.abc@mg.example.org>")

    def found(term):
        return {d.pk for d in admin_client.get("/admin/digest/delivery/", {"q": term}).context["cl"].result_list}

    assert found("ADA@example.org") == {by_ada.pk}
    assert found("20261204.abc@mg.example.org") == found("<20261204.abc@mg.example.org>") == {by_bob.pk}
    assert found("example.org") == found("<>") == set()
    searched, _ = site._registry[Delivery].get_search_results(None, Delivery.objects.all(), "bob@example.org")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = searched.explain()
    assert "delivery_esp_message_idx" in plan and "digest_delivery_subscriber_id" in plan
    assert "Seq Scan" not in plan


def test_the_preview_renders_the_real_email_html_and_sends_nothing(admin_client, mailoutbox):
    built_edition()
    subscriber = SubscriberFactory(interests="graph neural networks")
    response = admin_client.get(f"/admin/digest/delivery/preview/{subscriber.pk}/")
    html = response.content.decode()
    assert response.status_code == 200 and html.startswith("<!DOCTYPE html>")
    assert "Graph neural networks for molecules" in html and "matches your interests" in html
    assert 'style="' in html  # the inlined email, not a web page
    assert mailoutbox == [] and not Delivery.objects.exists()


def test_the_preview_is_for_staff_only(client):
    subscriber = SubscriberFactory()
    response = client.get(f"/admin/digest/delivery/preview/{subscriber.pk}/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_resend_sends_a_failed_delivery_but_never_a_sent_one(admin_client, mailoutbox):
    edition = built_edition()
    failed_reader, sent_reader = SubscriberFactory(interests=""), SubscriberFactory(interests="")
    send_edition_to(edition, [sent_reader.pk])
    Delivery.objects.create(subscriber=failed_reader, edition=edition, status="failed", reason="ESP said no")
    mailoutbox.clear()

    response = admin_client.post("/admin/digest/delivery/", {
        "action": "resend_failed", "_selected_action": list(Delivery.objects.values_list("pk", flat=True)),
    }, follow=True)

    assert response.status_code == 200
    assert [m.to[0] for m in mailoutbox] == [failed_reader.email]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert "1 left alone" in response.content.decode()


def test_a_failed_delivery_the_esp_reported_delivered_is_not_resent(admin_client, mailoutbox):
    edition = built_edition()
    delivery = Delivery.objects.create(subscriber=SubscriberFactory(interests=""), edition=edition, status="failed")
    Delivery.objects.filter(pk=delivery.pk).update(delivered_at=delivery.created_at)
    admin_client.post("/admin/digest/delivery/", {"action": "resend_failed", "_selected_action": [delivery.pk]})
    assert mailoutbox == [] and Delivery.objects.get().status == "failed"


def test_blocking_a_paper_pulls_it_from_every_digest_not_yet_sent(admin_client, mailoutbox):
    edition = built_edition()
    top = edition.entries.order_by("rank").first().paper
    reader = SubscriberFactory(interests="", max_papers=20)

    response = admin_client.post("/admin/digest/blockedpaper/add/", {"paper": top.pk, "reason": "retracted"})
    send_edition_to(edition, [reader.pk])

    assert response.status_code == 302
    assert BlockedPaper.objects.get().paper == top
    assert EditionPaper.objects.get(edition=edition, paper=top).pulled
    assert top.pk not in Delivery.objects.get().paper_ids
    assert top.title not in mailoutbox[0].body


def test_deleting_a_blocklist_entry_puts_the_paper_back_in_the_editions_the_block_pulled(admin_client, mailoutbox):
    edition = built_edition()
    first, second = (e.paper for e in edition.entries.order_by("rank")[:2])
    EditionPaper.objects.filter(edition=edition, paper=second).update(pulled=True)  # by hand, before
    blocks = [block_paper(first, "looked retracted"), block_paper(second, "looked retracted")]
    reader = SubscriberFactory(interests="", max_papers=20)

    response = admin_client.post(f"/admin/digest/blockedpaper/{blocks[0].pk}/delete/", {"post": "yes"})
    send_edition_to(edition, [reader.pk])
    bulk = admin_client.post("/admin/digest/blockedpaper/", {
        "action": "delete_selected", "_selected_action": [blocks[1].pk], "post": "yes",
    })

    assert response.status_code == bulk.status_code == 302
    assert not BlockedPaper.objects.exists()
    assert not EditionPaper.objects.get(edition=edition, paper=first).pulled
    assert EditionPaper.objects.get(edition=edition, paper=second).pulled
    assert first.pk in Delivery.objects.get().paper_ids and first.title in mailoutbox[0].body


def test_webhook_events_are_listed_read_only(admin_client):
    assert admin_client.get("/admin/digest/webhookevent/").status_code == 200
    assert admin_client.get("/admin/digest/webhookevent/add/").status_code == 403


def test_the_webhook_event_list_shows_the_clicked_paper_in_as_many_queries_for_many_events(admin_client):
    edition = built_edition()
    paper = PaperFactory(title="A paper somebody clicked")

    def clicks(count):
        for _ in range(count):
            delivery = Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition, status="sent")
            WebhookEvent.objects.create(event_id=f"e{WebhookEvent.objects.count()}", esp="mailgun",
                                        event_type="clicked", delivery=delivery, clicked_paper=paper)
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get("/admin/digest/webhookevent/").content.decode()
        return page, len(queries)

    page, one = clicks(1)
    assert "A paper somebody clicked" in page
    assert clicks(5)[1] == one


def test_a_readers_delete_confirmation_names_their_votes_without_a_query_each(admin_client):
    reader, paper = SubscriberFactory(), PaperFactory()
    vote = Feedback.objects.create(subscriber=reader, paper=paper, vote=Feedback.Vote.LIKE)

    with CaptureQueriesContext(connection) as queries:
        label = str(Feedback.objects.get(pk=vote.pk))
    queries_for_one = len(queries)
    html = admin_client.get(f"/admin/subscriptions/subscriber/{reader.pk}/delete/").content.decode()

    assert label == f"👍 on paper {paper.pk} by subscriber {reader.pk}"
    assert queries_for_one == 1
    assert label in html and "Feedback object" not in html


def test_an_editions_delete_confirmation_names_its_ranked_papers_without_a_query_each(admin_client):
    edition = built_edition()
    top = edition.entries.get(rank=1)

    with CaptureQueriesContext(connection) as queries:
        label = str(EditionPaper.objects.get(pk=top.pk))
    queries_for_one = len(queries)
    html = admin_client.get(f"/admin/digest/edition/{edition.pk}/delete/").content.decode()

    assert label == f"#1 of edition {edition.pk}: paper {top.paper_id}"
    assert queries_for_one == 1
    assert label in html and "EditionPaper object" not in html


def edition_of(count):
    """An edition of ``count`` papers, ranked as built (each one a day before the last one made)."""
    from datetime import timedelta

    from django.utils import timezone

    from digest.models import Edition
    from papers.models import Paper
    from tests.factories import EditionFactory

    edition = EditionFactory(date=timezone.localdate() - timedelta(days=Edition.objects.count()))
    papers = Paper.objects.bulk_create(PaperFactory.build_batch(count))
    EditionPaper.objects.bulk_create([
        EditionPaper(edition=edition, paper=paper, rank=rank, trending_score=1 / rank, trending_reason="new today")
        for rank, paper in enumerate(papers, start=1)
    ])
    return edition


def change_page_of(admin_client, edition):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(f"/admin/digest/edition/{edition.pk}/change/")
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_an_editions_page_takes_as_many_queries_for_thirty_papers_as_for_three(admin_client):
    few, few_queries = change_page_of(admin_client, edition_of(3))
    many, many_queries = change_page_of(admin_client, edition_of(30))
    assert many.count('type="checkbox" name="entries-') == 30
    assert many_queries == few_queries


def test_an_editions_page_is_a_compact_row_per_paper_linking_to_the_paper(admin_client):
    few, _ = change_page_of(admin_client, edition_of(3))
    edition = edition_of(30)
    many, _ = change_page_of(admin_client, edition)

    per_row = (len(many.encode()) - len(few.encode())) / 27
    top = edition.entries.select_related("paper").get(rank=1)
    assert per_row < 500  # the stock tabular inline: about 1,500 bytes
    assert f'<a href="/admin/papers/paper/{top.paper_id}/change/">{top.paper.title}</a>' in many
    assert "<select" not in many and "entries-0-edition" not in many


def page_inputs(html):
    import re

    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def test_a_paper_is_pulled_from_and_put_back_in_a_full_size_edition(admin_client):
    from digest.editions import EDITION_SIZE_LIMIT

    edition = edition_of(EDITION_SIZE_LIMIT)
    url = f"/admin/digest/edition/{edition.pk}/change/"
    page, _ = change_page_of(admin_client, edition)
    entries = page_inputs(page)
    pulled_rank = 7

    pulled = admin_client.post(url, {**entries, f"entries-{pulled_rank - 1}-pulled": "on"})
    after_pull = set(edition.entries.filter(pulled=True).values_list("rank", flat=True))
    put_back = admin_client.post(url, page_inputs(change_page_of(admin_client, edition)[0]))

    assert pulled.status_code == put_back.status_code == 302
    assert after_pull == {pulled_rank}
    assert not edition.entries.filter(pulled=True).exists()


def test_saving_an_editions_page_takes_as_many_queries_for_thirty_papers_as_for_three(admin_client):
    def queries_to_pull_one(count):
        edition = edition_of(count)
        page, _ = change_page_of(admin_client, edition)
        with CaptureQueriesContext(connection) as queries:
            saved = admin_client.post(f"/admin/digest/edition/{edition.pk}/change/",
                                      {**page_inputs(page), "entries-1-pulled": "on"})
        assert saved.status_code == 302
        assert list(edition.entries.filter(pulled=True).values_list("rank", flat=True)) == [2]
        return len(queries)

    assert queries_to_pull_one(30) == queries_to_pull_one(3)


def test_an_entry_gone_from_the_edition_since_the_page_was_shown_is_reported_not_saved(admin_client):
    edition = edition_of(3)
    page, _ = change_page_of(admin_client, edition)
    edition.entries.get(rank=2).delete()

    response = admin_client.post(f"/admin/digest/edition/{edition.pk}/change/",
                                 {**page_inputs(page), "entries-0-pulled": "on"})

    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not edition.entries.filter(pulled=True).exists()


def test_staff_who_may_only_view_editions_see_whether_papers_are_pulled_without_a_checkbox(client):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    edition = edition_of(2)
    edition.entries.filter(rank=2).update(pulled=True)
    viewer = get_user_model().objects.create_user("viewer", "viewer@example.org", "pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_edition", "view_editionpaper"]))
    client.force_login(viewer)

    page = client.get(f"/admin/digest/edition/{edition.pk}/change/").content.decode()

    assert 'type="checkbox"' not in page and "Tick “pulled”" not in page
    assert page.count("<td>no</td>") == 1 and page.count("<td>yes</td>") == 1


def test_the_edition_list_counts_each_editions_papers_without_a_query_each(admin_client):
    def list_page():
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get("/admin/digest/edition/")
        assert response.status_code == 200
        return response.content.decode(), len(queries)

    edition_of(3)
    _, queries_for_one = list_page()
    for size in (1, 2, 5):
        edition_of(size)
    html, queries_for_four = list_page()
    assert queries_for_four == queries_for_one
    cells = [cell.split("<")[0] for cell in html.split('class="field-paper_count">')[1:]]
    assert sorted(cells) == ["1", "2", "3", "5"]


def test_a_readers_delete_confirmation_lists_their_deliveries_without_a_query_each(admin_client):
    reader = SubscriberFactory()

    def confirmation_queries():
        with CaptureQueriesContext(connection) as queries:
            html = admin_client.get(f"/admin/subscriptions/subscriber/{reader.pk}/delete/").content.decode()
        return html, len(queries)

    Delivery.objects.create(subscriber=reader, edition=edition_of(1), status=Delivery.Status.SENT)
    _, with_one = confirmation_queries()
    for _ in range(4):
        Delivery.objects.create(subscriber=reader, edition=edition_of(1), status=Delivery.Status.SENT)
    html, with_five = confirmation_queries()
    assert with_five == with_one
    assert html.count(f"→ subscriber {reader.pk} (sent)") == 5
    named = Delivery.objects.select_related("edition").filter(subscriber=reader).first()
    assert str(named).startswith(str(named.edition))


def test_editions_are_built_by_the_daily_job_not_added_by_hand(admin_client):
    built_edition()

    listed = admin_client.get("/admin/digest/edition/").content.decode()

    assert admin_client.get("/admin/digest/edition/add/").status_code == 403
    assert admin_client.post("/admin/digest/edition/add/", {}).status_code == 403
    assert "/admin/digest/edition/add/" not in listed


def test_a_delivery_cannot_be_deleted_so_its_reader_never_gets_the_edition_twice(admin_client, mailoutbox):
    edition = built_edition()
    reader = SubscriberFactory(interests="")
    send_edition_to(edition, [reader.pk])
    delivery = Delivery.objects.get()

    page = admin_client.get(f"/admin/digest/delivery/{delivery.pk}/change/").content.decode()
    listed = admin_client.get("/admin/digest/delivery/").content.decode()
    confirm = admin_client.post(f"/admin/digest/delivery/{delivery.pk}/delete/", {"post": "yes"})
    bulk = admin_client.post("/admin/digest/delivery/", {
        "action": "delete_selected", "_selected_action": [delivery.pk], "post": "yes",
    })
    send_edition_to(edition, [reader.pk])

    assert confirm.status_code == 403 and bulk.status_code in (200, 302)
    assert "deletelink" not in page and 'value="delete_selected"' not in listed
    assert 'name="_save"' not in page and 'name="_continue"' not in page  # every field is read only
    assert Delivery.objects.filter(pk=delivery.pk).exists()
    assert len(mailoutbox) == 1


def test_deleting_a_reader_still_deletes_their_deliveries(admin_client):
    edition = built_edition()
    reader = SubscriberFactory(interests="")
    send_edition_to(edition, [reader.pk])

    response = admin_client.post(f"/admin/subscriptions/subscriber/{reader.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Delivery.objects.exists()


def test_an_edition_whose_digests_went_out_cannot_be_deleted_so_nobody_gets_it_twice(admin_client, mailoutbox):
    from digest.models import Edition

    edition = built_edition()
    reader = SubscriberFactory(interests="")
    send_edition_to(edition, [reader.pk])
    url = f"/admin/digest/edition/{edition.pk}/"

    page = admin_client.get(f"{url}change/").content.decode()
    confirmation = admin_client.get(f"{url}delete/")
    confirmed = admin_client.post(f"{url}delete/", {"post": "yes"})
    bulk = admin_client.post("/admin/digest/edition/", {
        "action": "delete_selected", "_selected_action": [edition.pk], "post": "yes",
    }, follow=True)
    send_edition_to(Edition.objects.get(pk=edition.pk), [reader.pk])

    assert "deletelink" not in page
    assert confirmation.status_code == confirmed.status_code == 403
    assert bulk.status_code == 200 and f"Not deleted: {edition}. Its digests went out" in bulk.content.decode()
    assert Edition.objects.filter(pk=edition.pk).exists() and Delivery.objects.filter(edition=edition).exists()
    assert len(mailoutbox) == 1


def test_an_edition_claimed_by_an_esp_call_cannot_be_deleted_while_its_deliveries_are_pending(admin_client):
    from digest.models import Edition, SendCall

    edition = built_edition()
    delivery = Delivery.objects.create(subscriber=SubscriberFactory(), edition=edition)
    SendCall.objects.create(edition=edition, token="call", first_delivery_id=delivery.pk,
                            last_delivery_id=delivery.pk, delivery_ids=[delivery.pk])

    confirmed = admin_client.post(f"/admin/digest/edition/{edition.pk}/delete/", {"post": "yes"})

    assert confirmed.status_code == 403
    assert Edition.objects.filter(pk=edition.pk).exists() and SendCall.objects.exists()


def test_an_esp_call_cannot_be_deleted_so_its_readers_are_never_claimed_again(admin_client, mailoutbox):
    from digest.models import SendCall

    edition = built_edition()
    reader = SubscriberFactory(interests="")
    delivery = Delivery.objects.create(subscriber=reader, edition=edition)  # in the call below
    call = SendCall.objects.create(edition=edition, token="call", first_delivery_id=delivery.pk,
                                   last_delivery_id=delivery.pk, delivery_ids=[delivery.pk])

    listed = admin_client.get("/admin/digest/sendcall/").content.decode()
    page = admin_client.get(f"/admin/digest/sendcall/{call.pk}/change/").content.decode()
    confirmed = admin_client.post(f"/admin/digest/sendcall/{call.pk}/delete/", {"post": "yes"})
    admin_client.post("/admin/digest/sendcall/", {
        "action": "delete_selected", "_selected_action": [call.pk], "post": "yes",
    })
    send_edition_to(edition, [reader.pk])

    assert confirmed.status_code == 403
    assert "deletelink" not in page and 'value="delete_selected"' not in listed
    assert SendCall.objects.filter(pk=call.pk).exists()
    assert mailoutbox == []  # the reader's digest is the call's: not sent again


def test_editions_nobody_was_sent_yet_can_still_be_deleted_alone_or_in_bulk_but_not_sent_ones(admin_client):
    from digest.models import Edition
    from digest.sending import claim_deliveries

    sent, claimed, built = built_edition("daily"), built_edition("weekly", papers=[]), edition_of(2)
    send_edition_to(sent, [SubscriberFactory(interests="").pk])
    claim_deliveries(claimed, [SubscriberFactory().pk])  # claimed, never handed to the ESP

    page = admin_client.get(f"/admin/digest/edition/{built.pk}/change/").content.decode()
    alone = admin_client.post(f"/admin/digest/edition/{built.pk}/delete/", {"post": "yes"})
    selected = {"action": "delete_selected", "_selected_action": [sent.pk, claimed.pk]}
    confirmation = admin_client.post("/admin/digest/edition/", selected).content.decode()
    bulk = admin_client.post("/admin/digest/edition/", {**selected, "post": "yes"}, follow=True)

    assert "deletelink" in page and alone.status_code == 302
    assert f"Not deleted: {sent}." in confirmation and f'name="_selected_action" value="{sent.pk}"' not in confirmation
    assert f'name="_selected_action" value="{claimed.pk}"' in confirmation
    assert "Successfully deleted 1 edition" in bulk.content.decode()
    assert list(Edition.objects.all()) == [sent]
    assert Delivery.objects.get().edition == sent


def test_the_reader_of_an_edition_that_cannot_be_deleted_can_still_be_deleted(admin_client):
    from digest.models import Edition

    edition = built_edition()
    reader, other = SubscriberFactory(interests=""), SubscriberFactory(interests="")
    send_edition_to(edition, [reader.pk, other.pk])

    confirmation = admin_client.get(f"/admin/subscriptions/subscriber/{reader.pk}/delete/").content.decode()
    response = admin_client.post(f"/admin/subscriptions/subscriber/{reader.pk}/delete/", {"post": "yes"})

    assert "permission to delete" not in confirmation
    assert response.status_code == 302
    assert list(Delivery.objects.values_list("subscriber", flat=True)) == [other.pk]
    assert Edition.objects.filter(pk=edition.pk).exists()


# --- The sending switch ---------------------------------------------------------------

SWITCH = "/admin/digest/sendingpause/"


def switch_history():
    return list(LogEntry.objects.filter(content_type__model="sendingpause").order_by("pk")
                .values_list("user__username", "action_flag", "change_message"))


def test_pausing_and_resuming_from_the_switch_page_records_who_did_it_in_its_history(admin_client):
    before = admin_client.get(SWITCH).content.decode()
    paused = admin_client.post(SWITCH, {"pause": "1", "reason": "the edition links 404"}, follow=True)
    paused_page = paused.content.decode()
    switch = SendingPause.objects.get()
    resumed = admin_client.post(SWITCH, {"resume": "1"}, follow=True).content.decode()
    history = admin_client.get(f"{SWITCH}{switch.pk}/history/").content.decode()

    assert "Digest sending is on." in before and "Pause all digest sending" in before
    assert (switch.paused, switch.paused_by, switch.reason) == (True, "admin", "the edition links 404")
    assert "Sending paused since" in paused_page and "by admin (the edition links 404)" in paused_page
    assert "Resume digest sending" in paused_page
    assert "Digest sending resumed" in resumed and not pause.sending_paused()
    assert switch_history() == [
        ("admin", CHANGE, "Paused all digest sending: the edition links 404"),
        ("admin", CHANGE, "Resumed digest sending."),
    ]
    assert "Paused all digest sending: the edition links 404" in history and "Resumed digest sending." in history


def test_the_switch_page_lists_its_last_turns_from_the_admin_and_the_command_line(admin_client):
    never = admin_client.get(SWITCH).content.decode()
    call_command("sending", "pause", "--reason", "the ESP is <down>", "--by", "alice", stdout=StringIO())
    admin_client.post(SWITCH, {"resume": "1"})

    page = admin_client.get(SWITCH).content.decode()
    rows = re.findall(r"<tr><td>[^<]*</td><td>(\w+)</td><td>(\w+)</td><td>([^<]+)</td><td>([^<]*)</td></tr>", page)

    assert "The switch has never been turned." in never
    assert rows == [("resumed", "admin", "the admin", ""),
                    ("paused", "alice", "the command line", "the ESP is &lt;down&gt;")]
    assert "Every turn" not in page


def test_the_switch_page_shows_ten_turns_and_links_to_every_turn_read_only(admin_client):
    for number in range(6):
        pause.pause_sending(f"op{number}", f"reason {number}")
        pause.resume_sending(f"op{number}")

    page = admin_client.get(SWITCH).content.decode()
    every = admin_client.get("/admin/digest/switchturn/").content.decode()

    assert page.count("<tr><td>") == 10 and "op0" not in page and "op1" in page
    assert 'href="/admin/digest/switchturn/">Every turn</a>' in page
    assert every.count("reason 0") == 1 and "12 turns of the sending switch" in every
    assert admin_client.get("/admin/digest/switchturn/add/").status_code == 403
    turn = SwitchTurn.objects.first()
    assert admin_client.post(f"/admin/digest/switchturn/{turn.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/digest/switchturn/{turn.pk}/change/", {"by": "mallory"}).status_code == 403
    assert SwitchTurn.objects.count() == 12 and not SwitchTurn.objects.filter(by="mallory").exists()


def test_pausing_from_the_switch_page_needs_a_reason(admin_client):
    response = admin_client.post(SWITCH, {"pause": "1", "reason": "  "})

    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert not pause.sending_paused() and switch_history() == []


def test_a_second_pause_keeps_the_first_and_is_not_recorded_again(admin_client):
    pause.pause_sending("alice", "a broken edition")

    response = admin_client.post(SWITCH, {"pause": "1", "reason": "me too"}, follow=True)

    assert "Already paused: digest sending paused since" in response.content.decode()
    assert SendingPause.objects.get().paused_by == "alice" and switch_history() == []


def test_staff_who_may_only_view_the_switch_see_it_but_cannot_turn_it(client):
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sendingpause"))
    client.force_login(viewer)
    pause.pause_sending("alice", "a broken edition")

    page = client.get(SWITCH).content.decode()
    refused = client.post(SWITCH, {"resume": "1"})

    assert "by alice (a broken edition)" in page and "Resume digest sending" not in page
    assert refused.status_code == 403 and pause.sending_paused()


def test_the_switch_has_no_add_or_delete_and_its_change_page_is_the_switch(admin_client):
    switch = pause.the_switch()

    assert admin_client.get(f"{SWITCH}add/").status_code == 403
    assert admin_client.get(f"{SWITCH}{switch.pk}/change/")["Location"] == SWITCH
    assert admin_client.post(f"{SWITCH}{switch.pk}/delete/").status_code == 403
    assert SendingPause.objects.count() == 1


def test_the_resend_action_is_refused_while_paused(admin_client, mailoutbox):
    edition = built_edition()
    delivery = Delivery.objects.create(subscriber=SubscriberFactory(interests=""), edition=edition, status="failed")
    pause.pause_sending("alice", "a broken edition")

    response = admin_client.post("/admin/digest/delivery/", {
        "action": "resend_failed", "_selected_action": [delivery.pk],
    }, follow=True)

    assert "Nothing resent: digest sending paused since" in response.content.decode()
    assert mailoutbox == [] and Delivery.objects.get().status == "failed"
