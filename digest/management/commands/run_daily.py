from django.core.management.base import BaseCommand

from config.date_arguments import parse_day_up_to_today
from digest import services


class Command(BaseCommand):
    help = "The daily job: fetch papers, build the day's editions, send every due digest."

    def add_arguments(self, parser):
        parser.add_argument("--date", type=parse_day_up_to_today, help="YYYY-MM-DD, today or earlier (default: today)")

    def handle(self, *args, **options):
        summary = services.run_daily_job(options["date"])
        for source, outcome in (summary["fetched"] or {}).items():
            self.stdout.write(f"fetch {source}: {outcome}")
        for edition in summary["editions"]:
            self.stdout.write(f"edition: {edition}")
        self.stdout.write(f"digests handed to the sender: {summary['enqueued']}")
