"""Aware times from outside (a feed, an ESP's webhook) checked before the database stores them.

Python keeps a time in its own offset, so ``9999-12-31T23:59:59-01:00`` is a valid datetime, but
in UTC it lies in year 10000 (and ``0001-01-01T00:30:00+01:00`` before year 1). PostgreSQL stores
such a time, and psycopg cannot read it back: every later query that reads the row fails.
"""

from datetime import UTC


def fits_in_utc(moment):
    """Whether the aware ``moment`` lies between year 1 and year 9999 once it is in UTC."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True
