"""Operators look after subscribers here: preferences, state changes, export and import.

Statuses are never edited by hand: the actions go through
``subscriptions.services`` so that the same rules apply as on the public
pages (no activation without recorded consent, suppressions respected).
A CSV import is stored as a SubscriberImport and run by a Celery task; its
record (read-only here) shows the progress and the outcome.
"""

import logging

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from digest import calls, pause
from digest import services as digest_services
from digest.models import Delivery, Feedback

from . import csv_io, retention, services, tasks
from .forms import ImportForm, NewAddressForm
from .models import Subscriber, SubscriberImport, Suppression, email_hash
from .validation import category_choices, clean_interests, normalise_email, timezone_names

logger = logging.getLogger(__name__)


class SubscriberAdminForm(forms.ModelForm):
    categories = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Subscriber
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["categories"].choices = category_choices()

    def clean_email(self):
        email = normalise_email(self.cleaned_data["email"])
        others = Subscriber.objects.with_email(email).exclude(pk=self.instance.pk)
        if others.exists():
            raise ValidationError("Another subscriber already has this address.")
        reason = services.suppression_reason(email)
        if reason and self.instance.pk is None:
            raise ValidationError(f"This address is on the suppression list ({reason}).")
        return email

    def clean_interests(self):
        return clean_interests(self.cleaned_data["interests"])

    def clean_timezone(self):
        zone = self.cleaned_data["timezone"]
        if zone not in timezone_names():
            raise ValidationError("Not an IANA time zone, such as Europe/Berlin.")
        return zone

    def clean_send_hour(self):
        hour = self.cleaned_data["send_hour"]
        if not 0 <= hour <= 23:
            raise ValidationError("An hour from 0 to 23.")
        return hour


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# A reader's change page shows their latest deliveries and votes as inline rows; the rest are
# a link away (``SubscriberAdmin.history``): a year of daily digests is some 260 rows.
LATEST_SHOWN = 30


class LatestInline(ReadOnlyInline):
    """The reader's latest LATEST_SHOWN rows, newest first (``SubscriberAdmin.get_formset_kwargs``)."""

    ordering = ("-pk",)

    def latest_of(self, subscriber, queryset):
        latest = self.model.objects.filter(subscriber=subscriber).order_by("-pk")[:LATEST_SHOWN]
        return queryset.filter(pk__in=list(latest.values_list("pk", flat=True)))


class EffectiveDeliveries(BaseInlineFormSet):
    """The reader's latest deliveries, each shown as its ESP call says while the call is not
    settled onto it (``calls.effective``: shown, never saved; the inline is read-only)."""

    def get_queryset(self):
        if not hasattr(self, "_effective"):
            self._effective = calls.effective(super().get_queryset())
        return self._effective


class DeliveryInline(LatestInline):
    model = Delivery
    formset = EffectiveDeliveries
    verbose_name_plural = f"latest deliveries (up to {LATEST_SHOWN})"
    fields = ("edition", "status", "paper_count", "sent_at", "opened_at", "clicked_at", "reason")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("edition")

    @admin.display(description="papers")
    def paper_count(self, delivery):
        return len(delivery.paper_ids or [])


class FeedbackInline(LatestInline):
    model = Feedback
    verbose_name_plural = f"latest votes (up to {LATEST_SHOWN})"
    fields = ("paper", "vote", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("paper")


class SubscriberChangeList(ChangeList):
    """The list's page of subscribers, each with when its latest digest was sent."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = list(services.with_last_delivery(self.result_list))


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    form = SubscriberAdminForm
    change_list_template = "admin/subscriptions/subscriber/change_list.html"
    list_display = (
        "email",
        "status",
        "frequency",
        "interests_preview",
        "created_at",
        "confirmed_at",
        "last_delivery",
    )
    list_filter = ("status", "frequency", "max_papers", "created_at", "confirmed_at")
    search_fields = ("email",)
    list_per_page = 100
    inlines = (DeliveryInline, FeedbackInline)
    readonly_fields = (
        "status",
        "created_at",
        "confirmed_at",
        "confirmation_sent_at",
        "notice_sent_at",
        "new_email",
        "address_change_sent_at",
        "unsubscribed_at",
        "unsubscribed_via",
        "consent_note",
        "signup_request",
        "updated_at",
        "history",
        "deleted_if_unconfirmed",
    )
    fieldsets = (
        (None, {"fields": ("email", "status")}),
        (
            "Preferences",
            {
                "fields": (
                    "interests",
                    "categories",
                    "frequency",
                    "max_papers",
                    "send_hour",
                    "timezone",
                    "always_send_top",
                )
            },
        ),
        (
            "History and consent",
            {
                "fields": (
                    "consent_note",
                    "signup_request",
                    "created_at",
                    "confirmation_sent_at",
                    "confirmed_at",
                    "deleted_if_unconfirmed",
                    "notice_sent_at",
                    "new_email",
                    "address_change_sent_at",
                    "unsubscribed_at",
                    "unsubscribed_via",
                    "updated_at",
                    "history",
                )
            },
        ),
    )
    actions = (
        "resend_confirmation",
        "send_preview_digest",
        "suppress",
        "reactivate",
        "export_csv",
        "revoke_links",
    )

    def get_changelist(self, request, **kwargs):
        return SubscriberChangeList

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        return ("email", *self.readonly_fields)  # a new address needs its own confirmation

    @admin.display(description="interests")
    def interests_preview(self, subscriber):
        return Truncator(subscriber.interests).chars(60)

    @admin.display(description="last delivery")
    def last_delivery(self, subscriber):
        return subscriber.last_delivery_at

    @admin.display(description="deleted if not confirmed")
    def deleted_if_unconfirmed(self, subscriber):
        """When a signup nobody confirmed goes (``UNCONFIRMED_SIGNUP_DAYS``), so that an operator
        looking for it later knows why it is gone."""
        after = retention.deleted_after(subscriber) if subscriber.pk else None
        if after is None:
            return "-"
        return f"at the first nightly prune after {timezone.localtime(after):%Y-%m-%d %H:%M %Z} (UNCONFIRMED_SIGNUP_DAYS)"

    @admin.display(description="all deliveries and votes")
    def history(self, subscriber):
        """Counts of the reader's deliveries and votes, each linked to its list filtered on them
        (the inline rows below show only the latest)."""
        if subscriber.pk is None:
            return "-"
        links = [
            (reverse(f"admin:digest_{model._meta.model_name}_changelist"), subscriber.pk,
             model.objects.filter(subscriber=subscriber).count(), label)
            for model, label in ((Delivery, "deliveries"), (Feedback, "votes"))
        ]
        return format_html_join(" · ", '<a href="{}?subscriber={}">{} {}</a>', links)

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, LatestInline) and obj is not None and obj.pk is not None:
            kwargs["queryset"] = inline.latest_of(obj, kwargs["queryset"])
        return kwargs

    def save_model(self, request, obj, form, change):
        """A subscriber added here starts pending and gets a confirmation email."""
        super().save_model(request, obj, form, change)
        if not change and services.send_confirmation(obj):
            self.message_user(request, f"Confirmation email sent to {obj.email}.")

    # --- Actions --------------------------------------------------------

    @admin.action(permissions=["change"], description="Resend confirmation email")
    def resend_confirmation(self, request, queryset):
        pending = queryset.filter(status=Subscriber.Status.PENDING)
        sent = sum(1 for subscriber in pending if services.send_confirmation(subscriber))
        skipped = queryset.count() - sent
        self.message_user(request, f"Confirmation email on its way to {sent} subscriber(s).")
        if skipped:
            self.message_user(
                request,
                f"{skipped} skipped: not pending, or already sent one in the last 10 minutes.",
                messages.WARNING,
            )

    @admin.action(permissions=["change"], description="Send a preview digest now")
    def send_preview_digest(self, request, queryset):
        """Only active readers with papers in their digest get one (``send_preview_digest``), and
        none while digest sending is paused (the preview in the browser still shows it)."""
        try:
            pause.refuse_while_paused()
        except pause.SendingPaused as refusal:
            self.message_user(request, f"No preview sent: {refusal}.", messages.ERROR)
            return
        sent, not_sent = 0, []
        for subscriber in queryset:
            try:
                digest_services.send_preview_digest(subscriber)
            except digest_services.PreviewNotSent as refusal:
                not_sent.append(f"{subscriber.email} ({refusal})")
            except Exception as error:  # one bad subscriber must not hide the others' results
                logger.exception("Could not send a preview digest to subscriber %s", subscriber.pk)
                not_sent.append(f"{subscriber.email} ({error})")
            else:
                sent += 1
        self.message_user(request, f"Preview digest sent for {sent} subscriber(s).")
        if not_sent:
            self.message_user(request, "Not sent: " + "; ".join(not_sent), messages.WARNING)

    # The actions below that change a reader record it in the reader's admin history (who,
    # when, what), once for each reader they actually changed.

    @admin.action(permissions=["change"], description="Suppress (never email again)")
    def suppress(self, request, queryset):
        for subscriber in queryset:
            was = subscriber.status
            if services.suppress(subscriber, reason="suppressed"):
                self.log_change(request, subscriber, f"Suppressed: never email again (was {was}).")
        self.message_user(request, f"Suppressed {len(queryset)} subscriber(s).")

    @admin.action(permissions=["change"], description="Reactivate")
    def reactivate(self, request, queryset):
        outcomes = {result: [] for result in services.ReactivationResult}
        for subscriber in queryset:
            was = subscriber.status
            result = services.reactivate(subscriber)
            outcomes[result].append(subscriber.email)
            if result is services.ReactivationResult.REACTIVATED:
                self.log_change(request, subscriber, f"Reactivated (was {was}).")
        reactivated = len(outcomes[services.ReactivationResult.REACTIVATED])
        already_active = len(outcomes[services.ReactivationResult.ALREADY_ACTIVE])
        message = f"Reactivated {reactivated} subscriber(s)."
        if already_active:
            message += f" {already_active} already active, left as they were."
        self.message_user(request, message)
        refused = outcomes[services.ReactivationResult.REFUSED]
        if refused:
            self.message_user(
                request,
                "Never confirmed, so not reactivated (resend the confirmation instead): "
                + ", ".join(refused),
                messages.WARNING,
            )

    REVOKED_LINKS_LOG = {
        services.NewLinkResult.EMAILED: "Revoked email links: a new link was emailed.",
        services.NewLinkResult.NOT_EMAILED: (
            "Revoked email links: no new link emailed (may not be emailed)."
        ),
        services.NewLinkResult.EMAIL_FAILED: (
            "Revoked email links: the new link could not be emailed."
        ),
    }

    @admin.action(permissions=["change"], description="Revoke email links (rotate secret, email a new link)")
    def revoke_links(self, request, queryset):
        """Every selected reader's links are revoked; only those we may email get a new one."""
        outcomes = {result: [] for result in services.NewLinkResult}
        for subscriber in queryset:
            result = services.revoke_links(subscriber)  # always rotates the secret
            outcomes[result].append(subscriber.email)
            self.log_change(request, subscriber, self.REVOKED_LINKS_LOG[result])
        emailed = outcomes[services.NewLinkResult.EMAILED]
        self.message_user(
            request,
            f"Links revoked for {len(queryset)} subscriber(s); "
            f"a new link emailed to {len(emailed)}.",
        )
        not_emailed = outcomes[services.NewLinkResult.NOT_EMAILED]
        if not_emailed:
            self.message_user(
                request,
                f"Links only revoked for {len(not_emailed)} subscriber(s), who may not be "
                "emailed (pending, unsubscribed or suppressed): " + ", ".join(not_emailed),
                messages.WARNING,
            )
        failed = outcomes[services.NewLinkResult.EMAIL_FAILED]
        if failed:
            self.message_user(
                request,
                f"Links revoked, but the new link could not be emailed to {len(failed)} "
                "subscriber(s): " + ", ".join(failed),
                messages.WARNING,
            )

    @admin.action(description="Export as CSV")
    def export_csv(self, request, queryset):
        stamp = timezone.now().strftime("%Y-%m-%d")
        response = StreamingHttpResponse(
            csv_io.export_lines(services.subscribers_for_export(queryset)),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="paperboy-subscribers-{stamp}.csv"'
        return response

    # --- Deleting --------------------------------------------------------

    def delete_model(self, request, obj):
        """As a reader's own "delete everything": a hashed suppression stops an import re-adding them."""
        services.delete_subscriber(obj)

    def delete_queryset(self, request, queryset):
        for subscriber in queryset:
            services.delete_subscriber(subscriber)

    # --- Import ---------------------------------------------------------

    def get_urls(self):
        extra = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="subscriptions_subscriber_import",
            ),
            path(
                "<int:subscriber_id>/new-address/",
                self.admin_site.admin_view(self.new_address_view),
                name="subscriptions_subscriber_new_address",
            ),
        ]
        return extra + super().get_urls()

    # --- Moving to a new address ------------------------------------------

    NEW_ADDRESS_REFUSALS = {
        "blocked": "This address is on the suppression list (it bounced, complained or was suppressed).",
        "taken": "Another subscriber has this address: they would have to leave it first.",
        services.AddressChangeResult.SAME: "That is already this subscriber’s address.",
        services.AddressChangeResult.THROTTLED: "A link to a new address went out less than ten minutes ago.",
        services.AddressChangeResult.NOT_ALLOWED: (
            "Only a subscriber who confirmed once and is active, paused, unsubscribed or bounced can move."
        ),
    }

    def new_address_view(self, request, subscriber_id):
        """For a reader who writes in from a new address, their old mailbox gone (and with it
        their preferences link): the same link the preferences page sends goes to the new
        address, whose owner moves the reader by following it."""
        subscriber = self.get_object(request, str(subscriber_id))
        if subscriber is None or not self.has_change_permission(request, subscriber):
            return redirect("admin:subscriptions_subscriber_changelist")
        form = NewAddressForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            email = form.cleaned_data["email"]
            refusal = services.new_address_obstacle(subscriber, email)
            result = refusal or services.request_address_change(subscriber, email)
            if result is services.AddressChangeResult.REQUESTED:
                self.log_change(request, subscriber, "Emailed a link to move to a new address.")
                self.message_user(
                    request,
                    f"A link that moves {subscriber.email} to {email} was emailed there; "
                    "nothing changes until it is followed (it works for 2 days).",
                )
                return redirect("admin:subscriptions_subscriber_change", subscriber.pk)
            form.add_error("email", self.NEW_ADDRESS_REFUSALS[result])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Move {subscriber.email} to a new address",
            "opts": self.model._meta,
            "original": subscriber,
            "waiting": services.address_waiting(subscriber),
            "form": form,
            "changelist_url": reverse("admin:subscriptions_subscriber_changelist"),
        }
        return TemplateResponse(request, "admin/subscriptions/subscriber/new_address.html", context)

    def import_view(self, request):
        """Check the file, store it and queue the import task; answer at once.

        Without a broker (no REDIS_URL) the task runs in this request, and the
        outcome is shown straight away.
        """
        if not self.has_add_permission(request):
            return redirect("admin:subscriptions_subscriber_changelist")
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                record = services.queue_import(
                    csv_io.decode_upload(upload), upload.name or "", request.user
                )
            except csv_io.ImportFileError as error:
                form.add_error("file", str(error))
            else:
                self._start_import(request, record)
                return redirect("admin:subscriptions_subscriber_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import subscribers from CSV",
            "opts": self.model._meta,
            "form": form,
            "columns": sorted(csv_io.IMPORT_COLUMNS),
            "changelist_url": reverse("admin:subscriptions_subscriber_changelist"),
        }
        return TemplateResponse(request, "admin/subscriptions/subscriber/import.html", context)

    def _start_import(self, request, record):
        try:
            tasks.import_subscribers.delay(record.pk)
        except Exception:  # the broker is unreachable: say so rather than leave it queued
            logger.exception("Could not queue subscriber import %s", record.pk)
            SubscriberImport.objects.filter(pk=record.pk).update(
                status=SubscriberImport.Status.FAILED,
                failure="Could not be queued: the task queue did not answer.",
                finished_at=timezone.now(),
                csv_data=b"",
            )
        record.refresh_from_db()
        link = format_html(
            '<a href="{}">{}</a>',
            reverse("admin:subscriptions_subscriberimport_change", args=[record.pk]),
            record,
        )
        if record.status == SubscriberImport.Status.DONE:  # ran in this request (no broker)
            self._report_import(request, record, link)
        elif record.status == SubscriberImport.Status.FAILED:
            self.message_user(
                request, format_html("{} failed: {}", link, record.failure), messages.ERROR
            )
        else:
            self.message_user(
                request,
                format_html(
                    "Import queued: {}, {} row(s). Rows are checked and imported in the "
                    "background; the import's page shows its progress and outcome.",
                    link,
                    record.rows_total,
                ),
            )

    def _report_import(self, request, record, link):
        self.message_user(
            request,
            format_html(
                "Imported {} pending (confirmation sent), {} active and {} paused with earlier "
                "consent; skipped {} existing and {} suppressed address(es). Details: {}.",
                record.imported_pending,
                record.imported_active,
                record.imported_paused,
                record.skipped_existing,
                record.skipped_suppressed,
                link,
            ),
        )
        errors = record.row_errors
        if errors:
            shown = "; ".join(f"line {line}: {message}" for line, message in errors[:20])
            more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
            self.message_user(
                request, f"{len(errors)} row(s) not imported: {shown}{more}", messages.WARNING
            )
        if record.confirmation_failures:
            self.message_user(
                request,
                f"{record.confirmation_failures} confirmation email(s) could not be sent: "
                "use “Resend confirmation” on those pending subscribers later.",
                messages.WARNING,
            )
        if record.ignored_columns:
            self.message_user(
                request,
                "Ignored unknown columns: " + ", ".join(record.ignored_columns),
                messages.WARNING,
            )


@admin.register(SubscriberImport)
class SubscriberImportAdmin(admin.ModelAdmin):
    """Imports are made on the subscribers' import page; here they can only be looked at."""

    list_display = (
        "__str__",
        "status",
        "created_at",
        "uploaded_by",
        "progress",
        "imported_pending",
        "imported_active",
        "imported_paused",
        "skipped_existing",
        "skipped_suppressed",
        "rows_invalid",
    )
    list_filter = ("status", "created_at")
    fieldsets = (
        (None, {"fields": ("filename", "uploaded_by", "status", "failure")}),
        ("Progress", {"fields": ("created_at", "started_at", "finished_at", "progress")}),
        (
            "Outcome",
            {
                "fields": (
                    "imported_pending",
                    "imported_active",
                    "imported_paused",
                    "skipped_existing",
                    "skipped_suppressed",
                    "confirmation_failures",
                    "rows_invalid",
                    "skipped_rows",
                    "ignored_columns",
                )
            },
        ),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])
    MAX_ERRORS_SHOWN = 500

    def get_queryset(self, request):
        return super().get_queryset(request).defer("csv_data").select_related("uploaded_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, record):
        if record.status == SubscriberImport.Status.QUEUED:
            return f"waiting for a worker ({record.rows_total} rows)"
        return (
            f"{record.rows_done} of {record.rows_valid} valid rows "
            f"({record.rows_total} in the file)"
        )

    @admin.display(description="invalid rows")
    def rows_invalid(self, record):
        return len(record.row_errors or [])

    @admin.display(description="rows not imported")
    def skipped_rows(self, record):
        errors = record.row_errors or []
        if not errors:
            return "none"
        items = format_html_join(
            "",
            "<li>line {}: {}</li>",
            ((line, message) for line, message in errors[: self.MAX_ERRORS_SHOWN]),
        )
        more = len(errors) - self.MAX_ERRORS_SHOWN
        tail = format_html("<li>… and {} more</li>", more) if more > 0 else ""
        return format_html("<ul>{}{}</ul>", items, tail)


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("email_hash", "reason", "created_at")
    list_filter = ("reason",)
    search_fields = ("email_hash",)
    readonly_fields = ("email_hash", "reason", "created_at")

    def get_search_results(self, request, queryset, search_term):
        """Search by address: the term is hashed the same way as the stored entries."""
        if "@" in search_term:
            try:
                search_term = normalise_email(search_term)
            except ValidationError:
                pass
            return queryset.filter(email_hash=email_hash(search_term)), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False
