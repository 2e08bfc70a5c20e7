import sys

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import pluralize
from tqdm import tqdm

from config.date_arguments import parse_day_up_to_today
from digest import pause, services
from digest.sending import TransientSendError
from subscriptions.models import Subscriber


class Command(BaseCommand):
    help = (
        "Send the digests due now (or for --date), or with --subscriber the latest edition "
        "of that subscriber's cadence at once. Never twice per subscriber and edition. "
        "Refused while digest sending is paused (manage.py sending)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--date", type=parse_day_up_to_today, help="YYYY-MM-DD, today or earlier (default: today)")
        parser.add_argument("--subscriber", metavar="EMAIL")
        parser.add_argument("--dry-run", action="store_true", help="Count who is due; send nothing.")

    def handle(self, *args, **options):
        if not options["dry_run"]:
            refuse_while_paused()
        if options["subscriber"] is not None:  # an empty address is refused, not read as "everyone due"
            return self.send_to_one(options["subscriber"], options["date"], options["dry_run"])
        progress = tqdm(desc="digests", unit="digest", disable=not sys.stdout.isatty())
        count = services.enqueue_due_digests(
            services.moment_for(options["date"]), dry_run=options["dry_run"], progress=progress
        )
        progress.close()
        verb = "would be sent" if options["dry_run"] else "handed to the sender"
        self.stdout.write(f"{count} digest{pluralize(count)} {verb}")
        if options["dry_run"] and (switch := pause.current_pause()) is not None:
            self.stdout.write(f"but {pause.summary(switch)}: nothing is sent until it is resumed")

    def send_to_one(self, typed_email, day, dry_run):
        """Addresses match in any case: the output names the address as stored, the one mailed."""
        subscriber = Subscriber.objects.with_email(typed_email.strip()).first()
        if subscriber is None:
            raise CommandError(f"no subscriber {typed_email!r}")
        email = subscriber.email
        if dry_run:
            refusal = services.why_not_send_now(subscriber, day)
            if refusal:
                self.stdout.write(f"would send nothing to {email}: {refusal}")
            else:
                self.stdout.write(f"would send the latest {subscriber.frequency} edition to {email}")
            return
        try:
            edition, report = services.send_digest_now(subscriber, day)
        except TransientSendError as exc:
            raise CommandError(f"the ESP did not take the message; retry later ({exc})") from exc
        if report.sent:
            self.stdout.write(f"sent {edition} to {email}")
        elif report.skipped:
            self.stdout.write(f"skipped {edition} for {email}: nothing passed the relevance threshold")
        else:
            self.stdout.write(f"{edition}: already handled for {email} (status unchanged), or not active")


def refuse_while_paused():
    try:
        pause.refuse_while_paused()
    except pause.SendingPaused as refusal:
        raise CommandError(f"nothing sent: {refusal} (manage.py sending resume)") from refusal
