"""The operator dashboard (``/admin/dashboard/``) and the daily status report.

Every number comes from the subscriber table and the delivery ledger. Charts
are drawn server-side: this module computes the geometry (bars, lines, axis
labels) and ``templates/admin/paperboy_dashboard.html`` writes it out as
inline SVG, so the page needs no JavaScript and no CDN.

Subscribers have no status history, so "subscribers over time" is rebuilt
from their timestamps: pending from ``created_at``, active from
``confirmed_at``, and their current leaving status (unsubscribed, bounced,
complained, suppressed, paused) from ``unsubscribed_at``, or from
``updated_at`` when that is unset. Bounce and complaint rates are the
deliveries the ESP's webhooks stamped ``bounced_at`` / ``complained_at`` on a
day, over the digests sent that day.

At a million readers one computation reads a few million rows (6.5 s in
``bench/dashboard.py``), on the database the send uses. A view therefore
shows the figures kept in the cache (Redis in production): the same to every
staff view for ``DASHBOARD_CACHE_SECONDS``, then, while a worker computes
them again, the older ones; with when they were computed and a link to
compute them now (``kept_dashboard_context``).
"""

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.conf import settings
from django.contrib import admin
from django.contrib.postgres.fields import ArrayField
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Aggregate, Case, Count, DateField, DurationField, ExpressionWrapper, F, Max, Min, Q, Value, When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.shortcuts import render
from django.utils import timezone

from papers.models import FetchRun, Paper
from subscriptions.models import Subscriber

from . import calls, pause
from .ledger_days import claimed_per_day, local_midnight, sent_per_day
from .models import Cadence, Delivery, Feedback, WebhookEvent
from .scheduling import current_edition
from .services import moment_for

log = logging.getLogger(__name__)

WINDOW_DAYS = 30
TOP_PAPERS = 10
SPAM_RATE_WARNING = 0.001  # mailbox providers: keep complaints under 0.1% ...
SPAM_RATE_LIMIT = 0.003  # ... and never reach 0.3%

LEFT_STATUSES = {
    Subscriber.Status.UNSUBSCRIBED,
    Subscriber.Status.BOUNCED,
    Subscriber.Status.COMPLAINED,
    Subscriber.Status.SUPPRESSED,
    Subscriber.Status.PAUSED,
}
SUBSCRIBER_COLOURS = {
    "active": "#2e7d32",
    "pending": "#9e9e9e",
    "paused": "#fbc02d",
    "unsubscribed": "#5c6bc0",
    "bounced": "#ef6c00",
    "complained": "#c62828",
    "suppressed": "#6d4c41",
}
DELIVERY_COLOURS = {
    "sent": "#2e7d32",
    "skipped": "#9e9e9e",
    "failed": "#c62828",
    "sending": "#fbc02d",
    "pending": "#5c6bc0",
}


# --- Series ---------------------------------------------------------------


def window(days, today):
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def day_of(field_name, floor):
    """The local date of ``field_name``, raised to ``floor`` (so history before the
    window collapses into one group); NULL stays NULL."""
    return Case(
        When(**{f"{field_name}__lt": local_midnight(floor)}, then=Value(floor)),
        default=TruncDate(field_name),
        output_field=DateField(),
    )


def subscriber_history(days=WINDOW_DAYS, today=None):
    """{day: Counter(status)}: how many subscribers were in each status at the end of each day."""
    today = today or timezone.localdate()
    days_shown = window(days, today)
    floor = days_shown[0]
    groups = (
        Subscriber.objects.annotate(
            joined=day_of("created_at", floor),
            confirmed=day_of("confirmed_at", floor),
            left=Case(
                When(status__in=LEFT_STATUSES, then=Coalesce(day_of("unsubscribed_at", floor), day_of("updated_at", floor))),
                output_field=DateField(),
            ),
        )
        .values("status", "joined", "confirmed", "left")
        .annotate(n=Count("pk"))
        .order_by()
    )
    history = {day: Counter() for day in days_shown}
    for group in groups:
        for day in days_shown:
            status = status_on(group, day)
            if status:
                history[day][status] += group["n"]
    return history


def status_on(group, day):
    """The status a group of subscribers had at the end of ``day`` (None: not yet signed up)."""
    if group["joined"] > day:
        return None
    if group["left"] is not None and group["left"] <= day:
        return group["status"]
    if group["status"] == Subscriber.Status.PENDING:
        return "pending"
    if group["confirmed"] is None:
        # Never confirmed: a signup that left before it ever was active (its confirmation
        # bounced, say), or a reader active without a confirmation date.
        return "pending" if group["status"] in LEFT_STATUSES else "active"
    return "active" if group["confirmed"] <= day else "pending"


def delivery_history(days=WINDOW_DAYS, today=None):
    """{day: Counter(status)} of deliveries by the day they were claimed."""
    today = today or timezone.localdate()
    return claimed_per_day(window(days, today), today)


@dataclass
class RatePoint:
    day: date
    sent: int
    bounced: int
    complained: int

    @property
    def bounce_rate(self):
        return self.bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self):
        return self.complained / self.sent if self.sent else None


def daily_counts(queryset, field_name, since):
    """{local date: rows} of ``queryset`` by the day of ``field_name``."""
    return dict(rows_per_day(queryset, field_name, since))


def rows_per_day(queryset, field_name, since):
    return (
        queryset.filter(**{f"{field_name}__gte": since})
        .annotate(day=TruncDate(field_name))
        .values_list("day")
        .annotate(n=Count("pk"))
        .order_by()
    )


def rate_history(days=WINDOW_DAYS, today=None):
    """Per day: digests sent, and the bounces and complaints the ESP reported that day."""
    today = today or timezone.localdate()
    days_shown = window(days, today)
    since = local_midnight(days_shown[0])
    sent = sent_per_day(days_shown, today)
    bounced = daily_counts(Delivery.objects.all(), "bounced_at", since)
    complained = daily_counts(Delivery.objects.all(), "complained_at", since)
    return [RatePoint(day, sent[day], bounced.get(day, 0), complained.get(day, 0)) for day in days_shown]


def rate_summary(points):
    """Totals over ``points`` and how they compare with the mailbox providers' thresholds."""
    sent = sum(p.sent for p in points)
    bounced = sum(p.bounced for p in points)
    complained = sum(p.complained for p in points)
    complaint_rate = complained / sent if sent else 0.0
    if complaint_rate >= SPAM_RATE_LIMIT:
        verdict = "over the 0.3% limit: mail is being filtered as spam"
    elif complaint_rate >= SPAM_RATE_WARNING:
        verdict = "above 0.1%: act before it reaches 0.3%"
    else:
        verdict = "under 0.1%: healthy"
    bounce_rate = bounced / sent if sent else 0.0
    return {
        "sent": sent,
        "bounced": bounced,
        "complained": complained,
        "bounce_rate": bounce_rate,
        "bounce_rate_text": f"{bounce_rate:.2%}",
        "complaint_rate": complaint_rate,
        "complaint_rate_text": f"{complaint_rate:.2%}",
        "verdict": verdict,
        "healthy": complaint_rate < SPAM_RATE_WARNING,
    }


@dataclass
class PaperEngagement:
    paper: Paper
    clicks: int
    likes: int
    dislikes: int


def top_papers_of_week(limit=TOP_PAPERS, now=None):
    """The papers readers engaged with most in the last seven days.

    Clicks: digests in which the reader clicked one of the paper's links
    (``paper_clicks``). Likes and dislikes: feedback votes.
    """
    since = (now or timezone.now()) - timedelta(days=7)
    clicks = paper_clicks(since)
    votes = (
        Feedback.objects.filter(created_at__gte=since)
        .values("paper_id")
        .annotate(likes=Count("pk", filter=Q(vote=1)), dislikes=Count("pk", filter=Q(vote=-1)))
        .order_by()
    )
    likes = {row["paper_id"]: (row["likes"], row["dislikes"]) for row in votes}
    ranked = sorted(
        set(clicks) | set(likes),
        key=lambda pid: (clicks[pid] + likes.get(pid, (0, 0))[0], clicks[pid]),
        reverse=True,
    )[:limit]
    papers = Paper.objects.in_bulk(ranked)
    return [
        PaperEngagement(papers[pid], clicks[pid], *likes.get(pid, (0, 0)))
        for pid in ranked
        if pid in papers
    ]


def paper_clicks(since):
    """Per paper, the digests in which the reader clicked one of its links since ``since``.

    Each click event names the paper it was for once applied
    (``webhooks.clicked_paper``); clicks on unsubscribe, preferences or the
    edition page are for none. A reader clicking the same paper twice counts
    once. One aggregate query, however many clicks the week had.
    """
    rows = (
        WebhookEvent.objects.filter(
            Q(occurred_at__gte=since) | Q(occurred_at__isnull=True, received_at__gte=since),
            event_type="clicked", delivery__isnull=False, clicked_paper__isnull=False,
        )
        .values_list("clicked_paper")
        .annotate(digests=Count("delivery", distinct=True))
        .order_by()
    )
    return Counter(dict(rows))


# --- The day's status (also printed by `manage.py digest_status`) ----------


@dataclass
class EditionStatus:
    cadence: str
    edition: object  # the Edition, or None when it was not built
    papers: int = 0
    counts: dict = field(default_factory=dict)


@dataclass
class Step:
    name: str
    seconds: float
    detail: str = ""

    @property
    def duration(self):
        return duration_text(self.seconds)


def duration_text(seconds):
    """'0.42 s', '12.40 s', '3 min 04 s', '2 h 05 min', '2 d 03 h'."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s"


@dataclass
class DailyStatus:
    day: date
    editions: list
    steps: list


def edition_statuses(moment):
    statuses = []
    for cadence in Cadence.values:
        edition = current_edition(cadence, moment)
        status = EditionStatus(cadence, edition)
        if edition is not None:
            status.papers = edition.entries.filter(pulled=False).count()
            counts = dict(edition.deliveries.values_list("status").annotate(n=Count("pk")).order_by())
            counts = calls.with_carried(counts, calls.carried_counts(edition.send_calls.all()))
            status.counts = {s: counts.get(s, 0) for s in Delivery.Status.values}
        statuses.append(status)
    return statuses


SPREAD = (0.5, 0.95, 1.0)  # p50, p95 and the longest


class NearestRankPercentiles(Aggregate):
    """PostgreSQL's ``percentile_disc`` of the SPREAD fractions, one sort of the rows:
    the first value whose rank reaches the fraction, as ``duration_spread`` reads it."""

    function = "percentile_disc"
    template = "%(function)s(ARRAY[" + ", ".join(map(str, SPREAD)) + "]) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression):
        super().__init__(expression, output_field=ArrayField(DurationField()))


def duration_spreads(rows, count, *intervals):
    """(p50, p95, longest) of ``end - start`` over the ``count`` rows, for each (start, end),
    computed by the database: on PostgreSQL one query, elsewhere ``duration_spread``."""
    if connection.vendor != "postgresql":
        return [duration_spread(rows, start, end, count) for start, end in intervals]
    spreads = rows.aggregate(**{
        f"spread{n}": NearestRankPercentiles(duration(start, end)) for n, (start, end) in enumerate(intervals)
    })
    return [tuple(spreads[f"spread{n}"]) for n in range(len(intervals))]


def duration_spread(rows, start, end, count):
    """(p50, p95, longest) of ``end - start`` over ``count`` rows: for each, the value at its
    nearest rank in the rows sorted by the database (a query per value, no rows read by Python)."""
    ordered = rows.annotate(took=duration(start, end)).order_by("took", "pk").values_list("took", flat=True)
    return tuple(ordered[max(math.ceil(fraction * count) - 1, 0)] for fraction in SPREAD)


def duration(start, end):
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def fetch_steps(day):
    runs = FetchRun.objects.filter(
        started_at__gte=local_midnight(day), started_at__lt=local_midnight(day + timedelta(days=1))
    ).exclude(finished_at=None)
    return [
        Step(
            f"fetch {run.source}",
            (run.finished_at - run.started_at).total_seconds(),
            f"{run.status} at {timezone.localtime(run.started_at):%H:%M}, {run.created} new, {run.updated} updated",
        )
        for run in runs
    ]


def send_steps(edition):
    """How long one message took to send, how long deliveries waited for a worker,
    and the whole send window of an edition (computed in the database: an edition
    has a delivery per reader)."""
    rows = edition.deliveries.exclude(sent_at=None).exclude(sending_at=None)
    totals = rows.aggregate(n=Count("pk"), first=Min("created_at"), last=Max("sent_at"))
    if not totals["n"]:
        return []
    label = f"{edition.cadence} {edition.date}"
    (send_p50, send_p95, send_max), (wait_p50, wait_p95, wait_max) = duration_spreads(
        rows, totals["n"], ("sending_at", "sent_at"), ("created_at", "sending_at")
    )
    by_send_time = rows.annotate(took=duration("sending_at", "sent_at")).order_by("-took", "pk")
    slowest = by_send_time.values_list("pk", flat=True)[0]
    first, last = totals["first"], totals["last"]
    return [
        Step(f"send one message ({label})", send_max.total_seconds(),
             f"p50 {send_p50.total_seconds():.2f}s, p95 {send_p95.total_seconds():.2f}s, slowest delivery {slowest}"),
        Step(f"wait for a send worker ({label})", wait_max.total_seconds(),
             f"p50 {wait_p50.total_seconds():.2f}s, p95 {wait_p95.total_seconds():.2f}s"),
        Step(f"send window ({label})", (last - first).total_seconds(),
             f"{timezone.localtime(first):%a %H:%M:%S} to {timezone.localtime(last):%a %H:%M:%S}, {totals['n']} sent"),
    ]


def daily_status(day=None):
    """The day's editions with their delivery counts, and its slowest steps first; counted from the
    rows once every finished ESP call is settled onto them (``calls.settle_calls``)."""
    day = day or timezone.localdate()
    calls.settle_calls()
    editions = edition_statuses(moment_for(day))
    steps = fetch_steps(day)
    for status in editions:
        if status.edition is not None:
            steps += send_steps(status.edition)
    steps.sort(key=lambda step: step.seconds, reverse=True)
    return DailyStatus(day, editions, steps)


# --- Chart geometry ---------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT = 720, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 12, 10, 28


@dataclass
class Chart:
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    bars: list = field(default_factory=list)  # dicts: x, y, width, height, colour, title
    lines: list = field(default_factory=list)  # dicts: points, colour, dashed, label
    dots: list = field(default_factory=list)  # dicts: x, y, colour, title
    gridlines: list = field(default_factory=list)  # dicts: y, label
    x_labels: list = field(default_factory=list)  # dicts: x, text
    legend: list = field(default_factory=list)  # (colour, label)

    @property
    def plot_left(self):
        return MARGIN_LEFT

    @property
    def plot_right(self):
        return self.width - MARGIN_RIGHT

    @property
    def plot_bottom(self):
        return self.height - MARGIN_BOTTOM

    @property
    def plot_height(self):
        return self.plot_bottom - MARGIN_TOP

    def y_for(self, value, top):
        return round(self.plot_bottom - self.plot_height * value / top, 1)


def nice_ceiling(value):
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least ``value``."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def x_slots(chart, count):
    slot = (chart.plot_right - chart.plot_left) / max(count, 1)
    return slot, [chart.plot_left + slot * i for i in range(count)]


def add_gridlines(chart, top, formatter, steps=5):
    for i in range(steps + 1):
        value = top * i / steps
        chart.gridlines.append({"y": chart.y_for(value, top), "label": formatter(value)})


def add_day_labels(chart, days, slot, xs, every=5):
    for i, (day, x) in enumerate(zip(days, xs)):
        if (len(days) - 1 - i) % every == 0:
            chart.x_labels.append({"x": round(x + slot / 2, 1), "text": f"{day:%-d %b}"})


def stacked_bar_chart(history, colours):
    """Stacked bars, one per day, one segment per status (in ``colours`` order)."""
    chart = Chart()
    days = list(history)
    top = nice_ceiling(max((sum(c.values()) for c in history.values()), default=0))
    slot, xs = x_slots(chart, len(days))
    for day, x in zip(days, xs):
        base = 0
        for status, colour in colours.items():
            count = history[day].get(status, 0)
            if not count:
                continue
            y_top, y_base = chart.y_for(base + count, top), chart.y_for(base, top)
            chart.bars.append({
                "x": round(x + slot * 0.1, 1), "y": y_top, "width": round(slot * 0.8, 1),
                "height": round(y_base - y_top, 1), "colour": colour,
                "title": f"{day:%a %-d %b}: {count} {status}",
            })
            base += count
    add_gridlines(chart, top, lambda v: f"{v:g}")
    add_day_labels(chart, days, slot, xs)
    present = {status for counts in history.values() for status in counts}
    chart.legend = [(colour, status) for status, colour in colours.items() if status in present]
    return chart


def rate_chart(points):
    """Daily bounce and complaint rates against the 0.1% and 0.3% thresholds."""
    chart = Chart()
    rates = [r for p in points for r in (p.bounce_rate, p.complaint_rate) if r is not None]
    top = nice_ceiling(max([SPAM_RATE_LIMIT * 1.5, *rates]))
    slot, xs = x_slots(chart, len(points))
    series = (("bounce rate", "bounce_rate", "#ef6c00"), ("complaint rate", "complaint_rate", "#c62828"))
    for label, attribute, colour in series:
        plotted = [
            (round(x + slot / 2, 1), chart.y_for(getattr(p, attribute), top), p)
            for p, x in zip(points, xs)
            if getattr(p, attribute) is not None
        ]
        chart.lines.append({"points": " ".join(f"{x},{y}" for x, y, _ in plotted), "colour": colour,
                            "dashed": False, "label": label})
        chart.dots += [
            {"x": x, "y": y, "colour": colour,
             "title": f"{p.day:%a %-d %b}: {label} {getattr(p, attribute):.3%} of {p.sent} sent"}
            for x, y, p in plotted
        ]
        chart.legend.append((colour, label))
    for threshold, colour in ((SPAM_RATE_WARNING, "#fbc02d"), (SPAM_RATE_LIMIT, "#b71c1c")):
        y = chart.y_for(threshold, top)
        chart.lines.append({"points": f"{chart.plot_left},{y} {chart.plot_right},{y}", "colour": colour,
                            "dashed": True, "label": f"{threshold:.1%} threshold"})
        chart.legend.append((colour, f"{threshold:.1%} threshold"))
    add_gridlines(chart, top, lambda v: f"{v:.2%}")
    add_day_labels(chart, [p.day for p in points], slot, xs)
    return chart


def engagement_bars(rows, width=240):
    """Bar lengths (in px) for the clicks and likes of the top papers."""
    top = max([r.clicks for r in rows] + [r.likes for r in rows] + [1])
    return [
        {"row": r, "clicks_width": round(width * r.clicks / top, 1), "likes_width": round(width * r.likes / top, 1)}
        for r in rows
    ]


# --- The view ---------------------------------------------------------------


def dashboard_context(today=None):
    """The dashboard's figures (``daily_status`` settles the finished ESP calls first, so that
    the charts after it count their rows)."""
    today = today or timezone.localdate()
    status = daily_status(today)
    rates = rate_history(today=today)
    return {
        "title": "Paperboy dashboard",
        "today": status,
        "subscribers_chart": stacked_bar_chart(subscriber_history(today=today), SUBSCRIBER_COLOURS),
        "deliveries_chart": stacked_bar_chart(delivery_history(today=today), DELIVERY_COLOURS),
        "rates_chart": rate_chart(rates),
        "rate_summaries": [
            ("Last 7 days", rate_summary(rates[-7:])),
            (f"Last {WINDOW_DAYS} days", rate_summary(rates)),
        ],
        "top_papers": engagement_bars(top_papers_of_week()),
        "window_days": WINDOW_DAYS,
    }


KEPT_CONTEXT_KEY = "digest:dashboard:{day}"
REFRESHING_KEY = "digest:dashboard:{day}:refreshing"
KEPT_LIFETIMES = 10  # figures are shown, said to be older, for 10 × DASHBOARD_CACHE_SECONDS at most
REFRESH_WAIT_SECONDS = 300  # a refresh not done by then (its worker gone) is asked for again


def kept_dashboard_context(*, recompute=False):
    """``dashboard_context()`` as last computed, for the page: whoever views it in the
    DASHBOARD_CACHE_SECONDS after they were computed is shown the same figures.

    Older figures are still shown while a worker computes them again
    (``ask_for_fresh_figures``): at a million readers counting takes seconds
    of reads on the send's database, which the first view of each minute
    waited for, and views at the same moment each did. The figures are
    computed during the view only when there are none (the day's first view,
    or none for 10 × the kept seconds), when asked for (``recompute``), or
    when keeping is off (0). The context says when they were computed
    (``computed_at``) and whether newer ones are on their way (``refreshing``).

    The page is where an operator looks when something is down, so a cache that does not
    answer only means the figures are computed on every view."""
    today, seconds = timezone.localdate(), settings.DASHBOARD_CACHE_SECONDS
    if seconds <= 0:
        return computed_dashboard_context(today)
    key = KEPT_CONTEXT_KEY.format(day=today.isoformat())
    context = None if recompute else unless_cache_fails(cache.get, key)
    if context is None:
        return keep_dashboard_figures(today)
    if older_than(context, seconds):
        refreshing = ask_for_fresh_figures(today)
        # Where tasks run in the view itself (the embedded default) the fresh figures are kept already.
        context = unless_cache_fails(cache.get, key) or context
        context = {**context, "refreshing": refreshing and older_than(context, seconds)}
    return context


def older_than(context, seconds):
    return timezone.now() - context["computed_at"] >= timedelta(seconds=seconds)


def computed_dashboard_context(today):
    seconds = max(settings.DASHBOARD_CACHE_SECONDS, 0)
    return {**dashboard_context(today), "computed_at": timezone.now(), "kept_seconds": seconds, "refreshing": False}


def keep_dashboard_figures(today=None):
    """Compute the dashboard's figures and keep them for the views to come (the refresh task's work)."""
    today = today or timezone.localdate()
    context = computed_dashboard_context(today)
    seconds = settings.DASHBOARD_CACHE_SECONDS
    if seconds > 0:
        unless_cache_fails(cache.set, KEPT_CONTEXT_KEY.format(day=today.isoformat()), context,
                           seconds * KEPT_LIFETIMES)
    unless_cache_fails(cache.delete, REFRESHING_KEY.format(day=today.isoformat()))
    return context


def ask_for_fresh_figures(today):
    """Have a worker compute the figures again, once however many views ask; True while it is
    on its way. A broker that does not take the task leaves the older figures shown (logged)."""
    from .tasks import refresh_dashboard_figures

    refreshing = REFRESHING_KEY.format(day=today.isoformat())
    asked = unless_cache_fails(cache.add, refreshing, True, REFRESH_WAIT_SECONDS)
    if asked is None:
        return False
    if not asked:
        return True  # another view asked already
    try:
        refresh_dashboard_figures.apply_async(retry=False)
    except Exception:  # the broker's own errors (kombu.OperationalError, redis errors, …)
        log.warning("dashboard refresh could not be queued; older figures shown", exc_info=True)
        unless_cache_fails(cache.delete, refreshing)
        return False
    return True


def unless_cache_fails(method, *args):
    """``method(*args)`` of the cache, or None (logged) when the cache's server does not answer."""
    try:
        return method(*args)
    except Exception:  # each cache backend raises its own errors (redis.ConnectionError, …)
        log.warning("dashboard cache %s failed; figures computed on this view if need be", method.__name__,
                    exc_info=True)
        return None


def dashboard_view(request):
    """Staff only: wrapped in ``admin.site.admin_view`` in config/urls.py. ``?recompute=1``
    computes the figures now instead of showing the kept ones. Whether sending is paused is read
    on every view (one short query), never from the kept figures."""
    kept = kept_dashboard_context(recompute=request.GET.get("recompute") == "1")
    context = {**admin.site.each_context(request), **kept, "sending_pause": pause.current_pause()}
    return render(request, "admin/paperboy_dashboard.html", context)
