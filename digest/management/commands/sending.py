"""Pause all digest sending (an emergency stop), resume it, or say whether it is paused."""

from django.core.management.base import BaseCommand, CommandError

from digest import pause

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
        actions = parser.add_subparsers(dest="action", metavar="{status,pause,resume}")
        actions.add_parser("status", help="Whether digest sending is paused, since when, by whom and why.")
        paused = actions.add_parser("pause", help="Pause all digest sending until resumed.")
        paused.add_argument("--reason", required=True, help="Why: shown on the dashboard and the admin's switch.")
        paused.add_argument("--by", help="Who pauses (default: the system user).")
        resumed = actions.add_parser("resume", help="Resume digest sending.")
        resumed.add_argument("--by", help="Who resumes (default: the system user).")

    def handle(self, *args, action=None, **options):
        if action == "pause":
            return self.pause(operator(options), options["reason"])
        if action == "resume":
            return self.resume(operator(options))
        return self.status()

    def pause(self, by, reason):
        if not reason.strip():
            raise CommandError("say why sending is paused (--reason)")
        switch, paused = pause.pause_sending(by, reason)
        if not paused:
            self.stdout.write(f"Already paused: {pause.summary(switch)}.")
            return
        self.stdout.write(f"Paused: {pause.summary(switch)}. Send tasks stop before their next block of "
                          "readers; a batch already posted is not recalled. Resume with `manage.py sending resume`.")

    def resume(self, by):
        resumed = pause.resume_sending(by)[1]
        self.stdout.write(RESUMED if resumed else "Digest sending was not paused.")

    def status(self):
        switch = pause.current_pause()
        self.stdout.write(f"{pause.headline(switch)}." if switch else "Digest sending is on.")


def operator(options):
    return options.get("by") or pause.operator_on_the_command_line()
