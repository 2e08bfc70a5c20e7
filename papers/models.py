"""Papers, their authors and their daily trending signals."""

from django.db import models
from django.utils import timezone


class Author(models.Model):
    name = models.CharField(max_length=300, unique=True)

    def __str__(self):
        return self.name


class Paper(models.Model):
    """One row per paper, keyed by its canonical arXiv id (no version suffix).

    Papers without an arXiv id (the bundled corpus) get a synthetic key
    ``corpus:<slug>-<hash>`` derived from the title, so re-imports find them.
    """

    arxiv_id = models.CharField(max_length=100, unique=True)
    version = models.PositiveSmallIntegerField(default=1)
    title = models.TextField()
    abstract = models.TextField(blank=True)
    authors = models.ManyToManyField(Author, through="Authorship", related_name="papers")
    author_names = models.JSONField(
        default=list, blank=True, help_text="Ordered display names (denormalised for rendering)."
    )
    authors_count = models.PositiveIntegerField(null=True, blank=True)
    organization = models.CharField(max_length=300, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    revised_at = models.DateTimeField(
        null=True, blank=True, help_text="When arXiv last revised the paper (its current version)."
    )
    upvotes = models.PositiveIntegerField(default=0)
    num_comments = models.PositiveIntegerField(default=0)
    github_stars = models.PositiveIntegerField(default=0)
    ai_summary = models.TextField(blank=True)
    ai_keywords = models.JSONField(default=list, blank=True)
    primary_category = models.CharField(max_length=40, blank=True)
    categories = models.JSONField(default=list, blank=True)
    arxiv_url = models.URLField(max_length=500, blank=True)
    pdf_url = models.URLField(max_length=500, blank=True)
    hf_url = models.URLField(max_length=500, blank=True)
    code_url = models.URLField(max_length=500, blank=True)
    project_url = models.URLField(max_length=500, blank=True)
    thumbnail_url = models.URLField(max_length=500, blank=True)
    comment = models.TextField(blank=True)
    journal_ref = models.CharField(max_length=500, blank=True)
    doi = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=32, help_text="The source that first reported the paper.")
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-first_seen_at", "arxiv_id"]

    def __str__(self):
        return self.title

    @property
    def is_withdrawn(self):
        return self.withdrawn_at is not None

    @property
    def has_arxiv_id(self):
        return not self.arxiv_id.startswith("corpus:")


class Authorship(models.Model):
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["paper", "position"]
        constraints = [
            models.UniqueConstraint(fields=["paper", "position"], name="authorship_unique_position")
        ]


class PaperSignal(models.Model):
    """A paper's community signals as seen on one day: the ranker's velocity input."""

    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="signals")
    date = models.DateField()
    upvotes = models.PositiveIntegerField(default=0)
    num_comments = models.PositiveIntegerField(default=0)
    github_stars = models.PositiveIntegerField(default=0)
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["paper", "-date"]
        constraints = [
            models.UniqueConstraint(fields=["paper", "date"], name="papersignal_unique_day")
        ]


class FetchRun(models.Model):
    """One fetch of one source: what it did, or why it failed (health checks read these)."""

    class Status(models.TextChoices):
        OK = "ok"
        FAILED = "failed"

    source = models.CharField(max_length=32, db_index=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.source} {self.status} at {self.started_at:%Y-%m-%d %H:%M}"
