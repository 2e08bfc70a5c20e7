"""Pause all digest sending (an emergency stop), resume it, say whether it is paused, or list the
switch's last turns."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from digest import pause
from digest.models import SwitchTurn

RESUMED = (
    "Digest sending resumed: the beat's next tick hands out every digest still due, and the readers "
    "left pending by the pause once 15 minutes have passed since their claim."
)


class Command(BaseCommand):
    help = (
        "Pause all digest sending at once, for every worker (the beat enqueues nothing and send tasks "
        "stop before their next block of readers), resume it, or say whether it is paused (the default)."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", metavar="{status,pause,resume,history}")
        actions.add_parser(
            "status", help="Whether digest sending is paused, since when, by whom and why (or since when it is on)."
        )
        paused = actions.add_parser("pause", help="Pause all digest sending until resumed.")
        paused.add_argument("--reason", required=True, help="Why: shown on the dashboard and the admin's switch.")
        paused.add_argument("--by", help="Who pauses (default: the system user).")
        resumed = actions.add_parser("resume", help="Resume digest sending.")
        resumed.add_argument("--by", help="Who resumes (default: the system user).")
        history = actions.add_parser("history", help="The switch's last turns, newest first.")
        history.add_argument("--last", type=int, default=10, help="How many turns (default: 10).")

    def handle(self, *args, action=None, **options):
        if action == "pause":
            return self.pause(operator(options), options["reason"])
        if action == "resume":
            return self.resume(operator(options))
        if action == "history":
            return self.history(options["last"])
        return self.status()

    def pause(self, by, reason):
        if not reason.strip():
            raise CommandError("say why sending is paused (--reason)")
        switch, paused = pause.pause_sending(by, reason, via=SwitchTurn.Via.COMMAND_LINE)
        if not paused:
            self.stdout.write(f"Already paused: {pause.summary(switch)}.")
            return
        self.stdout.write(f"Paused: {pause.summary(switch)}. Send tasks stop before their next block of "
                          "readers; a batch already posted is not recalled. Resume with `manage.py sending resume`.")

    def resume(self, by):
        resumed = pause.resume_sending(by, via=SwitchTurn.Via.COMMAND_LINE)[1]
        self.stdout.write(RESUMED if resumed else "Digest sending was not paused.")

    def status(self):
        switch = pause.current_pause()
        if switch is not None:
            self.stdout.write(f"{pause.headline(switch)}.")
            return
        last = pause.recent_turns(1)
        self.stdout.write(f"Digest sending is on since {describe(last[0])}." if last else "Digest sending is on.")

    def history(self, last):
        turns = pause.recent_turns(max(last, 1))
        if not turns:
            self.stdout.write("The switch has never been turned.")
        for turn in turns:
            self.stdout.write(describe(turn))


def describe(turn):
    """'Wed 18 Nov 2026 06:05 paused by alice from the command line (a broken edition)'."""
    at = timezone.localtime(turn.at)
    text = f"{at:%a %d %b %Y %H:%M} {turn.action} by {turn.by}"
    if turn.via != SwitchTurn.Via.OTHER:
        text += f" from {turn.get_via_display()}"
    return f"{text} ({turn.reason})" if turn.reason else text


def operator(options):
    return options.get("by") or pause.operator_on_the_command_line()
