"""Papers, their authors, their daily signals and the fetch runs, for operators to look at.

Everything here is read only. Ingestion owns every stored field of a paper: on each fetch
a field is replaced by the source that is its reference, or filled by any source while it
is blank (``papers.ingest``), so an edit made here would be undone by the next fetch or
kept, depending on the field. Signals and fetch runs are recorded facts that the ranker and
the health check read. The one thing an operator decides about a paper, keeping it out of
the digests, is the blocklist (``digest.BlockedPaper``), linked from each paper's page.

The tables grow without bound (a signal per paper and day), so a list reads only its
page: what a column needs for the page's rows comes in one query, and no list shows the
"of N total" count.
"""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Max, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from config.admin_filters import OneRowFilter
from config.paging import aggregate_per_key
from digest.models import BlockedPaper, EditionPaper

from .models import Author, Authorship, FetchRun, Paper, PaperSignal
from .sources import source_names
from .sources.base import ARXIV_ID_RE

# A paper's page shows its latest signals and editions, an author's page their latest papers;
# the rest are a link away.
SIGNALS_SHOWN = 30
PAPERS_SHOWN = 30
EDITIONS_SHOWN = 10


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewed, never added, changed or deleted here."""

    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def papers_matching(term):
    """Papers whose title contains ``term``, whose arXiv id it is (a bare id, a versioned one,
    ``arXiv:…`` or an abs/PDF link), or one of whose authors' names contains it."""
    term = term.strip()
    if not term:
        return Q()
    keys = {term}
    found = ARXIV_ID_RE.search(term)
    if found:
        keys.add(found.group("id"))
    by_author = Authorship.objects.filter(author__name__icontains=term).values("paper_id")
    return Q(title__icontains=term) | Q(arxiv_id__in=keys) | Q(pk__in=by_author)


def paper_link(paper):
    return format_html('<a href="{}">{}</a>', reverse("admin:papers_paper_change", args=[paper.pk]), paper)


class AuthorFilter(OneRowFilter):
    title = "author"
    parameter_name = "author"
    related_model = Author

    def rows_of(self, papers, author_id):
        return papers.filter(pk__in=Authorship.objects.filter(author_id=author_id).values("paper_id"))


class PaperFilter(OneRowFilter):
    title = "paper"
    parameter_name = "paper"
    related_model = Paper

    def rows_of(self, signals, paper_id):
        return signals.filter(paper_id=paper_id)


class PaperSourceFilter(admin.SimpleListFilter):
    """The source that first reported the paper. The choices are the known sources: listing
    the values found in the table would read all of it on every view."""

    title = "first reported by"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [(name, name) for name in source_names()]

    def queryset(self, request, queryset):
        return queryset.filter(source=self.value()) if self.value() else queryset


class FiguredChangeList(ChangeList):
    """A change list whose admin adds a figure to each row of the page (``add_page_figures``),
    in one query for the page rather than one per row."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = list(self.result_list)
        self.model_admin.add_page_figures(self.result_list)


@admin.register(Paper)
class PaperAdmin(ReadOnlyAdmin):
    list_display = [
        "title", "ids", "published_at", "organization", "upvotes", "latest_signal", "first_seen_at", "last_changed",
        "blocked",
    ]
    list_filter = [PaperSourceFilter, "first_seen_at", "published_at", AuthorFilter]
    list_select_related = ["block"]
    search_fields = ["title"]  # the search box; what it matches is papers_matching
    search_help_text = "Part of a title or of an author's name, or an arXiv id (with or without version)."
    fieldsets = [
        (None, {
            "description": "Ingestion owns every field of a paper: each fetch replaces it from the "
                           "source that is its reference, or fills it while it is blank, so nothing "
                           "here is edited by hand. To keep a paper out of the digests, block it.",
            "fields": ["title", "arxiv_id", "version", "source", "links"],
        }),
        ("Digests", {"fields": ["blocklist", "in_editions"]}),
        ("Authors", {"fields": ["author_list", "authors_count", "organization"]}),
        ("Content", {
            "fields": ["abstract", "ai_summary", "ai_keywords", "primary_category", "categories", "comment",
                       "journal_ref", "doi"],
        }),
        ("Signals", {"fields": ["upvotes", "num_comments", "github_stars", "recent_signals"]}),
        ("Dates", {"fields": ["published_at", "revised_at", "withdrawn_at", "first_seen_at", "updated_at"]}),
    ]
    readonly_fields = ["links", "blocklist", "in_editions", "author_list", "recent_signals"]

    def get_changelist(self, request, **kwargs):
        return FiguredChangeList

    def add_page_figures(self, papers):
        latest = aggregate_per_key(
            PaperSignal.objects.filter(paper_id__in=[p.pk for p in papers]), "paper_id", "day", Max("date")
        )
        for paper in papers:
            paper.latest_signal_day = latest.get(paper.pk)

    def get_search_results(self, request, queryset, search_term):
        return queryset.filter(papers_matching(search_term)), False

    @admin.display(description="ids")
    def ids(self, paper):
        """The arXiv id (none for the bundled corpus's synthetic keys) and, when the paper is on
        Hugging Face, its page there (Hugging Face names papers by their arXiv id)."""
        ids = []
        if paper.has_arxiv_id:
            ids.append(format_html('<a href="{}">arXiv {}</a>', paper.arxiv_url, paper.arxiv_id)
                       if paper.arxiv_url else format_html("arXiv {}", paper.arxiv_id))
        if paper.hf_url:
            ids.append(format_html('<a href="{}">HF</a>', paper.hf_url))
        return format_html_join(" · ", "{}", ((i,) for i in ids)) or "-"

    @admin.display(description="latest signal")
    def latest_signal(self, paper):
        return paper.latest_signal_day

    @admin.display(description="last changed", ordering="updated_at")
    def last_changed(self, paper):
        return paper.updated_at

    @admin.display(description="blocked", boolean=True)
    def blocked(self, paper):
        return hasattr(paper, "block")

    @admin.display(description="links")
    def links(self, paper):
        named = [
            (url, label)
            for url, label in [
                (paper.arxiv_url, "arXiv"), (paper.pdf_url, "PDF"), (paper.hf_url, "Hugging Face"),
                (paper.code_url, "code"), (paper.project_url, "project page"),
            ]
            if url
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', named) or "-"

    @admin.display(description="blocklist")
    def blocklist(self, paper):
        entry = BlockedPaper.objects.filter(paper=paper).first()
        if entry is None:
            add = reverse("admin:digest_blockedpaper_add") + f"?paper={paper.pk}"
            return format_html('Not blocked. <a href="{}">Block it from every digest not yet sent</a>', add)
        change = reverse("admin:digest_blockedpaper_change", args=[entry.pk])
        return format_html(
            'Blocked since {} ({}): left out of every edition page and every digest not yet sent. '
            '<a href="{}">Its blocklist entry</a>',
            entry.created_at.date(), entry.reason or "no reason given", change,
        )

    @admin.display(description="editions")
    def in_editions(self, paper):
        entries = (
            EditionPaper.objects.filter(paper=paper).select_related("edition").order_by("-edition__date")
            [:EDITIONS_SHOWN]
        )
        rows = [
            (reverse("admin:digest_edition_change", args=[e.edition_id]), e.edition, e.rank,
             ", pulled" if e.pulled else "")
            for e in entries
        ]
        return format_html_join(", ", '<a href="{}">{}</a> (rank {}{})', rows) or "in no edition"

    @admin.display(description="authors")
    def author_list(self, paper):
        authorships = Authorship.objects.filter(paper=paper).select_related("author").order_by("position")
        links = [(reverse("admin:papers_author_change", args=[a.author_id]), a.author.name) for a in authorships]
        return format_html_join(", ", '<a href="{}">{}</a>', links) or ", ".join(paper.author_names) or "-"

    @admin.display(description="latest signals")
    def recent_signals(self, paper):
        signals = list(paper.signals.order_by("-date")[:SIGNALS_SHOWN])
        if not signals:
            return "None: only the Hugging Face sources record signals."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((s.date, s.upvotes, s.num_comments, s.github_stars) for s in signals),
        )
        everything = reverse("admin:papers_papersignal_changelist") + f"?paper={paper.pk}"
        return format_html(
            "<table><thead><tr><th>day</th><th>upvotes</th><th>comments</th><th>GitHub stars</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">All signals of this paper</a> (newest first)</p>',
            rows, everything,
        )




@admin.register(Author)
class AuthorAdmin(ReadOnlyAdmin):
    """Authors are made from the papers' author lists by ingestion, one row per name."""

    list_display = ["name", "papers_link"]
    search_fields = ["name"]
    ordering = ["name"]
    fields = ["name", "latest_papers"]
    readonly_fields = ["latest_papers"]

    def get_changelist(self, request, **kwargs):
        return FiguredChangeList

    def add_page_figures(self, authors):
        counts = aggregate_per_key(
            Authorship.objects.filter(author_id__in=[a.pk for a in authors]), "author_id", "count", Count("id")
        )
        for author in authors:
            author.paper_count = counts.get(author.pk, 0)

    @admin.display(description="papers")
    def papers_link(self, author):
        url = reverse("admin:papers_paper_changelist") + f"?author={author.pk}"
        return format_html('<a href="{}">{}</a>', url, author.paper_count)

    @admin.display(description="papers")
    def latest_papers(self, author):
        papers = author.papers.order_by("-first_seen_at")[:PAPERS_SHOWN]
        listed = format_html_join("", "<li>{}</li>", ((paper_link(p),) for p in papers))
        everything = reverse("admin:papers_paper_changelist") + f"?author={author.pk}"
        return format_html(
            '<ul>{}</ul><p><a href="{}">All {} papers</a> (latest {} above)</p>',
            listed, everything, author.papers.count(), PAPERS_SHOWN,
        )


@admin.register(PaperSignal)
class PaperSignalAdmin(ReadOnlyAdmin):
    """A paper's upvotes, comments and stars as a Hugging Face source saw them on one day.

    Newest first by id: a day's signals are written on that day (and a later fetch the same
    day updates them in place), so ids follow the days, and the primary key is indexed where
    the date alone is not. A signal does not record which source wrote it (``hf``, or
    ``hf-html`` in its place), so the list is filtered by day and by paper, not by source.
    """

    list_display = ["date", "paper_title", "upvotes", "num_comments", "github_stars", "recorded_at"]
    list_filter = ["date", PaperFilter]
    list_select_related = ["paper"]
    search_fields = ["paper__title"]  # the search box; what it matches is papers_matching
    search_help_text = "Part of a paper's title or of an author's name, or an arXiv id."
    ordering = ["-pk"]
    fields = ["paper", "date", "upvotes", "num_comments", "github_stars", "recorded_at"]

    @admin.display(description="paper", ordering="paper__title")
    def paper_title(self, signal):
        return paper_link(signal.paper)

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(paper__in=Paper.objects.filter(papers_matching(search_term)).values("pk")), False


@admin.register(FetchRun)
class FetchRunAdmin(ReadOnlyAdmin):
    """What each fetch of each source did, or why it failed: where to look when a source
    breaks (the deep health check reads the same rows)."""

    list_display = [
        "started_at", "source", "status", "error_line", "duration", "created", "updated", "unchanged", "skipped",
    ]
    list_filter = ["status", "source", "started_at"]
    search_fields = ["error"]
    search_help_text = "Part of the error, such as 429 or timed out."
    fields = [
        "source", "status", "started_at", "finished_at", "duration", "created", "updated", "unchanged", "skipped",
        "error",
    ]
    readonly_fields = ["duration"]

    @admin.display(description="duration")
    def duration(self, run):
        if run.finished_at is None:
            return "-"
        return f"{(run.finished_at - run.started_at).total_seconds():.1f} s"

    @admin.display(description="error")
    def error_line(self, run):
        return Truncator(run.error.splitlines()[0]).chars(120) if run.error else ""
