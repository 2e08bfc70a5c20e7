import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from digest import services
from digest.models import Cadence

TITLE_WIDTH = 70


class Command(BaseCommand):
    help = (
        "Print what a subscriber with these interests would get, best first, with scores and "
        "reasons: for tuning the ranking. The send threshold does not apply."
    )

    def add_arguments(self, parser):
        parser.add_argument("--like", action="append", default=[], metavar="TITLE_OR_ID",
                            help="a paper they liked (arXiv id, id, title or a unique part of it); repeatable")
        parser.add_argument("--interests", default="", help='free text, comma separated: "diffusion, RLHF"')
        parser.add_argument("--category", action="append", default=[], metavar="CATEGORY",
                            help="an arXiv category such as cs.LG; repeatable")
        parser.add_argument("--pool", choices=["edition", "all"], default="edition",
                            help="the latest edition (default) or every paper")
        parser.add_argument("--cadence", choices=Cadence.values, default=Cadence.DAILY,
                            help="which edition --pool edition means (default: daily)")
        parser.add_argument("--limit", type=int, default=10)
        parser.add_argument("--json", action="store_true", help="print a JSON list, best first")

    def handle(self, *args, **options):
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        unknown = [code for code in options["category"] if code not in settings.ARXIV_CATEGORIES]
        if unknown:
            raise CommandError(
                f"unknown category {', '.join(unknown)}: readers choose among ARXIV_CATEGORIES "
                f"({', '.join(settings.ARXIV_CATEGORIES)})"
            )
        try:
            liked = [services.find_paper(reference) for reference in options["like"]]
        except services.UnknownPaper as exc:
            raise CommandError(str(exc)) from exc
        ranked = services.recommend(
            interests=options["interests"], categories=options["category"], liked=liked,
            pool=options["pool"], cadence=options["cadence"], limit=options["limit"],
        )
        if options["json"]:
            rows = [as_dict(rank, r) for rank, r in enumerate(ranked, start=1)]
            self.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False))
        else:
            self.write_table(ranked)

    def write_table(self, ranked):
        if not ranked:
            self.stdout.write("The pool is empty: no paper to recommend.")
        for rank, r in enumerate(ranked, start=1):
            title = r.paper.title if len(r.paper.title) <= TITLE_WIDTH else r.paper.title[: TITLE_WIDTH - 1] + "…"
            self.stdout.write(f"{rank:>2}. {r.score:.3f}  {title}")
            self.stdout.write(f"      relevance {r.relevance:.3f} · trending {r.trending:.3f} · {r.paper.arxiv_id}")
            self.stdout.write(f"      why: {r.reason}")


def as_dict(rank, ranked):
    return {
        "rank": rank,
        "arxiv_id": ranked.paper.arxiv_id,
        "title": ranked.paper.title,
        "score": round(ranked.score, 4),
        "relevance": round(ranked.relevance, 4),
        "trending": round(ranked.trending, 4),
        "reason": ranked.reason,
        "url": ranked.paper.hf_url or ranked.paper.arxiv_url,
    }
