"""Celery tasks of the subscriptions app: thin wrappers around its services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def import_subscribers(import_id):
    """Import an uploaded CSV (a SubscriberImport row); safe to deliver twice."""
    return services.run_import(import_id)


@shared_task(acks_late=False)
def send_account_email(subscriber_id, name, previous=None):
    """A confirmation or "already subscribed" email; acknowledged on receipt, so a worker that
    dies while sending it cannot send it twice (the reader may ask again)."""
    return services.send_account_email(subscriber_id, name, previous)
