"""Reading a large queryset a page at a time, without a server-side cursor.

Django's ``.iterator()`` streams through a server-side cursor, declared ``WITH HOLD``
outside a transaction, and fetches from it in later statements. Behind PgBouncer in
transaction pooling each of those statements may run on another server connection, one
where the cursor does not exist. A page read after the last key of the page before is a
query of its own: it works under any pooling mode, holds nothing open between pages, and
walks an index from where the page before stopped.
"""

from operator import attrgetter

PAGE_SIZE = 2000


def pages_after(read_page, size, key, last=None):
    """The rows of ``read_page(last)``, page after page, each read after the ``key`` of the
    last row before, until a page comes back shorter than ``size`` (so a full last page costs
    one more, empty, read). ``read_page`` makes one query that returns at most ``size`` rows."""
    while True:
        page = read_page(last)
        yield from page
        if len(page) < size:
            return
        last = key(page[-1])


def in_pages(queryset, by="pk", size=PAGE_SIZE):
    """The rows (model instances) of ``queryset`` in order of ``by``, ``size`` at a time.

    ``by`` must be unique among the rows, and is best the last column of an index that
    the query's equality filters lead into (the primary key; ``subscriber_id`` for one
    edition's deliveries), so that each page starts where the one before stopped. Rows
    added or changed meanwhile are seen if their key lies ahead of the last one read."""
    ordered = queryset.order_by(by)

    def read_page(last):
        after = ordered if last is None else ordered.filter(**{f"{by}__gt": last})
        return list(after[:size])

    return pages_after(read_page, size, attrgetter(by))


def aggregate_per_key(queryset, key, name, aggregate):
    """``{key: aggregate}`` over the rows of ``queryset`` grouped by ``key``, in one query: a
    figure for each row of a page (its latest signal, its number of papers) without a query
    per row. Keys without rows are missing."""
    grouped = queryset.order_by().values(key).annotate(**{name: aggregate})
    return dict(grouped.values_list(key, name))
