"""The operator's switch that pauses all digest sending, and resumes it: an emergency stop.

One row (``SendingPause``), shared by every worker and kept across restarts, says whether
sending is paused, since when, by whom and why; each turn of the switch is kept as a
``SwitchTurn``, whether it was made in the admin or on the command line. While it is paused:

- the beat's tick claims and hands out nothing, and says so once per tick; it still settles
  finished ESP calls and reconciles stale sends (``services.enqueue_due_digests``);
- a send task asks before each block of ``sending.READ_BLOCK_SIZE`` readers (one query on this
  one-row table, never one per reader) and stops there. Whatever it has not handed to the ESP
  stays ``pending``, and the task ends without a retry: a retry would only find sending paused
  again and spend the task's retries. The ticks after the resume hand those rows out again
  (``services.requeue_orphaned``, once 15 minutes have passed since their claim). An ESP call
  already made, or handed to a batch thread, is not recalled;
- an operator's sends are refused (``refuse_while_paused``): ``send_digests``, with or without
  ``--subscriber``, the admin's preview email and its resend of a failed delivery.

Resuming changes nothing else: the beat's next tick claims the readers still due and hands out
again the rows left pending, and the ledger's claims send each reader at most once.
"""

import getpass
import logging

from django.db import transaction
from django.utils import timezone

from .models import SendingPause, SwitchTurn

log = logging.getLogger(__name__)


class SendingPaused(Exception):
    """An operator's send refused while digest sending is paused (the message says since when,
    by whom and why)."""


def current_pause():
    """The switch while sending is paused, else None."""
    return SendingPause.objects.filter(paused=True).first()


def sending_paused():
    """Whether sending is paused: what a send task asks before each block of readers."""
    return SendingPause.objects.filter(paused=True).exists()


def pause_sending(by, reason, via=SwitchTurn.Via.OTHER):
    """Pause all digest sending. Returns the switch and whether this call paused it: a pause
    already in force is kept as it is (its time, operator and reason), and no turn is recorded.
    ``via`` says where the operator turned the switch (the admin, the command line)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("say why sending is paused")
    with transaction.atomic():
        switch = locked_switch()
        if switch.paused:
            return switch, False
        switch.paused, switch.paused_at = True, timezone.now()
        switch.paused_by, switch.reason = by[:150], reason[:300]
        switch.save()
        record_turn(switch, via)
    log.warning("digest sending paused by=%s reason=%s", switch.paused_by, switch.reason)
    return switch, True


def resume_sending(by, via=SwitchTurn.Via.OTHER):
    """Resume digest sending. Returns the switch and whether this call resumed it."""
    with transaction.atomic():
        switch = locked_switch()
        if not switch.paused:
            return switch, False
        switch.paused, switch.resumed_at, switch.resumed_by = False, timezone.now(), by[:150]
        switch.save()
        record_turn(switch, via)
    log.warning("digest sending resumed by=%s after %s paused", switch.resumed_by,
                switch.resumed_at - switch.paused_at)
    return switch, True


def record_turn(switch, via):
    """Keep the turn just made to ``switch`` in its history, with the switch's own time and names."""
    if switch.paused:
        SwitchTurn.objects.create(at=switch.paused_at, paused=True, by=switch.paused_by, via=via, reason=switch.reason)
    else:
        SwitchTurn.objects.create(at=switch.resumed_at, paused=False, by=switch.resumed_by, via=via)


def recent_turns(count=10):
    """The switch's last ``count`` turns, newest first."""
    return list(SwitchTurn.objects.all()[:count])


def the_switch():
    """The switch's row, made on first use (off)."""
    return SendingPause.objects.get_or_create(pk=SendingPause.ONE)[0]


def locked_switch():
    """The switch's row, locked until the end of the caller's transaction: two operators turning
    it at once turn it one after the other."""
    the_switch()
    return SendingPause.objects.select_for_update().get(pk=SendingPause.ONE)


def summary(switch):
    """'digest sending paused since Wed 18 Nov 06:05 by alice (a broken edition)'."""
    since = timezone.localtime(switch.paused_at)
    return f"digest sending paused since {since:%a %d %b %H:%M} by {switch.paused_by} ({switch.reason})"


def headline(switch):
    """``summary`` as a sentence of its own: 'Digest sending paused since …'."""
    text = summary(switch)
    return text[:1].upper() + text[1:]


def refuse_while_paused():
    """Raise ``SendingPaused`` while sending is paused: an operator's send goes nowhere then."""
    switch = current_pause()
    if switch is not None:
        raise SendingPaused(f"{summary(switch)}; resume it first")


def held_back_since(moment):
    """Whether the pause may have held back rows pending since ``moment``: sending is paused, or
    was resumed after ``moment``."""
    switch = SendingPause.objects.filter(pk=SendingPause.ONE).first()
    if switch is None:
        return False
    return switch.paused or (switch.resumed_at is not None and switch.resumed_at > moment)


def operator_on_the_command_line():
    """Who turns the switch from ``manage.py sending`` when not said (``--by``): the system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for the process's user id (a container)
        return "manage.py"
