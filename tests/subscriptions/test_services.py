import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from digest.models import Delivery, Feedback
from subscriptions import services, tasks
from subscriptions.models import Subscriber, Suppression, email_hash
from subscriptions.services import (
    ImportResult,
    NewLinkResult,
    ReactivationResult,
    SignupResult,
)
from tests.factories import EditionFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

PREFERENCES = {
    "interests": "RLHF",
    "categories": ["cs.CL"],
    "frequency": "weekly",
    "max_papers": 5,
    "send_hour": 8,
    "timezone": "Asia/Tokyo",
    "always_send_top": True,
}


def signup(email="new@example.org", preferences=PREFERENCES):
    return services.request_subscription(email, preferences, ip="203.0.113.9")


# --- Joining ------------------------------------------------------------------


def test_a_new_address_becomes_pending_with_its_preferences_and_gets_a_confirmation():
    assert signup() is SignupResult.CREATED
    subscriber = Subscriber.objects.get(email="new@example.org")
    assert subscriber.status == "pending"
    assert (subscriber.frequency, subscriber.max_papers, subscriber.timezone) == (
        "weekly",
        5,
        "Asia/Tokyo",
    )
    assert subscriber.categories == ["cs.CL"]
    assert "203.0.113.9" in subscriber.consent_note
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new@example.org"]
    assert "/confirm/" in mail.outbox[0].body


def test_at_most_one_confirmation_per_address_per_ten_minutes(time_machine):
    signup()
    assert signup() is SignupResult.THROTTLED
    assert services.resend_confirmation("new@example.org") is SignupResult.THROTTLED
    assert len(mail.outbox) == 1
    time_machine.move_to(timezone.now() + timedelta(minutes=11))
    assert signup() is SignupResult.CONFIRMATION_SENT
    assert len(mail.outbox) == 2


def test_the_cap_ignores_the_case_of_the_address():
    signup("new@example.org")
    signup("NEW@example.org")
    assert Subscriber.objects.count() == 1
    assert len(mail.outbox) == 1


def test_a_pending_address_resubmitting_takes_the_new_preferences(pending, time_machine):
    time_machine.move_to(timezone.now() + timedelta(minutes=11))
    signup(pending.email, {**PREFERENCES, "interests": "graph neural networks"})
    pending.refresh_from_db()
    assert pending.interests == "graph neural networks"
    assert pending.status == "pending"


def test_an_active_subscriber_signing_up_again_changes_nothing_and_gets_their_link(subscriber):
    before = Subscriber.objects.values().get(pk=subscriber.pk)
    assert signup(subscriber.email) is SignupResult.ALREADY_SUBSCRIBED
    after = Subscriber.objects.values().get(pk=subscriber.pk)
    assert {k: v for k, v in after.items() if k != "notice_sent_at"} == {
        k: v for k, v in before.items() if k != "notice_sent_at"
    }
    assert len(mail.outbox) == 1
    assert "/preferences/" in mail.outbox[0].body
    signup(subscriber.email)
    assert len(mail.outbox) == 1  # the reminder is capped too


@pytest.mark.parametrize("reason", ["bounced", "complained", "suppressed"])
def test_suppressed_addresses_get_nothing(reason):
    services.suppress_email("gone@example.org", reason)
    assert signup("gone@example.org") is SignupResult.BLOCKED
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


def test_a_failing_mail_system_leaves_a_pending_row_and_a_free_slot(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("ESP down")

    monkeypatch.setattr(services, "send_email", broken)
    signup()
    subscriber = Subscriber.objects.get()
    assert subscriber.status == "pending"
    assert subscriber.confirmation_sent_at is None  # so the visitor can retry at once
    monkeypatch.undo()
    assert signup() is SignupResult.CONFIRMATION_SENT


@pytest.fixture
def handed_over(monkeypatch):
    """The account emails the forms hand to the workers, as a broker would queue them."""
    queued = []
    monkeypatch.setattr(tasks.send_account_email, "delay", lambda *args: queued.append(args))
    return queued


def test_the_forms_emails_are_left_to_a_worker_and_none_is_sent_in_the_request(handed_over, subscriber):
    signup()
    signup(subscriber.email)
    assert services.resend_confirmation("nobody@example.org") is SignupResult.IGNORED
    assert mail.outbox == []
    pending = Subscriber.objects.get(email="new@example.org")
    assert handed_over == [(pending.pk, "confirm", None), (subscriber.pk, "already_subscribed", None)]
    assert pending.confirmation_sent_at is not None  # the slot is taken when it is handed over

    for args in handed_over:
        tasks.send_account_email(*args)
    assert [(m.to[0], m.subject) for m in mail.outbox] == [
        ("new@example.org", "Confirm your Paperboy subscription"),
        (subscriber.email, "You are already subscribed to Paperboy"),
    ]
    assert "/confirm/" in mail.outbox[0].body and "/preferences/" in mail.outbox[1].body


def test_a_handed_over_email_is_not_sent_to_a_reader_who_left_or_was_deleted_meanwhile(handed_over, subscriber):
    signup()
    signup(subscriber.email)
    Subscriber.objects.filter(email="new@example.org").delete()
    services.suppress(subscriber, reason="bounced")

    assert [tasks.send_account_email(*args) for args in handed_over] == [False, False]
    assert mail.outbox == []


def test_a_handed_over_email_the_mail_system_refuses_gives_the_slot_back(handed_over, monkeypatch, time_machine):
    signup()
    time_machine.move_to(timezone.now() + timedelta(minutes=11))
    signup()
    pending = Subscriber.objects.get()
    first_slot = handed_over[1][2]

    def refused(*args, **kwargs):
        raise OSError("ESP down")

    monkeypatch.setattr(services, "send_email", refused)

    assert tasks.send_account_email(*handed_over[1]) is False
    pending.refresh_from_db()
    assert pending.confirmation_sent_at.isoformat() == first_slot  # as before the failed one


def greylisted():
    return smtplib.SMTPRecipientsRefused({"new@example.org": (451, b"4.7.1 Try again later")})


@pytest.mark.parametrize("deferral", [greylisted, lambda: ConnectionRefusedError(111, "Connection refused")])
def test_an_email_the_mail_system_defers_keeps_its_slot_for_the_next_try(
    handed_over, mail_system, caplog, time_machine, deferral
):
    signup()
    mail_system.errors = [deferral()]
    subscriber_id, name, previous = handed_over[0]

    time_machine.move_to(timezone.now() + timedelta(minutes=8), tick=False)  # the worker's first try, late
    deferred_at = timezone.now()
    with pytest.raises(services.AccountEmailDeferred):
        services.send_account_email(subscriber_id, name, previous, may_defer=True)
    # Not given back, and stamped again: the slot holds until the next try, 10 minutes at most away.
    assert Subscriber.objects.get().confirmation_sent_at == deferred_at
    assert "The mail system deferred the confirm email" in caplog.text

    time_machine.move_to(deferred_at + timedelta(minutes=9), tick=False)  # 17 minutes after the signup
    assert services.send_confirmation(Subscriber.objects.get()) is False  # no second email beside it
    assert len(handed_over) == 1

    assert services.send_account_email(subscriber_id, name, previous, may_defer=True) is True
    assert [m.to[0] for m in mail.outbox] == ["new@example.org"]
    assert Subscriber.objects.get().confirmation_sent_at == deferred_at


def test_a_deferred_email_leaves_a_slot_another_request_took_meanwhile_as_it_is(handed_over, monkeypatch):
    signup()
    subscriber_id, name, previous = handed_over[0]
    taken_by_another = timezone.now() + timedelta(seconds=1)

    def deferred_while_another_request_takes_the_slot(*args, **kwargs):
        Subscriber.objects.update(confirmation_sent_at=taken_by_another)
        raise greylisted()

    monkeypatch.setattr(services, "send_email", deferred_while_another_request_takes_the_slot)
    with pytest.raises(services.AccountEmailDeferred):
        services.send_account_email(subscriber_id, name, previous, may_defer=True)
    assert Subscriber.objects.get().confirmation_sent_at == taken_by_another


def test_a_deferred_email_is_tried_again_within_its_slot(settings):
    settings.ACCOUNT_EMAIL_RETRY_DELAYS = [60, 300, 900, 3600]
    assert [services.account_email_retry_delay(n) for n in range(4)] == [60, 300, 600, 600]


def test_the_last_try_of_a_deferred_email_gives_the_slot_back(handed_over, mail_system):
    signup()
    mail_system.errors = [greylisted()]

    assert services.send_account_email(*handed_over[0], may_defer=False) is False
    assert mail.outbox == []
    assert Subscriber.objects.get().confirmation_sent_at is None  # the visitor may ask again at once


@pytest.mark.parametrize("error", [
    smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),  # it may have gone out
    smtplib.SMTPRecipientsRefused({"new@example.org": (550, b"5.1.1 No such user")}),
])
def test_an_email_whose_fate_is_unknown_or_refused_for_good_is_not_deferred(handed_over, mail_system, error):
    signup()
    mail_system.errors = [error]

    assert services.send_account_email(*handed_over[0], may_defer=True) is False
    assert mail_system.tries == 1
    assert Subscriber.objects.get().confirmation_sent_at is None


def test_in_process_a_deferred_email_is_not_tried_again_and_the_form_still_answers(mail_system):
    """The embedded default runs the task in the request: nothing to wait in for a retry."""
    mail_system.errors = [greylisted()]

    assert signup() is SignupResult.CREATED
    assert mail_system.tries == 1
    assert Subscriber.objects.get().confirmation_sent_at is None


def test_with_the_broker_unreachable_the_email_is_sent_in_the_request(monkeypatch, caplog):
    def unreachable(*args):
        raise BrokerError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(tasks.send_account_email, "delay", unreachable)
    assert signup() is SignupResult.CREATED
    assert [m.to[0] for m in mail.outbox] == ["new@example.org"]
    assert "Queue unreachable: sending the confirm email" in caplog.text


def test_confirming_activates_and_records_when(pending):
    assert services.confirm_subscriber(pending)
    pending.refresh_from_db()
    assert pending.status == "active"
    assert pending.confirmed_at is not None
    assert "confirmed by email link" in pending.consent_note


def test_confirming_twice_is_harmless(pending):
    services.confirm_subscriber(pending)
    first = Subscriber.objects.get(pk=pending.pk).confirmed_at
    assert services.confirm_subscriber(pending)
    assert Subscriber.objects.get(pk=pending.pk).confirmed_at == first


def test_an_old_confirmation_link_cannot_undo_an_unsubscription(subscriber):
    requested = timezone.now().timestamp()
    services.unsubscribe(subscriber, via="page")
    assert not services.confirm_subscriber(subscriber, requested_at=requested - 60)
    assert Subscriber.objects.get(pk=subscriber.pk).status == "unsubscribed"
    later = subscriber.unsubscribed_at.timestamp() + 1
    assert services.confirm_subscriber(subscriber, requested_at=later)
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"


def test_an_unsubscribed_address_signing_up_again_gets_a_confirmation_but_stays_out(subscriber):
    services.unsubscribe(subscriber, via="page")
    assert signup(subscriber.email) is SignupResult.CONFIRMATION_SENT
    assert Subscriber.objects.get(pk=subscriber.pk).status == "unsubscribed"
    assert "/confirm/" in mail.outbox[0].body


REPLACED = ("interests", "categories", "frequency", "max_papers", "send_hour", "timezone", "always_send_top",
            "consent_note")


def stored(subscriber):
    row = Subscriber.objects.get(pk=subscriber.pk)
    return {name: getattr(row, name) for name in REPLACED}


def test_a_signup_for_a_former_reader_changes_nothing_they_come_back_to_until_it_is_confirmed(subscriber):
    """Anyone may type a former reader's address into the form. Until the link mailed to it is
    followed, their preferences and the record of their consent stay theirs: "Subscribe again"
    on their preferences page brings them back as they left."""
    note = "Requested on the signup form from 192.0.2.1; confirmed by email link 2026-01-05 10:00 UTC"
    Subscriber.objects.filter(pk=subscriber.pk).update(consent_note=note)
    services.unsubscribe(subscriber, via="page")
    before = stored(subscriber)

    assert signup(subscriber.email) is SignupResult.CONFIRMATION_SENT
    assert signup(subscriber.email) is SignupResult.THROTTLED
    assert stored(subscriber) == before
    assert services.resume(Subscriber.objects.get(pk=subscriber.pk))

    assert stored(subscriber) == before
    assert Subscriber.objects.get(pk=subscriber.pk).signup_request is None


def test_an_operator_reactivating_a_former_reader_drops_a_signup_waiting_for_them(subscriber):
    services.unsubscribe(subscriber, via="page")
    before = stored(subscriber)
    signup(subscriber.email)
    assert services.reactivate(Subscriber.objects.get(pk=subscriber.pk)) is ReactivationResult.REACTIVATED
    assert stored(subscriber) == before and Subscriber.objects.get(pk=subscriber.pk).signup_request is None


def test_a_former_reader_who_confirms_a_new_signup_gets_its_preferences_and_its_consent_note(subscriber):
    services.unsubscribe(subscriber, via="page")
    signup(subscriber.email)
    requested = timezone.now().timestamp()

    assert services.confirm_subscriber(Subscriber.objects.get(pk=subscriber.pk), requested_at=requested)

    row = Subscriber.objects.get(pk=subscriber.pk)
    assert row.status == "active" and row.signup_request is None
    assert {name: getattr(row, name) for name in PREFERENCES} == PREFERENCES
    assert row.consent_note.startswith("Requested on the signup form from 203.0.113.9; confirmed by email link ")


def test_a_signup_nobody_confirmed_yet_takes_the_latest_preferences_at_once(pending):
    signup(pending.email)
    row = Subscriber.objects.get(pk=pending.pk)
    assert {name: getattr(row, name) for name in PREFERENCES} == PREFERENCES
    assert row.consent_note == "Requested on the signup form from 203.0.113.9" and row.signup_request is None


def test_coming_back_after_deleting_lifts_the_deleted_suppression():
    subscriber = SubscriberFactory(email="back@example.org")
    services.delete_subscriber(subscriber)
    signup("back@example.org")
    returning = Subscriber.objects.get(email="back@example.org")
    services.confirm_subscriber(returning)
    assert not Suppression.objects.filter(email_hash=email_hash("back@example.org")).exists()


# --- Steering and leaving -----------------------------------------------------


def test_update_preferences_saves_only_preference_fields(subscriber):
    services.update_preferences(
        subscriber, {**PREFERENCES, "status": "bounced", "email": "x@y.org"}
    )
    subscriber.refresh_from_db()
    assert subscriber.frequency == "weekly"
    assert (subscriber.status, subscriber.email) == ("active", "ada@example.org")


def test_pause_and_resume(subscriber):
    assert services.pause(subscriber)
    assert Subscriber.objects.get(pk=subscriber.pk).status == "paused"
    assert services.resume(subscriber)
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"


def test_resume_never_activates_someone_who_never_confirmed(pending):
    assert not services.resume(pending)
    assert Subscriber.objects.get(pk=pending.pk).status == "pending"


def test_unsubscribe_is_immediate_and_idempotent(subscriber):
    assert services.unsubscribe(subscriber, via="webhook")
    row = Subscriber.objects.get(pk=subscriber.pk)
    assert (row.status, row.unsubscribed_via) == ("unsubscribed", "webhook")
    first = row.unsubscribed_at
    assert not services.unsubscribe(subscriber, via="page")
    assert Subscriber.objects.get(pk=subscriber.pk).unsubscribed_at == first


def test_unsubscribe_leaves_a_bounced_subscriber_bounced(subscriber):
    services.suppress(subscriber, reason="bounced")
    services.unsubscribe(subscriber, via="webhook")
    assert Subscriber.objects.get(pk=subscriber.pk).status == "bounced"


@pytest.mark.parametrize(
    ("reason", "status"),
    [("bounced", "bounced"), ("complained", "complained"), ("spam trap", "suppressed")],
)
def test_suppress_sets_the_status_and_a_hashed_entry_idempotently(subscriber, reason, status):
    assert services.suppress(subscriber, reason=reason) is True
    assert services.suppress(subscriber, reason=reason) is False  # nothing changed the second time
    assert Subscriber.objects.get(pk=subscriber.pk).status == status
    entry = Suppression.objects.get()
    assert entry.email_hash == email_hash("ada@example.org")
    assert entry.reason == reason
    assert "ada" not in entry.email_hash


def test_a_bounce_after_a_complaint_keeps_the_complaint(subscriber):
    services.suppress(subscriber, reason="complained")
    assert services.suppress(subscriber, reason="bounced") is False
    assert Subscriber.objects.get(pk=subscriber.pk).status == "complained"
    assert Suppression.objects.get().reason == "complained"
    services.suppress(subscriber, reason="spam trap")  # an operator's suppression still replaces it
    assert Subscriber.objects.get(pk=subscriber.pk).status == "suppressed"


def test_reactivate_lifts_a_suppression_but_needs_earlier_consent(subscriber, pending):
    services.suppress(subscriber, reason="complained")
    assert services.reactivate(subscriber)
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"
    assert not Suppression.objects.exists()
    assert not services.reactivate(pending)
    assert Subscriber.objects.get(pk=pending.pk).status == "pending"


def test_reactivate_says_whether_it_moved_the_subscriber_or_found_them_active(subscriber):
    assert services.reactivate(subscriber) is ReactivationResult.ALREADY_ACTIVE
    services.pause(subscriber)
    assert services.reactivate(subscriber) is ReactivationResult.REACTIVATED
    assert Subscriber.objects.get(pk=subscriber.pk).status == "active"


def test_reactivate_refuses_who_never_confirmed(pending):
    assert services.reactivate(pending) is ReactivationResult.REFUSED


def test_revoking_links_rotates_the_secret_and_mails_a_new_link(subscriber):
    old = subscriber.token_secret
    services.revoke_links(subscriber)
    assert Subscriber.objects.get(pk=subscriber.pk).token_secret != old
    assert "/preferences/" in mail.outbox[0].body


def test_revoking_links_of_a_paused_reader_mails_them_a_new_link(subscriber):
    services.pause(subscriber)
    assert services.revoke_links(subscriber) is NewLinkResult.EMAILED
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]


@pytest.mark.parametrize(
    "status", ["pending", "unsubscribed", "bounced", "complained", "suppressed"]
)
def test_revoking_links_of_a_reader_we_may_not_email_rotates_the_secret_but_sends_nothing(
    status,
):
    reader = SubscriberFactory(status=status)
    old = reader.token_secret
    assert services.revoke_links(reader) is NewLinkResult.NOT_EMAILED
    assert Subscriber.objects.get(pk=reader.pk).token_secret != old
    assert mail.outbox == []


# --- Data rights --------------------------------------------------------------


def test_my_data_holds_profile_deliveries_and_feedback(subscriber):
    paper = PaperFactory(title="Sparse attention at scale")
    Delivery.objects.create(
        subscriber=subscriber, edition=EditionFactory(), paper_ids=[paper.pk], status="sent"
    )
    Feedback.objects.create(subscriber=subscriber, paper=paper, vote=1)
    data = services.export_subscriber_data(subscriber)
    assert data["profile"]["email"] == "ada@example.org"
    assert data["profile"]["interests"] == ["diffusion models"]
    assert "token_secret" not in str(data)
    assert data["deliveries"][0]["papers"] == [{"arxiv_id": paper.arxiv_id, "title": paper.title}]
    assert data["feedback"][0]["vote"] == 1


def test_my_data_holds_a_signup_waiting_for_its_confirmation(subscriber):
    services.unsubscribe(subscriber, via="page")
    assert services.export_subscriber_data(subscriber)["profile"]["signup_awaiting_confirmation"] is None
    signup(subscriber.email)
    waiting = services.export_subscriber_data(Subscriber.objects.get(pk=subscriber.pk))["profile"]
    assert waiting["signup_awaiting_confirmation"] == {
        "preferences": PREFERENCES, "consent_note": "Requested on the signup form from 203.0.113.9"
    }
    assert waiting["interests"] == ["diffusion models"]


def test_deleting_erases_everything_but_a_hash(subscriber):
    paper = PaperFactory()
    Delivery.objects.create(subscriber=subscriber, edition=EditionFactory(), paper_ids=[paper.pk])
    Feedback.objects.create(subscriber=subscriber, paper=paper, vote=-1)
    services.delete_subscriber(subscriber)
    assert not Subscriber.objects.exists()
    assert not Delivery.objects.exists()
    assert not Feedback.objects.exists()
    assert Suppression.objects.get().email_hash == email_hash("ada@example.org")


def test_deleting_keeps_a_stronger_suppression_reason(subscriber):
    services.suppress(subscriber, reason="complained")
    services.delete_subscriber(subscriber)
    assert Suppression.objects.get().reason == "complained"


# --- Import -------------------------------------------------------------------


def test_import_without_consent_creates_pending_and_sends_a_confirmation():
    assert services.import_subscriber("imp@example.org", PREFERENCES) is ImportResult.PENDING
    assert Subscriber.objects.get().status == "pending"
    assert "/confirm/" in mail.outbox[0].body


def test_import_with_recorded_consent_creates_active_without_email():
    consented = timezone.now() - timedelta(days=30)
    result = services.import_subscriber(
        "imp@example.org", PREFERENCES, consented, "Old list, 2024 form"
    )
    assert result is ImportResult.ACTIVE
    subscriber = Subscriber.objects.get()
    assert (subscriber.status, subscriber.confirmed_at) == ("active", consented)
    assert subscriber.consent_note == "Old list, 2024 form"
    assert mail.outbox == []


def test_import_with_recorded_consent_and_paused_creates_paused_without_email():
    consented = timezone.now() - timedelta(days=30)
    result = services.import_subscriber("imp@example.org", PREFERENCES, consented, paused=True)
    assert result is ImportResult.PAUSED
    assert Subscriber.objects.get().status == "paused"
    assert mail.outbox == []


def test_import_paused_without_consent_creates_pending_and_sends_a_confirmation():
    result = services.import_subscriber("imp@example.org", PREFERENCES, paused=True)
    assert result is ImportResult.PENDING
    assert Subscriber.objects.get().status == "pending"
    assert "/confirm/" in mail.outbox[0].body


def test_import_cannot_re_add_a_deleted_subscriber(subscriber):
    services.delete_subscriber(subscriber)
    assert services.import_subscriber("ada@example.org", PREFERENCES) is ImportResult.SUPPRESSED
    assert (
        services.import_subscriber("ADA@example.org", PREFERENCES, timezone.now())
        is ImportResult.SUPPRESSED
    )
    assert not Subscriber.objects.exists()


def test_import_skips_existing_addresses(subscriber):
    assert services.import_subscriber("Ada@Example.org", PREFERENCES) is ImportResult.EXISTS


def test_digest_sample_falls_back_to_nothing_without_the_digest_function(monkeypatch):
    import digest.services

    monkeypatch.delattr(digest.services, "latest_edition_sample", raising=False)
    assert services.digest_sample() == []


def test_an_address_is_found_in_any_case_through_the_unique_index():
    ada = SubscriberFactory(email="Ada.Lovelace@Example.org")
    SubscriberFactory(email="someone.else@example.org")

    assert services.find_subscriber("ada.lovelace@EXAMPLE.ORG") == ada
    assert services.find_subscriber("ada.lovelace@example.com") is None
    if connection.vendor == "postgresql":
        sql, params = Subscriber.objects.with_email("ADA.LOVELACE@example.org").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
        assert "subscriber_email_ci_unique" in plan
