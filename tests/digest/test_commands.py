"""`manage.py run_daily` and `send_digests`: the arguments they refuse and what they print."""

from datetime import UTC, date, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from digest import pause
from digest.models import Delivery, Edition, SwitchTurn
from papers.models import Paper
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def bundled_only(settings):
    settings.PAPER_SOURCES = ["bundled"]


@pytest.fixture
def sunday():
    """Sunday 2026-12-06 at noon on the edition clock (UTC): the next edition is Monday's."""
    with time_machine.travel(datetime(2026, 12, 6, 12, 0, tzinfo=UTC), tick=False):
        yield


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("command", ["run_daily", "send_digests"])
@pytest.mark.parametrize("typed", ["2026-02-30", "2026-13-01", "06/12/2026", ""])
def test_a_malformed_or_impossible_date_is_refused_naming_the_format(bundled_only, command, typed):
    with pytest.raises(CommandError, match=r"not a date \(YYYY-MM-DD\)"):
        run(command, "--date", typed)
    assert not Edition.objects.exists()


@pytest.mark.parametrize("args", [["run_daily"], ["send_digests", "--subscriber", "reader@example.org"]])
def test_a_day_before_arxiv_began_is_refused_before_any_edition_is_built(bundled_only, args):
    SubscriberFactory(email="reader@example.org")

    with pytest.raises(CommandError, match="0001-01-01 is before arXiv began"):
        run(*args, "--date", "0001-01-01")

    assert not Edition.objects.exists()


@pytest.mark.parametrize(
    "args",
    [["run_daily"], ["send_digests"], ["send_digests", "--subscriber", "reader@example.org"]],
)
def test_a_future_day_is_refused_before_anything_is_fetched_built_or_sent(bundled_only, sunday, args, mailoutbox):
    SubscriberFactory(email="reader@example.org", interests="")

    with pytest.raises(CommandError, match=r"2026-12-07 is in the future \(today is 2026-12-06 on the edition clock\)"):
        run(*args, "--date", "2026-12-07")

    assert not Paper.objects.exists() and not Edition.objects.exists()
    assert not Delivery.objects.exists() and mailoutbox == []


def test_today_and_past_days_still_build_their_editions(bundled_only, sunday):
    run("run_daily", "--date", "2026-12-04")
    run("run_daily", "--date", "2026-12-06")

    built = set(Edition.objects.values_list("cadence", "date"))
    assert built == {("daily", date(2026, 12, 4)), ("weekly", date(2026, 11, 30))}


def test_the_future_begins_after_today_on_the_edition_clock(settings, sunday):
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14: Monday 02:00 there

    assert run("send_digests", "--date", "2026-12-07", "--dry-run").endswith("would be sent\n")
    with pytest.raises(CommandError, match="2026-12-08 is in the future"):
        run("send_digests", "--date", "2026-12-08", "--dry-run")


def test_the_count_of_digests_reads_in_the_singular_for_one(mailoutbox):
    SubscriberFactory(interests="")
    built_edition("daily")

    assert run("send_digests", "--dry-run") == "1 digest would be sent\n"
    assert run("send_digests") == "1 digest handed to the sender\n"
    assert run("send_digests") == "0 digests handed to the sender\n"
    assert len(mailoutbox) == 1


def test_send_to_one_subscriber_names_the_address_as_stored_not_as_typed(mailoutbox):
    SubscriberFactory(email="tester@example.com", interests="")
    built_edition("daily")

    dry_run = run("send_digests", "--subscriber", " Tester@EXAMPLE.com", "--dry-run")
    sent = run("send_digests", "--subscriber", "Tester@example.com")
    again = run("send_digests", "--subscriber", "TESTER@example.com")

    assert dry_run == "would send the latest daily edition to tester@example.com\n"
    assert sent.startswith("sent ") and sent.endswith(" to tester@example.com\n")
    assert again.endswith("already handled for tester@example.com (status unchanged), or not active\n")
    assert [m.to for m in mailoutbox] == [["tester@example.com"]]


def test_a_dry_run_for_one_subscriber_says_when_the_real_run_would_send_nothing(mailoutbox):
    reader = SubscriberFactory(email="reader@example.com", interests="")
    paused = SubscriberFactory(email="paused@example.com", interests="", status="paused")
    edition = built_edition("daily")
    run("send_digests", "--subscriber", "reader@example.com")

    again = run("send_digests", "--subscriber", "reader@example.com", "--dry-run")
    not_active = run("send_digests", "--subscriber", "paused@example.com", "--dry-run")

    assert again == f"would send nothing to reader@example.com: the {edition} is already sent for them\n"
    assert not_active == "would send nothing to paused@example.com: paused, not active\n"
    assert Delivery.objects.get().subscriber == reader and paused.deliveries.count() == 0
    assert len(mailoutbox) == 1


def test_send_to_one_before_the_daily_job_sends_the_latest_edition_built_and_builds_none(mailoutbox):
    """Today's edition built before the job's fetch would hold nothing new, for good: an edition
    is built once. Asked for no day, the reader gets the latest edition there is."""
    SubscriberFactory(email="reader@example.com", interests="")
    with time_machine.travel(datetime(2026, 11, 16, 6, 0, tzinfo=UTC), tick=False):  # Monday's job
        monday = built_edition("daily")
    with time_machine.travel(datetime(2026, 11, 17, 3, 0, tzinfo=UTC), tick=False):  # Tuesday, before the job
        dry_run = run("send_digests", "--subscriber", "reader@example.com", "--dry-run")
        sent = run("send_digests", "--subscriber", "reader@example.com")
        again = run("send_digests", "--subscriber", "reader@example.com", "--dry-run")

    assert dry_run == "would send the latest daily edition to reader@example.com\n"
    assert sent == f"sent {monday} to reader@example.com\n"
    assert again == f"would send nothing to reader@example.com: the {monday} is already sent for them\n"
    assert list(Edition.objects.values_list("date", flat=True)) == [date(2026, 11, 16)]


def test_send_to_one_with_no_edition_yet_builds_todays(mailoutbox, bundled_only):
    from papers.services import fetch_from_source

    fetch_from_source("bundled")
    SubscriberFactory(email="reader@example.com", interests="")
    assert run("send_digests", "--subscriber", "reader@example.com").startswith("sent ")
    assert Edition.objects.get().date == timezone.localdate()


@pytest.mark.parametrize("typed", ["", "  ", "nobody@example.com"])
def test_send_to_an_unknown_or_empty_address_is_refused_and_sends_to_no_one(typed, mailoutbox):
    SubscriberFactory(interests="")
    built_edition("daily")

    with pytest.raises(CommandError, match=f"no subscriber '{typed}'"):
        run("send_digests", "--subscriber", typed)

    assert not Delivery.objects.exists() and mailoutbox == []


# --- `manage.py sending`: the switch that pauses all digest sending --------------------------


def test_sending_pause_status_and_resume_from_the_command_line():
    on = run("sending")
    paused = run("sending", "pause", "--reason", "the edition links 404", "--by", "alice")
    status = run("sending", "status")
    again = run("sending", "pause", "--reason", "me too", "--by", "bob")
    resumed = run("sending", "resume", "--by", "carol")

    switch = pause.the_switch()
    assert on == "Digest sending is on.\n"
    assert paused.startswith("Paused: digest sending paused since ") and "by alice (the edition links 404)" in paused
    assert status.startswith("Digest sending paused since ") and status.endswith("by alice (the edition links 404).\n")
    assert again.startswith("Already paused: ") and "by alice" in again
    after = run("sending")
    assert resumed.startswith("Digest sending resumed")
    assert after.startswith("Digest sending is on since ")
    assert after.endswith(" resumed by carol from the command line.\n")
    assert (switch.paused, switch.paused_by, switch.resumed_by) == (False, "alice", "carol")


def test_a_pause_from_the_command_line_needs_a_reason_and_names_the_system_user_by_default(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    with pytest.raises(CommandError, match="say why"):
        run("sending", "pause", "--reason", " ")
    assert not pause.sending_paused()

    run("sending", "pause", "--reason", "a broken edition")
    assert pause.current_pause().paused_by == "deploy"


def test_the_command_line_turns_are_kept_and_listed_newest_first_saying_where_they_were_made():
    never = run("sending", "history")
    with time_machine.travel(datetime(2026, 11, 18, 6, 5, tzinfo=UTC), tick=False):
        pause.pause_sending("alice", "a broken edition", via=SwitchTurn.Via.ADMIN)
    with time_machine.travel(datetime(2026, 11, 18, 7, 0, tzinfo=UTC), tick=False):
        run("sending", "resume", "--by", "bob")
    with time_machine.travel(datetime(2026, 11, 19, 6, 0, tzinfo=UTC), tick=False):
        run("sending", "pause", "--reason", "the ESP is down", "--by", "carol")
        run("sending", "pause", "--reason", "me too", "--by", "dave")
        pause.resume_sending("erin")

    assert never == "The switch has never been turned.\n"
    assert run("sending", "history").splitlines() == [
        "Thu 19 Nov 2026 06:00 resumed by erin",
        "Thu 19 Nov 2026 06:00 paused by carol from the command line (the ESP is down)",
        "Wed 18 Nov 2026 07:00 resumed by bob from the command line",
        "Wed 18 Nov 2026 06:05 paused by alice from the admin (a broken edition)",
    ]
    assert run("sending", "history", "--last", "1") == "Thu 19 Nov 2026 06:00 resumed by erin\n"
    assert run("sending", "status") == "Digest sending is on since Thu 19 Nov 2026 06:00 resumed by erin.\n"


@pytest.mark.parametrize("args", [["send_digests"], ["send_digests", "--subscriber", "reader@example.org"]])
def test_send_digests_is_refused_while_sending_is_paused(args, mailoutbox):
    SubscriberFactory(email="reader@example.org", interests="")
    built_edition("daily")
    pause.pause_sending("alice", "a broken edition")

    refusal = r"nothing sent: digest sending paused since .* by alice \(a broken edition\); resume it first"
    with pytest.raises(CommandError, match=refusal):
        run(*args)

    assert not Delivery.objects.exists() and mailoutbox == []


def test_a_dry_run_while_paused_counts_who_is_due_and_says_nothing_is_sent(mailoutbox):
    SubscriberFactory(email="reader@example.org", interests="")
    built_edition("daily")
    pause.pause_sending("alice", "a broken edition")

    everyone = run("send_digests", "--dry-run")
    one = run("send_digests", "--subscriber", "reader@example.org", "--dry-run")

    assert everyone.startswith("1 digest would be sent\nbut digest sending paused since ")
    assert everyone.endswith("by alice (a broken edition): nothing is sent until it is resumed\n")
    assert one.startswith("would send nothing to reader@example.org: digest sending paused since ")
    assert not Delivery.objects.exists() and mailoutbox == []
