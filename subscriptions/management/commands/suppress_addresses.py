import sys
from collections import Counter

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import pluralize

from subscriptions import services
from subscriptions.validation import normalise_email

REASONS = ("bounced", "complained", "suppressed")


class Command(BaseCommand):
    help = (
        "Never email the addresses listed in FILE (one a line; standard input without FILE or with '-') "
        "again: the bounces an SMTP relay reports by email, which no ESP webhook brings in. A subscriber's "
        "status becomes the reason; an address nobody subscribed goes on the suppression list."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument(
            "file", nargs="?", default="-", help="one address a line; blank lines and # comments are skipped"
        )
        parser.add_argument("--reason", choices=REASONS, default="bounced")

    def handle(self, *args, **options):
        reason = options["reason"]
        counts = Counter()
        for number, line in enumerate(self.lines(options["file"], options.get("stdin")), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                counts[services.suppress_address(normalise_email(text), reason)] += 1
            except ValidationError:
                self.stderr.write(f"line {number}: not an address, skipped: {text!r}")
        changed, unchanged, listed = (counts[result] for result in services.AddressSuppressed)
        self.stdout.write(
            f"{changed} subscriber{pluralize(changed)} suppressed ({reason}), {unchanged} already "
            f"suppressed, {listed} address{pluralize(listed, 'es')} without a subscriber put on the suppression list"
        )

    def lines(self, path, stdin):
        """Every line, read before anything is suppressed: a file that cannot be read changes nothing."""
        if path == "-":
            try:
                return list(stdin or sys.stdin)
            except UnicodeDecodeError:
                raise CommandError("cannot read standard input: not UTF-8") from None
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            return data.decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise CommandError(f"cannot read {path}: not UTF-8 (line {line})") from None
