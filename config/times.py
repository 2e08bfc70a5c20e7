"""Aware times from outside (a feed, an ESP's webhook, an imported file), put in UTC before the
database stores them.

Python keeps a time in its own offset, and allows offsets PostgreSQL refuses: up to ±23:59 (it
takes ±15:59) and with fractions of a second (it takes whole seconds). Sent as they are, such a
time fails the insert, and with it the transaction around it. In UTC every time is one
PostgreSQL takes, once it lies between years 1 and 9999 there: ``9999-12-31T23:59:59-01:00`` is
a valid datetime in year 10000 UTC, which PostgreSQL stores and psycopg cannot read back, so
that every later query that reads the row fails.
"""

from datetime import UTC


def in_utc(moment):
    """The aware ``moment`` in UTC; None when it lies outside years 1-9999 there."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None
