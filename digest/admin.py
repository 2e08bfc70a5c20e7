"""Editions and their ranked papers, the delivery ledger, votes, webhook events, the blocklist.

Operators can preview any subscriber's digest as the real email HTML, resend
a failed delivery (never a sent one), block a paper from every digest not
yet sent, and pause all digest sending (the sending switch). Every change goes
through ``digest.services`` or ``digest.pause``.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as stock_delete_selected
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from config.admin_filters import OneRowFilter
from papers.admin import ReadOnlyAdmin
from subscriptions.models import Subscriber

from . import calls, pause, services
from .models import (
    BlockedPaper, Delivery, DeliveryDay, Edition, EditionPaper, Feedback, SendCall, SendingPause, SwitchTurn,
    WebhookEvent,
)
from .rendering import render_delivery_html


class EntryIdField(forms.ModelChoiceField):
    """A row's entry id, checked among the entries the formset read (``entries``, by id as
    text) where the stock id field reads each row's entry with a query of its own."""

    def __init__(self, entries, **kwargs):
        self.entries = entries
        super().__init__(EditionPaper.objects.none(), **kwargs)

    def to_python(self, value):
        if value in self.empty_values:
            return None
        entry = self.entries.get(str(value))
        if entry is None:
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return entry


class EditionEntriesFormSet(BaseInlineFormSet):
    """The edition's entries, read once (with their papers' titles) for the page and for
    saving it: an edition holds up to 500, and saving checked each row's id with a query."""

    def add_fields(self, form, index):
        super().add_fields(form, index)
        name = self.model._meta.pk.name
        stock = form.fields[name]
        form.fields[name] = EntryIdField(self.entries_by_id, initial=stock.initial, required=False, widget=stock.widget)

    @cached_property
    def entries_by_id(self):
        return {str(entry.pk): entry for entry in self.get_queryset()}


class EditionPaperInline(admin.TabularInline):
    """The edition's papers, a compact row each (``entries_inline.html``; the stock template
    spent 1.5 KB of markup and a dozen template lookups on each of up to 500 rows): rank, the
    paper linked to its page, score, why-line, and the one thing edited, the pulled checkbox."""

    model = EditionPaper
    formset = EditionEntriesFormSet
    template = "admin/digest/edition/entries_inline.html"
    fields = ["pulled"]
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        """Each entry with its paper's title (not its abstract and the rest)."""
        entry_fields = [f.name for f in EditionPaper._meta.concrete_fields]
        return super().get_queryset(request).select_related("paper").only(*entry_fields, "paper__title")

    def has_add_permission(self, request, obj=None):
        return False


def sent_editions_left_alone(editions):
    """Why ``editions`` were not deleted, for the operator who asked."""
    names = ", ".join(str(edition) for edition in editions)
    its, it = ("Their", "them") if len(editions) > 1 else ("Its", "it")
    return (f"Not deleted: {names}. {its} digests went out, and deleting an edition deletes its ledger: "
            f"the next run would build {it} again and email {it} to everyone a second time")


@admin.register(Edition)
class EditionAdmin(admin.ModelAdmin):
    actions = ["delete_selected"]
    list_display = ["date", "cadence", "built_at", "paper_count", "public_page"]
    list_filter = ["cadence"]
    date_hierarchy = "date"
    readonly_fields = ["cadence", "date", "built_at"]
    inlines = [EditionPaperInline]

    def has_add_permission(self, request):
        """Editions are built by the daily job (``run_daily``) from the papers fetched, never by hand."""
        return False

    # An edition's deliveries and ESP calls go with it, and they are what stops a second send:
    # once any of its digests went to the ESP it has no delete link or page here, and the bulk
    # action leaves it out. One nobody was sent yet may be deleted (to be built again).

    def has_delete_permission(self, request, obj=None):
        if obj is not None and services.edition_handed_to_esp(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        if not services.delete_unsent_edition(obj):
            raise PermissionDenied  # its digests went out since its delete page was shown

    def delete_queryset(self, request, queryset):
        kept = [edition for edition in queryset if not services.delete_unsent_edition(edition)]
        if kept:
            self.message_user(request, f"{sent_editions_left_alone(kept)} (sent since the page was shown).",
                              messages.WARNING)

    @admin.action(permissions=["delete"], description=stock_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        """The stock action for the editions selected that nobody was sent yet; the others are named."""
        sent = [edition for edition in queryset if services.edition_handed_to_esp(edition)]
        if sent:
            self.message_user(request, f"{sent_editions_left_alone(sent)}.", messages.WARNING)
            queryset = queryset.exclude(pk__in=[edition.pk for edition in sent])
            if not queryset:
                return None
        return stock_delete_selected(self, request, queryset)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(entry_count=Count("entries"))

    @admin.display(description="papers", ordering="entry_count")
    def paper_count(self, edition):
        return edition.entry_count

    @admin.display(description="public page")
    def public_page(self, edition):
        return format_html('<a href="{}">view</a>', edition.public_path())


class DeliveryStatusFilter(admin.SimpleListFilter):
    """The stock status filter, but rows in ``sending`` (the ones an operator looks for when a
    send is stuck) are found through their partial index rather than by reading the ledger."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request, model_admin):
        return Delivery.Status.choices

    def queryset(self, request, queryset):
        return queryset.with_status(self.value()) if self.value() else queryset


class ReaderFilter(OneRowFilter):
    """One reader's rows (``?subscriber=<id>``, what a reader's admin page links to), named in
    the sidebar by address."""

    title = "subscriber"
    parameter_name = "subscriber"
    related_model = Subscriber
    name_missing = False

    def rows_of(self, rows, reader_id):
        return rows.filter(subscriber_id=reader_id)


# Below this many rows (the planner's estimate) the ledger is counted exactly.
ESTIMATED_COUNT_FROM = 100_000


def estimated_rows(model):
    """PostgreSQL's estimate of ``model``'s rows (kept by ANALYZE and autovacuum), None elsewhere
    or before the table was first analysed."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return row[0] if row and row[0] >= 0 else None


class LedgerPaginator(Paginator):
    """Counts the unfiltered ledger from the planner's estimate: an exact count read every row
    (a row per reader and digest) on each view of the list. Filtered lists are counted exactly."""

    @cached_property
    def count(self):
        if not self.object_list.query.where:
            estimate = estimated_rows(self.object_list.model)
            if estimate is not None and estimate >= ESTIMATED_COUNT_FROM:
                return estimate
        return super().count


class DeliveryChangeList(ChangeList):
    """The list's page of deliveries, each shown as its ESP call says while the call is not
    settled onto it (``calls.effective``: the page's rows only; the status filter reads the rows)."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = calls.effective(self.result_list)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The ledger, newest first by id (ids are handed out in claim order, and the primary key
    is indexed where the claim time is not), counted from the planner's estimate when not
    filtered, and searched by exact address or ESP message id through their indexes: ordering,
    counting or searching by substring read the whole ledger on every view."""

    list_display = ["edition", "subscriber", "status", "sent_at", "attempts", "reason"]
    list_filter = [DeliveryStatusFilter, "edition", "edition__cadence", ReaderFilter]
    search_fields = ["subscriber__email", "esp_message_id"]
    search_help_text = "An email address or an ESP message id, exactly."
    ordering = ["-pk"]
    paginator = LedgerPaginator
    show_full_result_count = False
    list_select_related = ["edition", "subscriber"]
    raw_id_fields = ["subscriber", "edition"]
    readonly_fields = ["email_links", *[f.name for f in Delivery._meta.fields]]
    actions = ["resend_failed"]

    def has_add_permission(self, request):
        return False

    def get_changelist(self, request, **kwargs):
        return DeliveryChangeList

    # A reader's row for an edition is what stops a second send of it: deleted, the next send
    # tick or ``send_digests --subscriber`` claims the reader again and emails the edition twice.
    # Rows go only with their reader or with an edition nobody was sent yet (whose delete pages list them).

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        raise PermissionDenied

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """A row's page shows it (every field is read only): no delete link, and no save buttons."""
        shown_only = {"show_delete": False, "show_save": False, "show_save_and_continue": False,
                      "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **shown_only})

    def get_object(self, request, object_id, from_field=None):
        """The row as its ESP call says, while the call is not settled onto it (shown, not saved)."""
        delivery = super().get_object(request, object_id, from_field)
        return calls.effective([delivery])[0] if delivery is not None else None

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        readers = list(Subscriber.objects.with_email(term).values_list("pk", flat=True))
        bare = term.strip("<>")
        message_ids = {term, bare, f"<{bare}>"} if bare else set()  # with or without the brackets
        return queryset.filter(Q(subscriber_id__in=readers) | Q(esp_message_id__in=message_ids)), False

    def get_urls(self):
        own = [
            path("preview/<int:subscriber_id>/", self.admin_site.admin_view(self.preview_view),
                 name="digest_delivery_preview"),
            path("<int:delivery_id>/email/", self.admin_site.admin_view(self.sent_email_view),
                 name="digest_delivery_email"),
        ]
        return own + super().get_urls()

    @admin.display(description="email")
    def email_links(self, delivery):
        preview = reverse("admin:digest_delivery_preview", args=[delivery.subscriber_id])
        if delivery.status != Delivery.Status.SENT:
            return format_html('<a href="{}">Preview digest for this subscriber</a>', preview)
        sent = reverse("admin:digest_delivery_email", args=[delivery.pk])
        return format_html('<a href="{}">The email as sent</a> · <a href="{}">Preview digest for this subscriber</a>',
                           sent, preview)

    def preview_view(self, request, subscriber_id):
        """This subscriber's digest of the latest edition, as the real email HTML (not sent, not recorded)."""
        if not self.has_view_permission(request):
            raise Http404
        digest = services.preview_digest(get_object_or_404(Subscriber, pk=subscriber_id))
        if digest is None:
            return HttpResponse("No edition of this subscriber's cadence yet.", content_type="text/plain")
        return HttpResponse(digest.html)

    def sent_email_view(self, request, delivery_id):
        if not self.has_view_permission(request):
            raise Http404
        delivery = get_object_or_404(Delivery.objects.select_related("edition", "subscriber"), pk=delivery_id)
        if calls.effective([delivery])[0].status != Delivery.Status.SENT:
            raise Http404
        return HttpResponse(render_delivery_html(delivery))

    @admin.action(permissions=["change"], description="Resend failed deliveries (never a sent one)")
    def resend_failed(self, request, queryset):
        try:
            resent = sum(services.resend_failed_delivery(d) for d in queryset)
        except pause.SendingPaused as refusal:  # raised before the first row is touched
            self.message_user(request, f"Nothing resent: {refusal}.", messages.ERROR)
            return
        self.message_user(request, f"{resent} delivery(ies) queued to be sent again.")
        if resent < len(queryset):
            self.message_user(
                request,
                f"{len(queryset) - resent} left alone: only failed deliveries the ESP never "
                "reported delivered, and in no ESP call still waiting for its answer, can be resent.",
                messages.WARNING,
            )


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["subscriber", "paper", "vote", "created_at"]
    list_filter = ["vote", ReaderFilter]
    search_fields = ["subscriber__email", "paper__title"]
    list_select_related = ["subscriber", "paper"]
    raw_id_fields = ["subscriber", "paper"]


@admin.register(BlockedPaper)
class BlockedPaperAdmin(admin.ModelAdmin):
    list_display = ["paper", "reason", "created_at"]
    search_fields = ["paper__title", "paper__arxiv_id"]
    raw_id_fields = ["paper"]
    fields = ["paper", "reason"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        else:
            obj.pk = services.block_paper(obj.paper, obj.reason).pk

    def get_readonly_fields(self, request, obj=None):
        return ["paper"] if obj else []

    # Deleting an entry un-blocks its paper: it goes back in the editions the block pulled it from.

    def delete_model(self, request, obj):
        services.unblock_paper(obj)

    def delete_queryset(self, request, queryset):
        for blocked in queryset:
            services.unblock_paper(blocked)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = [
        "received_at", "esp", "event_type", "recipient", "delivery", "clicked_paper", "applied_at", "outcome",
    ]
    list_filter = ["event_type", "esp"]
    search_fields = ["recipient", "message_id", "event_id"]
    raw_id_fields = ["delivery", "clicked_paper"]
    list_select_related = ["delivery__edition", "clicked_paper"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeliveryDay)
class DeliveryDayAdmin(admin.ModelAdmin):
    """The dashboard's kept counts of settled days: read only; a deleted day is counted again
    from the ledger on the dashboard's next view."""

    list_display = ["day", "claimed", "sent", "counted_at"]
    date_hierarchy = "day"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SendCall)
class SendCallAdmin(admin.ModelAdmin):
    """The ESP batch calls claimed per call (DIGEST_CLAIMS_PER_CALL), read only: their readers'
    rows stay ``pending`` until the call is settled onto them (by the beat, every 15 minutes);
    the delivery list shows them as their call says."""

    list_display = ["id", "edition", "status", "recipients", "esp_message_id", "created_at", "finished_at",
                    "settled_at", "reason"]
    list_filter = ["status", "edition"]
    search_fields = ["esp_message_id", "token"]
    search_help_text = "An ESP message id or a claim's token, exactly."
    ordering = ["-pk"]
    show_full_result_count = False
    list_select_related = ["edition"]
    exclude = ["papers"]
    readonly_fields = [f.name for f in SendCall._meta.fields if f.name != "papers"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        bare = term.strip("<>")
        return queryset.filter(Q(esp_message_id__in={term, bare, f"<{bare}>"}) | Q(token=term)), False

    @admin.display(description="recipients")
    def recipients(self, call):
        return len(call.delivery_ids)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        """A call is what says its readers were handed to the ESP while their rows are still
        ``pending``: deleted, they would be claimed and emailed again. Calls go only with an
        edition, and an edition with calls is not deleted here (``EditionAdmin``)."""
        return False


class PauseForm(forms.Form):
    reason = forms.CharField(
        max_length=300, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Shown on the dashboard and kept in the switch's history.",
    )


RESUMED_MESSAGE = (
    "Digest sending resumed. The beat's next tick (every 15 minutes) hands out every digest "
    "still due; readers left pending by the pause are handed out again once 15 minutes have "
    "passed since their claim. Nobody is sent an edition twice."
)


SWITCH_PAGE_TURNS = 10


@admin.register(SendingPause)
class SendingPauseAdmin(admin.ModelAdmin):
    """The switch that pauses all digest sending (``digest.pause``), on one page: its state and
    one button, to pause (saying why) or to resume, and the switch's last turns (``SwitchTurn``,
    from here or the command line). A turn made here is also in the admin's log."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        form = PauseForm()
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            if "resume" in request.POST:
                return self.resume_posted(request)
            form = PauseForm(request.POST)
            if form.is_valid():
                return self.pause_posted(request, form.cleaned_data["reason"])
        return self.switch_page(request, form)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The row is turned on the switch's page only, through ``digest.pause``."""
        return redirect("admin:digest_sendingpause_changelist")

    def switch_page(self, request, form):
        context = {
            **self.admin_site.each_context(request),
            "title": "Sending switch",
            "opts": self.model._meta,
            "switch": pause.the_switch(),
            "turns": pause.recent_turns(SWITCH_PAGE_TURNS),
            "more_turns": SwitchTurn.objects.count() > SWITCH_PAGE_TURNS,
            "form": form,
            "can_turn": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/digest/sendingpause/switch.html", context)

    def pause_posted(self, request, reason):
        switch, paused = pause.pause_sending(request.user.get_username(), reason, via=SwitchTurn.Via.ADMIN)
        if paused:
            self.log_change(request, switch, f"Paused all digest sending: {switch.reason}")
            self.message_user(request, "Digest sending paused: nothing more is handed to the ESP. Send tasks "
                              "stop before their next block of 1,000 readers; a batch already posted is not "
                              "recalled.", messages.WARNING)
        else:
            self.message_user(request, f"Already paused: {pause.summary(switch)}.", messages.WARNING)
        return redirect("admin:digest_sendingpause_changelist")

    def resume_posted(self, request):
        switch, resumed = pause.resume_sending(request.user.get_username(), via=SwitchTurn.Via.ADMIN)
        if resumed:
            self.log_change(request, switch, "Resumed digest sending.")
            self.message_user(request, RESUMED_MESSAGE)
        else:
            self.message_user(request, "Digest sending was not paused.", messages.WARNING)
        return redirect("admin:digest_sendingpause_changelist")


@admin.register(SwitchTurn)
class SwitchTurnAdmin(ReadOnlyAdmin):
    """Every turn of the sending switch, read only: the record of who stopped sending, when, from
    where and why. Turns are made only by turning the switch (``digest.pause``)."""

    list_display = ("at", "turn", "by", "via", "reason")
    list_filter = ("paused", "via")
    search_fields = ("by", "reason")
    date_hierarchy = "at"

    @admin.display(description="turn", ordering="paused")
    def turn(self, obj):
        return obj.action
