"""The ``--date`` argument of the management commands, as argparse types.

A bad date is refused while the arguments are parsed, before anything is fetched, built or
sent: argparse reports it as a usage error, and ``call_command`` as a ``CommandError``.
"""

import argparse
from datetime import date

from django.utils import timezone
from django.utils.dateparse import parse_date

ARXIV_FIRST_DAY = date(1991, 8, 14)  # no source has a paper from before it


def parse_day(value):
    """``value`` as a date: YYYY-MM-DD, a day of the calendar, not before arXiv began.

    The lower bound stops a mistyped year (0026 for 2026) long before the editions' look-back
    would run off the calendar's start."""
    try:
        day = parse_date(value)
    except ValueError:  # well formed but impossible, e.g. 2026-02-30
        day = None
    if day is None:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}")
    if day < ARXIV_FIRST_DAY:
        raise argparse.ArgumentTypeError(f"{day} is before arXiv began ({ARXIV_FIRST_DAY}): no paper is that old")
    return day


def parse_day_up_to_today(value):
    """``parse_day``, refusing a day after today on the edition clock (settings.TIME_ZONE).

    An edition is built once, from the papers fetched by then: built ahead of its day it would
    stay empty, and its readers would never get that day's papers."""
    day = parse_day(value)
    today = timezone.localdate()
    if day > today:
        raise argparse.ArgumentTypeError(
            f"{day} is in the future (today is {today} on the edition clock); "
            "editions are built from papers already fetched"
        )
    return day
