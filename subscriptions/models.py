"""Subscribers, their preferences, the suppression list, and CSV imports."""

import hashlib
import secrets
from functools import lru_cache

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone as dj_timezone


def new_token_secret():
    return secrets.token_hex(16)


class SubscriberQuerySet(models.QuerySet):
    def with_email(self, email):
        """The subscriber with this address in any case: ``lower(email) = lower(%s)``, the
        expression of the unique index, so the lookup is an index scan (``__iexact`` compares
        ``upper()`` and reads the whole table). Unordered: at most one row matches, and the model's
        ``-created_at`` ordering let PostgreSQL walk ``subscriber_created_idx`` backward instead,
        filtering every row, when its statistics made the table look small."""
        return self.alias(email_lower=Lower("email")).filter(email_lower=Lower(models.Value(email))).order_by()


class Subscriber(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        PAUSED = "paused"
        UNSUBSCRIBED = "unsubscribed"
        BOUNCED = "bounced"
        COMPLAINED = "complained"
        SUPPRESSED = "suppressed"  # by an operator

    class Frequency(models.TextChoices):
        DAILY = "daily", "Daily (weekdays)"
        WEEKLY = "weekly", "Weekly (Monday)"

    MAX_PAPERS_CHOICES = [(5, "5"), (10, "10"), (20, "20")]

    objects = SubscriberQuerySet.as_manager()

    email = models.EmailField(max_length=254, unique=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    interests = models.TextField(
        blank=True, max_length=1000, help_text="Free-text keywords or phrases, comma separated."
    )
    categories = models.JSONField(default=list, blank=True, help_text="arXiv categories.")
    frequency = models.CharField(
        max_length=10, choices=Frequency.choices, default=Frequency.DAILY, db_index=True
    )
    max_papers = models.PositiveSmallIntegerField(choices=MAX_PAPERS_CHOICES, default=10)
    timezone = models.CharField(max_length=64, default="UTC")
    send_hour = models.PositiveSmallIntegerField(default=7)
    always_send_top = models.BooleanField(
        default=False, help_text="Send the top trending papers even when nothing matches."
    )
    token_secret = models.CharField(
        max_length=64, default=new_token_secret, help_text="Rotate to revoke every link."
    )
    consent_note = models.CharField(max_length=200, blank=True)
    signup_request = models.JSONField(
        null=True, blank=True, editable=False,
        help_text="A signup for this address made since the reader left (its preferences and consent "
        "note), applied when its confirmation link is followed.",
    )
    created_at = models.DateTimeField(default=dj_timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_via = models.CharField(
        max_length=32, blank=True, help_text="How they left: page, one-click, webhook, …"
    )
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    notice_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Last 'already subscribed' email (10-minute cap)."
    )
    new_email = models.EmailField(
        max_length=254, blank=True, help_text="The address the reader is moving to, until they confirm it."
    )
    address_change_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Last new-address confirmation email (10-minute cap)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Who is due (digest.scheduling): the time zones in use, one probe each, then each
            # zone's readers in id order, read from the index without sorting them.
            models.Index(fields=["status", "frequency", "timezone", "id"], name="subscriber_due_idx"),
            # The admin's list, newest first, and its sign-up date filter: without it each view
            # sorted every reader (0.2 s at a million). Written once per sign-up, never updated.
            models.Index(fields=["created_at"], name="subscriber_created_idx"),
        ]
        constraints = [
            # Mailboxes are case-insensitive in practice: one row per address, whatever its case.
            models.UniqueConstraint(Lower("email"), name="subscriber_email_ci_unique"),
        ]

    def __str__(self):
        return self.email

    @property
    def is_active(self):
        return self.status == self.Status.ACTIVE

    @property
    def frequency_phrase(self):
        """The frequency's label inside a sentence: "daily (weekdays)", "weekly (Monday)"."""
        label = self.get_frequency_display()
        return label[:1].lower() + label[1:]

    @property
    def interest_terms(self):
        return list(split_interests(self.interests))


@lru_cache(maxsize=4096)
def split_interests(interests):
    """The interest phrases of an interests text (comma or line separated), as a tuple.

    Cached: ranking asks again for every paper of a reader's digest. Only the
    recent texts are kept: at 100,000 readers most texts are distinct, and
    65,536 of them held about 25 MB per worker for few hits.
    """
    return tuple(t.strip() for t in interests.replace("\n", ",").split(",") if t.strip())


def email_hash(email):
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class Suppression(models.Model):
    """An address that must never be (re-)added: kept only as a hash after deletion."""

    email_hash = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=dj_timezone.now)

    def __str__(self):
        return f"{self.email_hash[:12]}… ({self.reason})"


class SubscriberImport(models.Model):
    """An operator's CSV upload, imported by a Celery task: the file, progress and outcome.

    The admin stores the uploaded file here and queues the task, so the web
    request answers at once and the worker can read the file wherever it runs.
    The file is kept as bytes (a text column would refuse a NUL in a cell) and
    emptied once the import has run: the subscribers it created are in their
    own table, the per-line reasons for skipped rows stay here.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    filename = models.CharField(max_length=255, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    csv_data = models.BinaryField(
        blank=True, default=b"", help_text="The uploaded file, kept until the import has run."
    )
    created_at = models.DateTimeField(default=dj_timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_total = models.PositiveIntegerField(default=0, help_text="Data rows in the file.")
    rows_valid = models.PositiveIntegerField(
        default=0, help_text="Rows that passed the checks, to be imported."
    )
    rows_done = models.PositiveIntegerField(
        default=0, help_text="Valid rows imported or skipped so far."
    )
    imported_pending = models.PositiveIntegerField(
        default=0, help_text="New pending subscribers, each sent a confirmation email."
    )
    imported_active = models.PositiveIntegerField(
        default=0, help_text="New active subscribers with recorded earlier consent."
    )
    imported_paused = models.PositiveIntegerField(
        default=0,
        help_text="New paused subscribers with recorded earlier consent (paused in the file).",
    )
    skipped_existing = models.PositiveIntegerField(default=0)
    skipped_suppressed = models.PositiveIntegerField(default=0)
    confirmation_failures = models.PositiveIntegerField(
        default=0, help_text="Pending subscribers whose confirmation email could not be sent."
    )
    row_errors = models.JSONField(
        default=list, blank=True, help_text="Rows not imported: [line, reason] pairs."
    )
    ignored_columns = models.JSONField(default=list, blank=True)
    failure = models.TextField(
        blank=True, help_text="Why the file as a whole could not be imported."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        name = f" ({self.filename})" if self.filename else ""
        return f"Import #{self.pk}{name}"
