"""Editions, the delivery ledger, and reader feedback."""

from django.db import models
from django.urls import reverse
from django.utils import timezone


class Cadence(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"


class Edition(models.Model):
    """The public, non-personalised digest of one cadence and date."""

    cadence = models.CharField(max_length=10, choices=Cadence.choices)
    date = models.DateField()
    papers = models.ManyToManyField("papers.Paper", through="EditionPaper", related_name="editions")
    built_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-date", "cadence"]
        constraints = [
            models.UniqueConstraint(fields=["cadence", "date"], name="edition_unique_cadence_date")
        ]

    def __str__(self):
        return f"{self.get_cadence_display()} edition {self.date:%Y-%m-%d}"

    def public_path(self):
        """The path of its public page, ``/digest/<cadence>/<date>/``."""
        return reverse("digest:edition", args=[self.cadence, self.date.isoformat()])


class EditionPaper(models.Model):
    edition = models.ForeignKey(Edition, on_delete=models.CASCADE, related_name="entries")
    paper = models.ForeignKey("papers.Paper", on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField()
    trending_score = models.FloatField()
    trending_reason = models.CharField(max_length=200, blank=True)
    pulled = models.BooleanField(default=False, help_text="Pulled by an operator: never sent.")

    class Meta:
        ordering = ["edition", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["edition", "paper"], name="editionpaper_unique")
        ]

    def __str__(self):
        # Ids, not the related rows: a deleted edition lists every entry, a query each otherwise.
        return f"#{self.rank} of edition {self.edition_id}: paper {self.paper_id}"


class DeliveryQuerySet(models.QuerySet):
    def with_status(self, status):
        """Rows in ``status``. For ``sending`` the filter also says ``sent_at`` is null, which
        is true of every such row and the condition of the one index that finds them."""
        if status == Delivery.Status.SENDING:
            return self.filter(status=status, sent_at__isnull=True)
        return self.filter(status=status)


class Delivery(models.Model):
    """One subscriber's digest for one edition: the ledger that makes sending idempotent.

    The unique (subscriber, edition) row is claimed before anything is sent;
    only a row moved from ``pending`` to ``sending`` by a compare-and-swap
    update may be handed to the ESP, so a retried or duplicated task finds
    the row already taken and sends nothing.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"

    subscriber = models.ForeignKey(
        "subscriptions.Subscriber", on_delete=models.CASCADE, related_name="deliveries"
    )
    # The unique (edition, subscriber) index serves lookups by edition: no second index.
    edition = models.ForeignKey(Edition, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    paper_ids = models.JSONField(
        default=list, blank=True, help_text="The papers handed (or perhaps handed) to the ESP."
    )
    reasons = models.JSONField(
        default=dict, blank=True,
        help_text="Each why-line once, with the ids of the papers it explains (rows before "
        "December 2026: a why-line per paper id).",
    )
    reason = models.CharField(max_length=300, blank=True, help_text="Why skipped or failed.")
    esp_message_id = models.CharField(max_length=300, blank=True)
    send_token = models.CharField(
        max_length=32, blank=True, help_text="Set by the compare-and-swap that won this send."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            # Edition first: a send chunk reads (edition, its 500 subscribers) through it.
            # With the edition alone indexed, a day's freshly claimed rows (which the
            # planner's statistics do not know yet) were scanned whole for every chunk.
            models.UniqueConstraint(
                fields=["edition", "subscriber"], name="delivery_unique_edition_subscriber"
            )
        ]
        # No index on status alone: right after a day's rows are claimed the planner's
        # statistics say "few pending rows" and an index on status would lead it to scan every
        # pending row for each batch. Rows are found by id or (subscriber, edition); only the
        # stale-send sweep and the admin's filter look by status, through partial indexes: on
        # rows in ``sending`` and on failed rows. The first one's condition names ``sent_at``
        # (null on every row in ``sending``) so that only a query saying so (``with_status``)
        # can read it: it keeps an entry for each row that passed through ``sending`` until a
        # vacuum, and recording a batch through it (as the planner chose, its statistics not
        # knowing the day's rows) read them all for every batch. Every index without a condition
        # is written on each of a row's three versions (pending, sending, sent), so there are
        # few: webhooks find sent rows by ESP message id (exact match only, so without the
        # pattern-ops twin ``db_index=True`` would add, and only rows that have one).
        indexes = [
            models.Index(
                fields=["sending_at"], name="delivery_stale_send_idx",
                condition=models.Q(status="sending", sent_at__isnull=True),
            ),
            models.Index(
                fields=["esp_message_id"], name="delivery_esp_message_idx",
                condition=~models.Q(esp_message_id=""),
            ),
            # The dashboard's bounce and complaint rates count these by day: few rows
            # carry them, so these indexes are small and rarely written.
            models.Index(
                fields=["bounced_at"], name="delivery_bounced_idx",
                condition=models.Q(bounced_at__isnull=False),
            ),
            models.Index(
                fields=["complained_at"], name="delivery_complained_idx",
                condition=models.Q(complained_at__isnull=False),
            ),
            # The admin's "failed" filter, newest first: what an operator looks for after a bad
            # send. Failed rows are few and a row enters this index only when it fails; without
            # it the filter read the whole ledger for its page and its count.
            models.Index(fields=["id"], name="delivery_failed_idx", condition=models.Q(status="failed")),
        ]

    def __str__(self):
        # The edition by name when it is loaded, else by id: a reader's delete confirmation
        # lists every delivery, and would read each one's edition.
        edition = self.edition if Delivery.edition.is_cached(self) else f"edition {self.edition_id}"
        return f"{edition} → subscriber {self.subscriber_id} ({self.status})"

    @staticmethod
    def reasons_of(ranked):
        """``reasons`` as the ledger keeps them: each why-line once, with the papers it explains.

        A reader's why-lines repeat ("matches your interests: agents" for most of their papers),
        and a line per paper made them more than half of the row, in every row version the send
        writes; kept once each, the row is about an eighth smaller.
        """
        papers_by_line = {}
        for r in ranked:
            papers_by_line.setdefault(r.reason, []).append(r.paper.id)
        return papers_by_line

    def why_lines(self):
        """Each paper's why-line by paper id, from ``reasons`` in either shape."""
        lines = {}
        for key, value in self.reasons.items():
            if isinstance(value, list):
                lines.update(dict.fromkeys(value, key))
            else:
                lines[int(key)] = value
        return lines


class SendCall(models.Model):
    """One ESP batch call and the readers it carried: the claim that sends them at most once.

    With DIGEST_CLAIMS_PER_CALL a batch is claimed by inserting this row (under a
    lock per edition) instead of moving each of its deliveries to ``sending``; its
    deliveries stay ``pending`` during the send and the call holds their outcome,
    papers and message id. ``digest.calls`` reads a delivery's outcome through its
    call until the call is settled: its outcome copied onto its rows, by the beat
    (``settle_calls``) or by the first ESP webhook about one of them. A delivery is
    in a call when its id is in ``delivery_ids``; ``first_delivery_id`` and
    ``last_delivery_id`` find the calls that may hold it.
    """

    class Status(models.TextChoices):
        SENDING = "sending"  # claimed; the call is being made, or its outcome is unknown
        SENT = "sent"
        RETURNED = "returned"  # the ESP surely did not take it: its readers may be claimed again
        FAILED = "failed"  # refused for good, or its outcome stayed unknown (never resent)

    edition = models.ForeignKey(Edition, on_delete=models.CASCADE, related_name="send_calls", db_index=False)
    token = models.CharField(max_length=32, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENDING)
    first_delivery_id = models.BigIntegerField()
    last_delivery_id = models.BigIntegerField()
    delivery_ids = models.JSONField(default=list, help_text="The deliveries this call claimed.")
    papers = models.TextField(
        default="{}", help_text="Per delivery id: [paper ids, why-lines], as JSON text (compressed, never parsed "
        "by the database while sending).",
    )
    esp_message_id = models.CharField(max_length=300, blank=True)
    recipient_message_ids = models.JSONField(
        default=dict, blank=True, help_text="Per delivery id, when the ESP gave each recipient its own message id."
    )
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True, help_text="When its outcome was copied onto its rows.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # A claim looks for live calls overlapping its batch's ids: calls are made in about
            # the order of their ids, so few have a last id above a batch's first one.
            models.Index(fields=["edition", "last_delivery_id"], name="sendcall_edition_last_idx"),
            models.Index(
                fields=["created_at"], name="sendcall_sending_idx", condition=models.Q(status="sending")
            ),
            models.Index(fields=["id"], name="sendcall_unsettled_idx", condition=models.Q(settled_at__isnull=True)),
            models.Index(
                fields=["esp_message_id"], name="sendcall_esp_message_idx", condition=~models.Q(esp_message_id="")
            ),
        ]

    def __str__(self):
        return f"{self.edition} call of {len(self.delivery_ids)} ({self.status})"


class Feedback(models.Model):
    """A reader's 👍/👎 on a paper from their digest; it steers their relevance model."""

    class Vote(models.IntegerChoices):
        LIKE = 1, "👍"
        DISLIKE = -1, "👎"

    subscriber = models.ForeignKey(
        "subscriptions.Subscriber", on_delete=models.CASCADE, related_name="feedback"
    )
    paper = models.ForeignKey("papers.Paper", on_delete=models.CASCADE, related_name="feedback")
    vote = models.SmallIntegerField(choices=Vote.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "paper"], name="feedback_unique")
        ]

    def __str__(self):
        # Ids, not the related rows: a deleted reader lists every vote, a query each otherwise.
        return f"{self.get_vote_display()} on paper {self.paper_id} by subscriber {self.subscriber_id}"


class BlockedPaper(models.Model):
    """A paper an operator pulled: it leaves every edition page and every digest not yet sent."""

    paper = models.OneToOneField("papers.Paper", on_delete=models.CASCADE, related_name="block")
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The entries the block pulled, so that un-blocking puts back exactly those and leaves pulled
    # an entry an operator had pulled by hand before. Null for blocks made before it was kept:
    # un-blocking one of them puts nothing back (its entries stay pulled; untick them by hand).
    pulled_entries = models.JSONField(
        null=True, blank=True, editable=False,
        help_text="Ids of the edition entries this block pulled (un-blocking puts them back); "
        "null for blocks made before they were recorded.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"blocked: {self.paper}"


class WebhookEvent(models.Model):
    """One ESP tracking event, stored once (unique ``event_id``) and applied once (``applied_at``)."""

    event_id = models.CharField(max_length=200, unique=True)
    esp = models.CharField(max_length=40)
    event_type = models.CharField(max_length=20, db_index=True)
    recipient = models.EmailField(max_length=254, blank=True)
    message_id = models.CharField(max_length=300, blank=True)
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    occurred_at = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="Metadata, reject reason, description.")
    clicked_paper = models.ForeignKey(
        "papers.Paper", null=True, blank=True, on_delete=models.SET_NULL, related_name="click_events",
        help_text="For a click: the paper of the digest whose link was clicked (set when the event is applied).",
    )
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]
        # The admin's list (newest first) and the nightly prune (oldest first) read by received_at.
        indexes = [models.Index(fields=["received_at"], name="webhookevent_received_idx")]

    def __str__(self):
        return f"{self.esp} {self.event_type} {self.recipient}"


class DeliveryDay(models.Model):
    """A settled day of the ledger, counted once for the dashboard (``digest.ledger_days``).

    The ledger grows by a row per reader and digest; counting every day of the
    dashboard's window from it read all of it on each view. Once a day is
    settled its counts are kept here: digests claimed that day by status, and
    digests sent that day.
    """

    day = models.DateField(unique=True)
    claimed = models.JSONField(default=dict, help_text="Deliveries claimed that day, by their status.")
    sent = models.PositiveIntegerField(default=0, help_text="Digests sent that day.")
    next_delivery_id = models.BigIntegerField(
        help_text="No delivery claimed after this day has a lower id: later days are counted from here."
    )
    counted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day"]

    def __str__(self):
        return f"ledger of {self.day:%Y-%m-%d}"


class SendingPause(models.Model):
    """The operator's switch that pauses all digest sending (``digest.pause``): one row, read by
    every worker and kept across restarts. While ``paused`` nothing more is handed to the ESP;
    who paused, when and why stay on the row until the next pause, and ``SwitchTurn`` keeps every
    turn of the switch, from the admin or the command line."""

    ONE = 1  # the row's id: there is only one switch

    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True, help_text="The operator who paused sending.")
    reason = models.CharField(max_length=300, blank=True, help_text="Why sending was paused.")
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.CharField(max_length=150, blank=True, help_text="The operator who resumed sending.")

    class Meta:
        verbose_name = verbose_name_plural = "sending switch"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="sendingpause_one_row")]

    def __str__(self):
        return "digest sending paused" if self.paused else "digest sending on"


class SwitchTurn(models.Model):
    """One turn of the sending switch: a pause or a resume, who made it, from where, and why. Written
    by ``digest.pause`` in the transaction that turns the switch, so a turn is recorded once and
    only when it changed something, whichever way the operator reached it."""

    class Via(models.TextChoices):
        ADMIN = "admin", "the admin"
        COMMAND_LINE = "command line", "the command line"
        OTHER = "other", "not recorded"

    at = models.DateTimeField(default=timezone.now)
    paused = models.BooleanField(help_text="A pause; otherwise a resume.")
    by = models.CharField(max_length=150)
    via = models.CharField(max_length=20, choices=Via.choices, default=Via.OTHER)
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "turn of the sending switch"
        verbose_name_plural = "turns of the sending switch"

    def __str__(self):
        return f"{self.action} by {self.by} at {self.at:%Y-%m-%d %H:%M}"

    @property
    def action(self):
        """'paused' or 'resumed'."""
        return "paused" if self.paused else "resumed"
