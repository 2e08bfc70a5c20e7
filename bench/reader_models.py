"""Readers with a model: how long one reader's logistic regression takes to build, fit and apply.

Run by hand from the repository root: ``.venv/bin/python bench/reader_models.py [--readers 300]``.
It ranks the bundled corpus's 415 papers as one edition (no database: the papers are
built in memory), gives each reader 1–4 interest phrases, 5–8 liked papers, 0–2 disliked
and 0–15 ignored ones (some from outside the edition), and times
``EditionRanker.model_probability`` for every reader, best of five passes: as it runs
(the rows joined through a mask, liblinear called directly: ``digest.reader_models``), with
the same rows fitted through ``LogisticRegression``, and a plain baseline (the rows stacked
and cut with scipy's indexing, then ``LogisticRegression``, as the ranker did before). It
checks that all three give the same probabilities.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHRASES = [
    "large language models", "reasoning", "diffusion models", "image generation", "robotics", "agents",
    "retrieval augmented generation", "code generation", "multimodal", "speech recognition", "world models",
    "quantization", "efficient inference", "long context", "reward models", "benchmark",
]
PASSES = 5


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()


def edition_ranker():
    from django.utils import timezone

    from digest.ranking import Candidate, EditionRanker
    from papers.models import Paper
    from papers.sources.bundled import CORPUS_PATH

    with open(CORPUS_PATH, encoding="utf-8") as corpus:
        items = [json.loads(line) for line in corpus]
    papers = [
        Paper(pk=pk, arxiv_id=f"2611.{pk:05d}", title=item["title"], abstract=item["abstract"],
              first_seen_at=timezone.now())
        for pk, item in enumerate(items, start=1)
    ]
    inside, outside = papers[:-40], papers[-40:]  # the last 40 stand for papers of earlier editions
    ranker = EditionRanker([Candidate(p, float(item.get("upvotes") or 0), "trending")
                            for p, item in zip(inside, items)])
    return ranker, inside, outside


def readers(count, inside, outside, rng):
    from subscriptions.models import Subscriber

    for n in range(count):
        voted = rng.sample(inside, rng.randint(10, 20)) + rng.sample(outside, 3)
        rng.shuffle(voted)
        liked = voted[: rng.randint(5, 8)]
        rest = voted[len(liked):]
        reader = Subscriber(pk=n + 1, email=f"reader{n}@example.org", categories=[],
                            interests=", ".join(rng.sample(PHRASES, rng.randint(1, 4))))
        yield reader, liked, rest[: rng.randint(0, 2)], rest[2: 2 + rng.randint(0, 15)]


def plain_model_probability(ranker, reader, liked, disliked, ignored):
    """The baseline: the same model, its rows stacked and cut with scipy, fitted by the estimator."""
    import numpy as np
    from scipy import sparse
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    from digest.ranking import IGNORED_WEIGHT, MODEL_C, UNLABELLED_WEIGHT, interest_terms

    voted_on = np.array([p.pk for p in (*liked, *disliked, *ignored)])
    unlabelled = np.flatnonzero(~np.isin(ranker.pks, voted_on))
    positives = ranker.paper_rows(liked) + ranker.text_rows(interest_terms(reader))
    labelled = sparse.vstack(positives + ranker.paper_rows([*disliked, *ignored])).tocsr()
    terms = np.unique(labelled[: len(positives)].nonzero()[1])
    candidates = ranker.paper_columns[:, terms].tocsr().astype(np.float64)
    features = sparse.vstack([labelled[:, terms], candidates[unlabelled]]).tocsr().astype(np.float64)
    labels = np.r_[np.ones(len(positives)), np.zeros(features.shape[0] - len(positives))]
    weights = np.r_[np.ones(len(positives) + len(disliked)), np.full(len(ignored), IGNORED_WEIGHT),
                    np.full(len(unlabelled), UNLABELLED_WEIGHT)]
    weights[labels == 0] *= weights[labels == 1].sum() / weights[labels == 0].sum()
    model = LogisticRegression(C=MODEL_C, solver="liblinear").fit(features, labels, sample_weight=weights)
    return expit(candidates @ model.coef_[0] + model.intercept_[0])


def timed(model_probability, requests):
    """(seconds per reader, best of PASSES; the probabilities of the last pass)."""
    best = float("inf")
    for _ in range(PASSES):
        started = time.perf_counter()
        results = [model_probability(*request) for request in requests]
        best = min(best, time.perf_counter() - started)
    return best / len(requests), results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=300)
    args = parser.parse_args()
    setup_django()
    import numpy as np

    from digest import reader_models

    ranker, inside, outside = edition_ranker()
    requests = list(readers(args.readers, inside, outside, random.Random(11)))
    assert reader_models.direct_fit_works(), "liblinear's entry point does not fit as the estimator does"
    direct, direct_results = timed(ranker.model_probability, requests)
    plain, plain_results = timed(lambda *request: plain_model_probability(ranker, *request), requests)
    reader_models.direct_fit_works = lambda: False
    estimator, estimator_results = timed(ranker.model_probability, requests)
    same = all(np.array_equal(a, b) and np.array_equal(a, c)
               for a, b, c in zip(direct_results, estimator_results, plain_results))
    print(f"{len(requests)} readers with a model, an edition of {len(inside)} papers, best of {PASSES} passes")
    print(f"as the ranker runs (liblinear called directly):  {direct * 1e3:6.2f} ms per reader")
    print(f"the same rows through LogisticRegression:         {estimator * 1e3:6.2f} ms per reader")
    print(f"plain (scipy's stacking, LogisticRegression):     {plain * 1e3:6.2f} ms per reader")
    print(f"same probabilities: {'yes' if same else 'NO'}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
