"""The delivery ledger: every subscriber gets each edition at most once."""

import smtplib
from datetime import timedelta
from unittest import mock

import pytest
import requests
from celery.exceptions import Retry
from anymail.exceptions import AnymailRequestsAPIError
from django.db import connection
from django.utils import timezone
from more_itertools import chunked

from digest import sending
from digest.models import Delivery, Feedback
from digest.ranking import MODEL_MIN_LIKES, RankedPaper
from digest.sending import (
    TransientSendError,
    claim_deliveries,
    load_readers,
    prepare_edition,
    reconcile_stale_deliveries,
    send_edition_to,
    start_sending,
    start_sending_batch,
)
from digest.services import PreviewNotSent, send_preview_digest
from digest.tasks import backoff_seconds, send_digest_chunk
from subscriptions.models import Subscriber
from tests.digest.builders import built_edition
from tests.factories import EditionFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def api_error(status):
    response = requests.Response()
    response.status_code, response.reason, response._content = status, "ESP said no", b"{}"
    return AnymailRequestsAPIError("ESP said no", status_code=status, response=response)


def test_sending_an_edition_twice_emails_each_subscriber_once(mailoutbox):
    edition = built_edition()
    subscribers = SubscriberFactory.create_batch(3, interests="")
    ids = [s.pk for s in subscribers]

    first = send_edition_to(edition, ids)
    second = send_edition_to(edition, ids)

    assert first.sent == 3 and second.sent == 0
    assert len(mailoutbox) == 3
    assert sorted(m.to[0] for m in mailoutbox) == sorted(s.email for s in subscribers)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


def test_only_one_caller_wins_the_claim():
    edition = built_edition()
    subscriber = SubscriberFactory()
    claim_deliveries(edition, [subscriber.pk])
    claim_deliveries(edition, [subscriber.pk])
    delivery = Delivery.objects.get()
    assert start_sending(delivery.pk) is True
    assert start_sending(delivery.pk) is False
    delivery.refresh_from_db()
    assert delivery.status == "sending" and delivery.attempts == 1


def test_unsubscribed_after_claim_is_skipped_not_sent(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory()
    claim_deliveries(edition, [subscriber.pk])
    Subscriber.objects.filter(pk=subscriber.pk).update(status=Subscriber.Status.UNSUBSCRIBED)

    report = send_edition_to(edition, [subscriber.pk])

    assert report.sent == 0 and mailoutbox == []
    assert Delivery.objects.get().status == "skipped"


def test_sent_delivery_records_papers_reasons_and_message_id(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="diffusion models", max_papers=5)
    send_edition_to(edition, [subscriber.pk])
    delivery = Delivery.objects.get()
    assert delivery.status == "sent" and delivery.sent_at is not None
    assert delivery.esp_message_id == mailoutbox[0].extra_headers["Message-ID"]
    assert delivery.paper_ids and set(delivery.why_lines()) == set(delivery.paper_ids)


def test_the_ledger_keeps_each_why_line_once_with_the_papers_it_explains(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="diffusion models", max_papers=10)
    send_edition_to(edition, [subscriber.pk])
    delivery = Delivery.objects.get()
    papers_explained = [pid for pids in delivery.reasons.values() for pid in pids]
    assert sorted(papers_explained) == sorted(delivery.paper_ids)
    assert len(delivery.reasons) == len(set(delivery.why_lines().values()))


def test_reasons_of_ranked_papers_keep_each_why_line_once_in_rank_order():
    ranked = [RankedPaper(PaperFactory.build(id=pid), 0.0, 0.0, line)
              for pid, line in [(7, "matches your interests: agents"), (3, "trending: 9 upvotes"),
                                (5, "matches your interests: agents")]]
    reasons = Delivery.reasons_of(ranked)
    assert reasons == {"matches your interests: agents": [7, 5], "trending: 9 upvotes": [3]}
    assert Delivery(reasons=reasons).why_lines() == {
        7: "matches your interests: agents", 3: "trending: 9 upvotes", 5: "matches your interests: agents",
    }


def test_why_lines_of_a_row_recorded_with_a_line_per_paper_id_are_read_as_they_were():
    older = Delivery(paper_ids=[12, 4], reasons={"12": "matches your interests: agents", "4": ""})
    assert older.why_lines() == {12: "matches your interests: agents", 4: ""}


def test_transient_esp_error_returns_delivery_to_pending_for_a_retry(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="")
    with mock.patch.object(sending, "send_one", side_effect=api_error(503)):
        with pytest.raises(TransientSendError):
            send_edition_to(edition, [subscriber.pk])
    assert Delivery.objects.get().status == "pending"

    send_edition_to(edition, [subscriber.pk])  # the retry
    delivery = Delivery.objects.get()
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(mailoutbox) == 1


def failing_calls(failing, error):
    """``send_one`` that raises ``error`` on the calls ``failing(number)`` names (from 1) and
    sends the others; and the list of its calls."""
    calls = []
    real = sending.send_one

    def send_one(connection, message):
        calls.append(message.to)
        if failing(len(calls)):
            raise error
        return real(connection, message)

    return send_one, calls


def test_a_deferred_message_is_tried_once_more_at_once_over_a_new_connection(mailoutbox):
    edition = built_edition()
    readers = SubscriberFactory.create_batch(3, interests="")
    send_one, calls = failing_calls(lambda n: n == 2, smtplib.SMTPSenderRefused(421, b"too many messages", "x"))
    with mock.patch.object(sending, "send_one", side_effect=send_one), \
            mock.patch("django.core.mail.backends.locmem.EmailBackend.close", autospec=True) as close:
        report = send_edition_to(edition, [r.pk for r in readers])

    assert report.sent == 3 and report.transient == [] and len(calls) == 4
    assert calls[1] == calls[2]  # the same reader's message, once more
    assert close.call_count == 2  # after the deferral, and once the task is done
    assert sorted(m.to[0] for m in mailoutbox) == sorted(r.email for r in readers)


def test_after_a_deferred_message_no_further_one_is_tried_and_the_retry_sends_the_rest(mailoutbox, monkeypatch):
    monkeypatch.setattr(sending, "ONE_BY_ONE_GROUP", 2)
    edition = built_edition()
    readers = SubscriberFactory.create_batch(5, interests="")
    send_one, calls = failing_calls(lambda n: n >= 2, smtplib.SMTPResponseException(451, b"rate limited, try later"))
    with mock.patch.object(sending, "send_one", side_effect=send_one):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])

    assert len(calls) == 3 and calls[1] == calls[2] and len(mailoutbox) == 1  # deferred twice, then stopped
    report = raised.value.args[1]
    assert report.sent == 1 and len(report.transient) == 1
    statuses = sorted(Delivery.objects.values_list("status", "attempts"))
    assert statuses == [("pending", 0)] * 3 + [("pending", 1), ("sent", 1)]

    assert send_edition_to(edition, [r.pk for r in readers]).sent == 4  # the retry
    assert sorted(m.to[0] for m in mailoutbox) == sorted(r.email for r in readers)


def test_a_deferred_message_returns_the_untried_rest_of_its_group_to_pending(mailoutbox, monkeypatch):
    monkeypatch.setattr(sending, "ONE_BY_ONE_GROUP", 3)
    edition = built_edition()
    readers = SubscriberFactory.create_batch(3, interests="")
    send_one, calls = failing_calls(lambda n: True, api_error(429))
    with mock.patch.object(sending, "send_one", side_effect=send_one):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])

    assert len(calls) == 2 and mailoutbox == []
    report = raised.value.args[1]
    assert len(report.transient) == 3
    rows = list(Delivery.objects.values_list("status", "attempts", "paper_ids"))
    assert [(status, attempts) for status, attempts, _ in rows] == [("pending", 1)] * 3
    assert not any(paper_ids for _, _, paper_ids in rows)  # a retry ranks them afresh
    assert send_edition_to(edition, [r.pk for r in readers]).sent == 3


def test_one_dropped_connection_is_weathered_and_a_second_unknown_outcome_stops_the_task(mailoutbox, monkeypatch):
    monkeypatch.setattr(sending, "ONE_BY_ONE_GROUP", 5)
    edition = built_edition()
    readers = SubscriberFactory.create_batch(6, interests="")
    send_one, calls = failing_calls(lambda n: n in (1, 3), smtplib.SMTPServerDisconnected("connection dropped"))
    with mock.patch.object(sending, "send_one", side_effect=send_one):
        with pytest.raises(TransientSendError) as raised:
            send_edition_to(edition, [r.pk for r in readers])

    report = raised.value.args[1]
    assert len(calls) == 3 and len(mailoutbox) == 1  # the message between the two drops went out
    assert report.stopped == "the outcome of a send is unknown" and len(report.unknown) == 2
    unknown = set(calls[0] + calls[2])
    by_status = {}
    for email, status in Delivery.objects.values_list("subscriber__email", "status"):
        by_status.setdefault(status, set()).add(email)
    assert by_status["sending"] == unknown  # may have been taken: never resent
    assert by_status["sent"] == set(calls[1])
    assert len(by_status["pending"]) == 3  # two untried of the group, one never claimed
    assert set(report.transient) == set(Delivery.objects.filter(status="pending", attempts=1).values_list("pk", flat=True))

    assert send_edition_to(edition, [r.pk for r in readers]).sent == 3  # the retry
    assert sorted(m.to[0] for m in mailoutbox) == sorted(r.email for r in readers if r.email not in unknown)


def test_a_task_whose_last_message_has_the_second_unknown_outcome_ends_without_a_retry(mailoutbox):
    edition = built_edition()
    readers = SubscriberFactory.create_batch(3, interests="")
    send_one, calls = failing_calls(lambda n: n in (1, 3), smtplib.SMTPServerDisconnected("connection dropped"))
    with mock.patch.object(sending, "send_one", side_effect=send_one):
        report = send_edition_to(edition, [r.pk for r in readers])  # nothing left to retry: no TransientSendError

    assert len(calls) == 3 and len(mailoutbox) == 1
    assert (report.sent, len(report.unknown), report.transient, report.stopped) == (1, 2, [], "")
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["sending", "sending", "sent"]


def test_a_refused_address_does_not_stop_the_messages_after_it(mailoutbox):
    edition = built_edition()
    readers = SubscriberFactory.create_batch(3, interests="")
    send_one, calls = failing_calls(lambda n: n == 1, api_error(400))
    with mock.patch.object(sending, "send_one", side_effect=send_one):
        report = send_edition_to(edition, [r.pk for r in readers])

    assert len(calls) == 3 and (report.failed, report.sent) == (1, 2) and len(mailoutbox) == 2


def test_permanent_refusal_marks_delivery_failed_and_is_not_retried(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="")
    with mock.patch.object(sending, "send_one", side_effect=api_error(400)):
        report = send_edition_to(edition, [subscriber.pk])
    assert report.failed == 1
    assert Delivery.objects.get().status == "failed"
    assert send_edition_to(edition, [subscriber.pk]).sent == 0


def test_unknown_outcome_is_never_resent_and_is_reconciled_as_failed(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="")
    with mock.patch.object(sending, "send_one", side_effect=smtplib.SMTPServerDisconnected("gone")):
        send_edition_to(edition, [subscriber.pk])
    assert Delivery.objects.get().status == "sending"
    assert send_edition_to(edition, [subscriber.pk]).sent == 0  # a retry does not resend

    assert reconcile_stale_deliveries(timezone.now() + timedelta(hours=1)) == 1
    assert Delivery.objects.get().status == "failed"
    assert mailoutbox == []


def sent_today_so_far(editions=8, readers=40):
    """Rows of a day's send under way: claimed while the table's statistics were taken, then moved
    to ``sending`` batch after batch (each leaving an entry in the stale-send sweep's index)."""
    subscribers = SubscriberFactory.create_batch(readers, interests="")
    for day in range(editions):
        claim_deliveries(EditionFactory(date=timezone.localdate() - timedelta(days=day)), [s.pk for s in subscribers])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE digest_delivery")
    ids = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
    tokens = [start_sending_batch(batch)[0] for batch in chunked(ids, 40)]
    return tokens[-1], ids[-40:]


def test_a_batch_is_recorded_through_its_rows_primary_keys_not_the_stale_send_index():
    """The index of rows in ``sending`` gathers an entry per row sent that day until a vacuum; with
    statistics that have not seen the day's rows, reading a batch's 125 rows through it read every
    entry (100,000 at that many readers) for each batch. The sweep reads it; recording does not."""
    token, batch = sent_today_so_far()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        recorded = sending.claimed_rows(token, batch).explain()
        swept = sending.stale_deliveries(timezone.now()).explain()

    assert "delivery_stale_send_idx" not in recorded and "digest_delivery_pkey" in recorded
    assert "delivery_stale_send_idx" in swept
    assert sending.claimed_rows(token, batch).count() == 40


def test_subscriber_with_nothing_relevant_is_skipped_with_a_reason(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="medieval poetry manuscripts")
    send_edition_to(edition, [subscriber.pk])
    delivery = Delivery.objects.get()
    assert delivery.status == "skipped" and "relevance" in delivery.reason
    assert mailoutbox == []


def test_no_paper_is_sent_twice_to_the_same_subscriber(mailoutbox):
    daily = built_edition("daily")
    weekly = built_edition("weekly", papers=[])
    subscriber = SubscriberFactory(interests="", max_papers=20)
    send_edition_to(daily, [subscriber.pk])
    send_edition_to(weekly, [subscriber.pk])
    first, second = Delivery.objects.order_by("created_at")
    assert first.paper_ids
    assert not set(first.paper_ids) & set(second.paper_ids)


def test_the_batch_compare_and_swap_wins_only_pending_rows_and_only_once():
    edition = built_edition()
    subscribers = SubscriberFactory.create_batch(3)
    claim_deliveries(edition, [s.pk for s in subscribers])
    ids = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
    Delivery.objects.filter(pk=ids[0]).update(status="sent")

    _, first = start_sending_batch(ids)
    _, second = start_sending_batch(ids)

    assert first == set(ids[1:]) and second == set()


def test_a_chunk_task_delivered_twice_sends_once(mailoutbox):
    edition = built_edition()
    subscribers = SubscriberFactory.create_batch(2, interests="")
    for _ in range(2):
        send_digest_chunk.apply(args=(edition.pk, [s.pk for s in subscribers]))
    assert sorted(m.to[0] for m in mailoutbox) == sorted(s.email for s in subscribers)


def test_a_transient_error_retries_the_chunk_with_backoff(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="")
    with mock.patch.object(sending, "send_one", side_effect=api_error(429)), \
            mock.patch("digest.tasks.random.uniform", return_value=1.0):
        with pytest.raises(Retry) as retry:
            send_digest_chunk.apply(args=(edition.pk, [subscriber.pk]))
    assert retry.value.when == 30 and Delivery.objects.get().status == "pending"

    send_digest_chunk.apply(args=(edition.pk, [subscriber.pk]))  # as the broker delivers the retry

    assert [m.to[0] for m in mailoutbox] == [subscriber.email]
    assert Delivery.objects.get().status == "sent"


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for retries, base in [(0, 30), (1, 60), (3, 240), (10, 3600)]:
        samples = [backoff_seconds(retries) for _ in range(50)]
        assert all(0.5 * base <= s <= 1.5 * base for s in samples)
        assert len(set(samples)) > 1


def test_papers_that_may_have_been_sent_are_never_sent_again(mailoutbox):
    daily = built_edition("daily")
    weekly = built_edition("weekly", papers=[])
    subscriber = SubscriberFactory(interests="", max_papers=20)
    with mock.patch.object(sending, "send_one", side_effect=smtplib.SMTPServerDisconnected("gone")):
        send_edition_to(daily, [subscriber.pk])
    maybe_sent = set(Delivery.objects.get().paper_ids)

    send_edition_to(weekly, [subscriber.pk])

    weekly_delivery = Delivery.objects.get(edition=weekly)
    assert maybe_sent and not maybe_sent & set(weekly_delivery.paper_ids)


def test_an_operator_preview_is_emailed_but_not_recorded(mailoutbox):
    built_edition()
    subscriber = SubscriberFactory(interests="diffusion models")
    send_preview_digest(subscriber)
    assert [m.to[0] for m in mailoutbox] == [subscriber.email] and not Delivery.objects.exists()
    assert "matches your interests: diffusion models" in mailoutbox[0].body


@pytest.mark.parametrize(
    "status", ["pending", "paused", "unsubscribed", "bounced", "complained", "suppressed"]
)
def test_an_operator_preview_is_never_emailed_to_a_reader_who_is_not_active(status, mailoutbox):
    built_edition()
    subscriber = SubscriberFactory(status=status)
    with pytest.raises(PreviewNotSent, match=status):
        send_preview_digest(subscriber)
    assert mailoutbox == []


def test_an_operator_preview_with_no_papers_for_the_reader_is_not_emailed(mailoutbox):
    edition = built_edition()
    subscriber = SubscriberFactory(interests="diffusion models")
    all_papers = list(edition.entries.values_list("paper_id", flat=True))
    Delivery.objects.create(
        subscriber=subscriber, edition=EditionFactory(date=edition.date - timedelta(days=1)),
        status="sent", paper_ids=all_papers,
    )
    with pytest.raises(PreviewNotSent, match="no papers"):
        send_preview_digest(subscriber)
    assert mailoutbox == []


def test_an_operator_preview_before_the_first_edition_is_not_emailed(mailoutbox):
    with pytest.raises(PreviewNotSent, match="no daily edition yet"):
        send_preview_digest(SubscriberFactory())
    assert mailoutbox == []


def test_the_collector_runs_less_often_while_a_chunk_is_sent_and_as_before_after(mailoutbox):
    import gc

    edition = built_edition()
    subscriber, refused = SubscriberFactory.create_batch(2, interests="")
    before = gc.get_threshold()
    seen = []
    real_send_one = sending.send_one

    def send_one_noting_threshold(connection, message):
        seen.append(gc.get_threshold())
        return real_send_one(connection, message)

    with mock.patch.object(sending, "send_one", side_effect=send_one_noting_threshold):
        send_edition_to(edition, [subscriber.pk])
    with mock.patch.object(sending, "send_one", side_effect=api_error(503)):
        with pytest.raises(TransientSendError):
            send_edition_to(edition, [refused.pk])

    assert seen and seen[0][0] >= sending.CHUNK_GC_THRESHOLD and seen[0][1:] == before[1:]
    assert gc.get_threshold() == before  # restored, after a chunk that raised too
    assert len(mailoutbox) == 1


def past_digest(subscriber, day, paper_ids, built_days_ago):
    """A sent digest of an edition built ``built_days_ago`` days ago."""
    edition = EditionFactory(cadence="daily", date=day, built_at=timezone.now() - timedelta(days=built_days_ago))
    return Delivery.objects.create(subscriber=subscriber, edition=edition, status="sent", paper_ids=paper_ids)


def test_only_digests_of_editions_built_since_todays_papers_were_first_seen_are_read():
    today = built_edition("daily")
    subscriber = SubscriberFactory(interests="")
    recent_paper, old_paper = today.papers.first(), PaperFactory(first_seen_at=timezone.now() - timedelta(days=400))
    past_digest(subscriber, today.date - timedelta(days=1), [recent_paper.pk], built_days_ago=0)
    old = past_digest(subscriber, timezone.localdate() - timedelta(days=300), [old_paper.pk], built_days_ago=300)

    readers = load_readers(today, [subscriber.pk])

    assert readers.history == {subscriber.pk: {recent_paper.pk}}  # the year-old digest is not read
    assert old.edition_id not in sending.editions_sharing_papers(today)
    assert recent_paper.pk not in {r.paper.pk for r in readers.rank(prepare_edition(today).ranker, subscriber)}


def test_a_reader_with_a_model_still_counts_every_paper_ever_sent_and_not_voted_on_as_ignored():
    today = built_edition("daily")
    subscriber = SubscriberFactory(interests="")
    liked = PaperFactory.create_batch(MODEL_MIN_LIKES, first_seen_at=timezone.now() - timedelta(days=400))
    for paper in liked:
        Feedback.objects.create(subscriber=subscriber, paper=paper, vote=1)
    old_paper = PaperFactory(first_seen_at=timezone.now() - timedelta(days=400))
    past_digest(subscriber, timezone.localdate() - timedelta(days=300), [old_paper.pk, *(p.pk for p in liked)],
                built_days_ago=300)

    readers = load_readers(today, [subscriber.pk])

    assert [p.pk for p in readers.ignored[subscriber.pk]] == [old_paper.pk]
    assert readers.history == {}


def test_votes_are_read_with_each_paper_once_newest_first_and_ranking_them_reads_nothing_more(
    django_assert_num_queries,
):
    today = built_edition("daily")
    papers = PaperFactory.create_batch(MODEL_MIN_LIKES + 2, first_seen_at=timezone.now() - timedelta(days=30))
    readers = SubscriberFactory.create_batch(3, interests="diffusion models")
    for n, reader in enumerate(readers):  # the readers like the first papers, each vote an hour older than the last
        for age, paper in enumerate(papers[: MODEL_MIN_LIKES - 1 + n]):
            Feedback.objects.create(subscriber=reader, paper=paper, vote=1, created_at=timezone.now() - timedelta(hours=age))
        Feedback.objects.create(subscriber=reader, paper=papers[-1], vote=-1)
    ranker = prepare_edition(today).ranker
    ids = [reader.pk for reader in readers]

    with django_assert_num_queries(2):  # the votes, and the papers voted on
        liked, disliked = sending.feedback_papers(ids)
    assert {sid: [p.pk for p in ps] for sid, ps in liked.items()} == {
        reader.pk: [p.pk for p in papers[: MODEL_MIN_LIKES - 1 + n]] for n, reader in enumerate(readers)
    }
    assert {sid: [p.pk for p in ps] for sid, ps in disliked.items()} == {sid: [papers[-1].pk] for sid in ids}
    assert liked[ids[0]][0] is liked[ids[1]][0]  # loaded once for the chunk

    with django_assert_num_queries(0):  # nothing deferred is read: with a model (readers 1 and 2) or without
        ranked = [ranker.rank_for(reader, liked=liked[reader.pk], disliked=disliked[reader.pk]) for reader in readers]
    assert all(ranked) and papers[-1].pk not in {r.paper.pk for rs in ranked for r in rs}


def test_a_prepared_edition_is_reused_until_an_entry_or_a_paper_of_it_changes():
    edition = built_edition()
    prepared = prepare_edition(edition)
    assert prepare_edition(edition) is prepared

    top = edition.entries.order_by("rank").first()
    top.paper.title = "A corrected title"
    top.paper.save()
    after_edit = prepare_edition(edition)
    assert after_edit is not prepared
    assert "A corrected title" in after_edit.renderer.block(top.paper).html
    assert prepare_edition(edition) is after_edit

    edition.entries.filter(pk=top.pk).update(pulled=True)
    after_pull = prepare_edition(edition)
    assert after_pull is not after_edit
    assert top.paper_id not in {paper.pk for paper in after_pull.ranker.papers}

    edition.entries.filter(pk=top.pk).update(pulled=False)
    assert prepare_edition(edition) is not after_pull


@pytest.mark.parametrize("vendor", ["postgresql", "other"])
def test_the_edition_check_reads_the_same_entries_whichever_the_database(vendor, monkeypatch):
    edition = built_edition()
    monkeypatch.setattr(sending.db_connection, "vendor", vendor)
    first = sending.sendable_fingerprint(edition)
    assert sending.sendable_fingerprint(edition) == first
    entry = edition.entries.order_by("-rank").first()
    edition.entries.filter(pk=entry.pk).update(rank=0)
    assert sending.sendable_fingerprint(edition) != first


def test_one_by_one_a_row_the_stale_sweep_failed_meanwhile_is_not_sent(mailoutbox, monkeypatch, time_machine):
    """A group of rows is claimed before its first message, and over SMTP each message may take
    up to EMAIL_TIMEOUT. Should the beat's sweep find rows of the group claimed too long ago, it
    fails them ("not resent"): the task must then leave them, not send them anyway, which
    recorded them failed though sent, and let an operator's resend email them a second time.
    Each row's claim is stamped afresh right before its message, so the sweep spares that one."""
    time_machine.move_to(timezone.now(), tick=False)
    readers = [SubscriberFactory(interests="") for _ in range(3)]
    edition = built_edition()
    real_send, tried = sending.send_one_reconnecting, []

    def slow_relay(connection, message):
        if tried:
            reconcile_stale_deliveries()  # the beat's sweep, while the group is still being sent
        tried.append(message.to[0])
        time_machine.shift(timedelta(minutes=31))  # each message takes over half an hour
        return real_send(connection, message)

    monkeypatch.setattr(sending, "send_one_reconnecting", slow_relay)
    send_edition_to(edition, [r.pk for r in readers])
    monkeypatch.setattr(sending, "send_one_reconnecting", real_send)

    rows = {d.subscriber_id: d for d in Delivery.objects.filter(edition=edition)}
    emailed = [m.to[0] for m in mailoutbox]
    for reader in readers:
        row = rows[reader.pk]
        assert (row.status == "sent") == (reader.email in emailed), (row.status, row.reason, emailed)
    assert [row.status for row in rows.values()].count("failed") == 1  # the last one, failed unsent
