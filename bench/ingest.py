"""Ingestion benchmark: parse and upsert a 2,000-entry arXiv feed and a 500-item
Hugging Face response into a throwaway PostgreSQL, then re-import both unchanged.

Run by hand from the repository root: ``.venv/bin/python bench/ingest.py``.
Targets (2-core machine): arXiv first import < 3 s, unchanged re-import < 1 s.
The feeds are generated here; nothing touches the network. ``--latex-share 0.3`` writes
LaTeX into that share of the arXiv entries, as arXiv's authors do (inline math, accents,
text styles), each entry's pieces its own: what making them readable costs at import.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARXIV_ENTRIES = 2000
HF_ITEMS = 500
ROUNDS = 3  # each round starts from empty tables; the median round is reported
TARGETS = {"arxiv first import": 3.0, "arxiv re-import": 1.0}
WORDS = (
    "learning model language diffusion transformer attention sparse graph neural "
    "reinforcement policy reward vision benchmark scaling robust efficient agent "
    "retrieval reasoning alignment token expert mixture contrastive latent"
).split()
NAMES = [
    "Zoë Müller",
    "Jiří Novák",
    "李明",
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Søren Kierkegaard",
    "Émilie du Châtelet",
    "Ngũgĩ wa Thiong'o",
    "Yann Example",
]
CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML"]


def words(rng, count):
    return " ".join(rng.choice(WORDS) for _ in range(count))


def arxiv_id(n):
    return f"2501.{10000 + n:05d}"


def authors(rng, n):
    return [f"{rng.choice(NAMES)} {n % 97}-{k}" for k in range(rng.randint(2, 8))]


ENTRY = """  <entry>
    <id>http://arxiv.org/abs/{id}v{version}</id>
    <updated>2025-01-15T10:00:00Z</updated>
    <published>2025-01-14T10:00:00Z</published>
    <title>{title}</title>
    <summary>{abstract}</summary>
{authors}    <arxiv:comment>{pages} pages, {figures} figures</arxiv:comment>
    <link href="http://arxiv.org/abs/{id}v{version}" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/{id}v{version}" rel="related"
          type="application/pdf"/>
    <arxiv:primary_category term="{primary}" scheme="http://arxiv.org/schemas/atom"/>
{categories}  </entry>
"""
FEED = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom"
      xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">
  <title type="html">ArXiv Query: benchmark</title>
  <id>http://arxiv.org/api/benchmark</id>
  <updated>2025-01-16T00:00:00-05:00</updated>
  <opensearch:totalResults>{count}</opensearch:totalResults>
{entries}</feed>
"""


def latex_pieces(rng):
    """LaTeX as arXiv abstracts carry it, with numbers that make most pieces unlike any other."""
    return [
        f"$\\mathcal{{O}}(n^{{{rng.randint(2, 99)}}} \\log n)$",
        f"$\\ell_{{{rng.randint(1, 99)}}}$-regularised",
        f"$\\epsilon = 10^{{-{rng.randint(2, 99)}}}$",
        rng.choice(["Erd\\H{o}s", "Schr\\\"odinger", "Poincar\\'e", "{\\L}ojasiewicz"]),
        rng.choice(["$\\alpha$-divergence", "$\\epsilon$-greedy", f"$k \\geq {rng.randint(2, 99)}$", "$\\ell_1$"]),
        f"{{\\em {rng.choice(WORDS)}}} by {rng.randint(2, 60)}\\%",
    ]


def arxiv_entry(rng, n, latex_share=0.0):
    title = words(rng, 12).capitalize()
    abstract = "\n".join(words(rng, 14) for _ in range(10))
    if rng.random() < latex_share:
        title = f"$\\alpha_{{{rng.randint(1, 99)}}}$-{title}"
        abstract = f"{abstract} {' '.join(latex_pieces(rng))}"
    primary, *others = rng.sample(CATEGORIES, rng.randint(1, 3))
    return ENTRY.format(
        id=arxiv_id(n),
        version=1 + n % 3,
        title=escape(title[:40] + "\n  " + title[40:]),  # arXiv wraps long titles
        abstract=escape(abstract),
        authors="".join(
            f"    <author><name>{escape(a)}</name></author>\n" for a in authors(rng, n)
        ),
        pages=rng.randint(8, 40),
        figures=rng.randint(1, 12),
        primary=primary,
        categories="".join(
            f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>\n'
            for c in [primary, *others]
        ),
    )


def arxiv_feed(count, seed=1, latex_share=0.0):
    rng = random.Random(seed)
    entries = "".join(arxiv_entry(rng, n, latex_share) for n in range(count))
    return FEED.format(count=count, entries=entries).encode()


def hf_response(count, seed=2):
    """Half the items are papers of the arXiv feed (they merge), half are new."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        key = arxiv_id(n * 2) if n % 2 == 0 else f"2502.{n:05d}"
        items.append(
            {
                "paper": {
                    "id": key,
                    "authors": [{"name": a, "hidden": False} for a in authors(rng, n)],
                    "publishedAt": "2025-01-14T10:00:00.000Z",
                    "title": words(rng, 10).capitalize(),
                    "summary": words(rng, 120),
                    "upvotes": rng.randint(0, 300),
                    "ai_summary": words(rng, 20),
                    "ai_keywords": rng.sample(WORDS, 4),
                    "githubRepo": f"https://github.com/example/repo-{n}",
                    "githubStars": rng.randint(0, 5000),
                    "organization": {"name": "lab", "fullname": "Example Lab"},
                },
                "title": "",
                "numComments": rng.randint(0, 20),
                "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{key}.png",
            }
        )
    return json.dumps(items).encode()


def start_database():
    from tests.servers import PostgresServer

    server = PostgresServer().start()
    os.environ["DATABASE_URL"] = server.create_database("bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # the skipped-item warnings are not the point here
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return server


def timed(label, source, payload):
    """Parse + upsert one payload; returns (label, seconds, queries, result)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from papers.ingest import store_batch

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        batch = source.parse(payload)
        parsed = time.perf_counter()
        result = store_batch(batch.records, source)
        finished = time.perf_counter()
    return {
        "label": label,
        "items": len(batch.records),
        "parse": parsed - started,
        "store": finished - parsed,
        "total": finished - started,
        "queries": len(queries),
        "result": f"{result.created} new, {result.updated} updated, {result.unchanged} unchanged",
    }


def empty_tables():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE papers_paper, papers_author, papers_authorship, papers_papersignal "
            "RESTART IDENTITY CASCADE"
        )


def one_round(arxiv_payload, hf_payload):
    from papers.sources.arxiv import ArxivApiSource
    from papers.sources.huggingface import HuggingFaceApiSource
    from papers.sources.latex import converted, is_symbol

    arxiv, hf = ArxivApiSource(), HuggingFaceApiSource()
    empty_tables()
    converted.cache_clear()  # each round's first import reads its LaTeX afresh
    is_symbol.cache_clear()
    return [
        timed("arxiv first import", arxiv, arxiv_payload),
        timed("arxiv re-import", arxiv, arxiv_payload),
        timed("hf first import", hf, hf_payload),  # half of it merges into arXiv rows
        timed("hf re-import", hf, hf_payload),
    ]


def median_runs(rounds):
    """Per scenario, the run with the median total time."""
    return [
        sorted(runs, key=lambda run: run["total"])[len(runs) // 2]
        for runs in zip(*rounds, strict=True)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latex-share", type=float, default=0.0, metavar="SHARE",
                        help="share of the arXiv entries whose title and abstract carry LaTeX (default 0)")
    options = parser.parse_args()
    arxiv_payload = arxiv_feed(ARXIV_ENTRIES, latex_share=options.latex_share)
    hf_payload = hf_response(HF_ITEMS)
    server = start_database()
    try:
        runs = median_runs([one_round(arxiv_payload, hf_payload) for _ in range(ROUNDS)])
    finally:
        server.stop()
    print(
        f"arXiv feed: {ARXIV_ENTRIES} entries ({options.latex_share:.0%} with LaTeX), "
        f"{len(arxiv_payload) / 1e6:.1f} MB; "
        f"HF response: {HF_ITEMS} items, {len(hf_payload) / 1e6:.1f} MB; "
        f"median of {ROUNDS} rounds on PostgreSQL"
    )
    columns = ("items", "parse s", "store s", "total s", "queries")
    print(f"{'run':<20} " + " ".join(f"{c:>8}" for c in columns) + "  result")
    failed = False
    for run in runs:
        target = TARGETS.get(run["label"])
        verdict = ""
        if target:
            verdict = f"  (target < {target:g} s: {'ok' if run['total'] < target else 'MISSED'})"
            failed |= run["total"] >= target
        print(
            f"{run['label']:<20} {run['items']:>8} {run['parse']:>8.2f} {run['store']:>8.2f} "
            f"{run['total']:>8.2f} {run['queries']:>8}  {run['result']}{verdict}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
