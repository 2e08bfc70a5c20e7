"""Celery tasks of the subscriptions app: thin wrappers around its services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def import_subscribers(import_id):
    """Import an uploaded CSV (a SubscriberImport row); safe to deliver twice."""
    return services.run_import(import_id)
