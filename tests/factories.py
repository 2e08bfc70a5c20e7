"""Small builders for the suite (factory_boy)."""

import factory
from django.utils import timezone

from digest.models import Cadence, Edition
from papers.models import Paper
from subscriptions.models import Subscriber


class PaperFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Paper

    arxiv_id = factory.Sequence(lambda n: f"2611.{n:05d}")
    title = factory.Sequence(lambda n: f"A study of learning systems, part {n}")
    abstract = "We study how models learn. Our results show gains on benchmarks."
    author_names = factory.LazyFunction(lambda: ["Ada Lovelace", "Alan Turing"])
    organization = "Example Lab"
    published_at = factory.LazyFunction(timezone.now)
    source = "test"
    arxiv_url = factory.LazyAttribute(lambda p: f"https://arxiv.org/abs/{p.arxiv_id}")
    pdf_url = factory.LazyAttribute(lambda p: f"https://arxiv.org/pdf/{p.arxiv_id}")


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber

    email = factory.Sequence(lambda n: f"reader{n}@example.org")
    status = Subscriber.Status.ACTIVE
    interests = "diffusion models"
    confirmed_at = factory.LazyFunction(timezone.now)
    send_hour = 0


class EditionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Edition

    cadence = Cadence.DAILY
    date = factory.LazyFunction(lambda: timezone.localdate())


class PaperSignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "papers.PaperSignal"

    paper = factory.SubFactory(PaperFactory)
    date = factory.LazyFunction(lambda: timezone.localdate())
    upvotes = 10
    num_comments = 1
    github_stars = 5


class FetchRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "papers.FetchRun"

    source = "hf"
    status = "ok"
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda run: run.started_at)
    created = 12
    updated = 3
    unchanged = 40
