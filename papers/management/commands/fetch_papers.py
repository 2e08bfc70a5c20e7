from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from config.date_arguments import parse_day
from papers.services import fetch_from_source
from papers.sources import source_names
from papers.sources.base import SourceError, printable


class ProgressBars:
    """One tqdm bar per stage ("download", "store"), shown only on a terminal."""

    def __init__(self, stream):
        self.enabled = stream.isatty()
        self.bars = {}

    def __call__(self, stage, done, total):
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(desc=stage, total=total, unit="paper", leave=False)
        if total is not None:
            bar.total = total
        bar.update(done - bar.n)

    def close(self):
        for bar in self.bars.values():
            bar.close()


class Command(BaseCommand):
    help = "Fetch papers from one source (or replay a saved response) into the database."

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, choices=source_names())
        parser.add_argument("--date", type=parse_day, help="YYYY-MM-DD (default: the latest)")
        parser.add_argument(
            "--category",
            dest="categories",
            nargs="+",
            action="extend",
            metavar="CATEGORY",
            help="arXiv categories, e.g. cs.LG cs.CL (default: settings.ARXIV_CATEGORIES)",
        )
        parser.add_argument(
            "--from-file", metavar="PATH", help="Replay a saved response instead of fetching."
        )

    def handle(self, *args, **options):
        progress = ProgressBars(self.stdout)
        try:
            report = fetch_from_source(
                options["source"],
                date=options["date"],
                categories=options["categories"],
                from_file=options["from_file"],
                on_progress=progress,
            )
        except SourceError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            progress.close()
        self.stdout.write(report.summary())
        for key, reason in report.skipped:
            self.stdout.write(f"  skipped {printable(key)}: {printable(reason)}")
        for key, name, reason in report.dropped:
            self.stdout.write(f"  dropped {printable(key)} {name}: {printable(reason)}")
