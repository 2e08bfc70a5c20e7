"""The operator's switch that pauses all digest sending: the beat's tick enqueues nothing, a
running send task stops before its next block of readers and is not retried, an operator's
sends are refused, and after the resume each reader still due gets the edition exactly once."""

import pytest

from digest import pause

pytestmark = pytest.mark.django_db


def paused(reason="a broken edition"):
    return pause.pause_sending("alice", reason)[0]


# --- The switch ---------------------------------------------------------------


def test_pausing_records_who_when_and_why_and_a_second_pause_keeps_the_first():
    first, paused_now = pause.pause_sending("alice", "  a broken edition ")
    again, paused_again = pause.pause_sending("bob", "something else")

    assert paused_now and not paused_again
    assert (again.paused_by, again.reason, again.paused_at) == ("alice", "a broken edition", first.paused_at)
    assert pause.current_pause() == first and pause.sending_paused()


def test_resuming_turns_sending_back_on_once_and_remembers_who():
    paused()

    switch, resumed = pause.resume_sending("bob")

    assert resumed and not pause.resume_sending("carol")[1]
    assert (switch.paused, switch.resumed_by) == (False, "bob")
    assert pause.current_pause() is None and not pause.sending_paused()


def test_a_pause_needs_a_reason():
    with pytest.raises(ValueError, match="say why"):
        pause.pause_sending("alice", "   ")
    assert not pause.sending_paused()
