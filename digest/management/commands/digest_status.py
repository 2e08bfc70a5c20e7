"""Print the day's editions, their sent/skipped/failed counts and the slowest steps."""

import json

from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize
from django.utils import timezone

from config.date_arguments import parse_day_up_to_today
from digest import pause
from digest.dashboard import daily_status

STEPS_SHOWN = 8


class Command(BaseCommand):
    help = ("Today's editions, how many digests were sent, skipped or failed, the slowest steps, and whether "
            "digest sending is paused.")

    def add_arguments(self, parser):
        parser.add_argument("--date", type=parse_day_up_to_today,
                            help="YYYY-MM-DD on the edition clock, today or earlier (default: today)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        status, switch = daily_status(options["date"]), pause.current_pause()
        self.stdout.write(as_json(status, switch) if options["json"] else as_text(status, switch))


def edition_line(status):
    if status.edition is None:
        return f"{status.cadence.capitalize()} edition: not built"
    counts = status.counts
    built = timezone.localtime(status.edition.built_at)
    return (
        f"{status.edition} ({status.papers} paper{pluralize(status.papers)}, built {built:%Y-%m-%d %H:%M}): "
        f"{counts['sent']} sent, {counts['skipped']} skipped, {counts['failed']} failed, "
        f"{counts['pending']} pending, {counts['sending']} sending"
    )


def as_text(status, switch=None):
    lines = [f"Paperboy status for {status.day:%A %Y-%m-%d}", ""]
    if switch is not None:
        lines += [f"{pause.headline(switch)}: nothing is sent until it is resumed.", ""]
    lines += [edition_line(edition) for edition in status.editions]
    lines += ["", "Slowest steps:"]
    if not status.steps:
        lines.append("  nothing ran on this day")
    width = max((len(step.name) for step in status.steps), default=0)
    lines += [
        f"  {step.name:<{width}}  {step.duration:>11}  {step.detail}"
        for step in status.steps[:STEPS_SHOWN]
    ]
    return "\n".join(lines)


def as_json(status, switch=None):
    return json.dumps(
        {
            "date": status.day.isoformat(),
            "sending_paused": paused_as_json(switch),
            "editions": [
                {
                    "cadence": edition.cadence,
                    "date": edition.edition.date.isoformat() if edition.edition else None,
                    "papers": edition.papers,
                    "deliveries": edition.counts,
                }
                for edition in status.editions
            ],
            "slowest_steps": [
                {"step": step.name, "seconds": round(step.seconds, 3), "detail": step.detail}
                for step in status.steps
            ],
        },
        indent=2,
    )


def paused_as_json(switch):
    if switch is None:
        return None
    return {"since": switch.paused_at.isoformat(), "by": switch.paused_by, "reason": switch.reason}
