"""Builders for digest tests: an edition with papers, ready to send."""

from datetime import timedelta

from django.utils import timezone

from digest.editions import get_or_build_edition
from tests.factories import PaperFactory

TOPICS = [
    ("Denoising diffusion models for image generation", "We train diffusion models that generate images."),
    ("Scaling reinforcement learning from human feedback", "RLHF aligns large language models with preferences."),
    ("Graph neural networks for molecules", "Message passing graph neural networks predict molecular properties."),
    ("Robot manipulation with world models", "A robot learns manipulation skills with a learned world model."),
    ("Efficient attention for long context language models", "Sparse attention lets language models read long documents."),
]


def papers_on_topics(count=len(TOPICS), **overrides):
    now = timezone.now()
    papers = []
    for i in range(count):
        title, abstract = TOPICS[i % len(TOPICS)]
        papers.append(
            PaperFactory(
                title=title if i < len(TOPICS) else f"{title} ({i})",
                abstract=abstract,
                first_seen_at=now - timedelta(minutes=5 + i),
                published_at=now - timedelta(hours=i + 1),
                upvotes=10 * (count - i),
                **overrides,
            )
        )
    return papers


def built_edition(cadence="daily", day=None, papers=None):
    if papers is None:
        papers_on_topics()
    edition, _ = get_or_build_edition(cadence, day or timezone.localdate())
    return edition
