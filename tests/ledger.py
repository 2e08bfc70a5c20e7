"""The delivery ledger as the product reads it: each delivery's row, or, while the ESP call that
carried it is not settled onto the row yet, that call's outcome (``digest.calls.effective``)."""

from digest import calls
from digest.models import Delivery


def deliveries(rows=None):
    """``rows`` (default: every delivery, with its subscriber) as the ledger says they are."""
    return calls.effective(Delivery.objects.select_related("subscriber") if rows is None else rows)


def count(status, rows=None):
    return sum(1 for delivery in deliveries(rows) if delivery.status == status)


def of(subscriber, rows=None):
    """``subscriber``'s one delivery (of the ``rows`` given, else of all)."""
    (delivery,) = deliveries((Delivery.objects.all() if rows is None else rows).filter(subscriber=subscriber))
    return delivery
