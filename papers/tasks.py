"""Celery tasks of the papers app (routed to the ``fetch`` queue)."""

from celery import shared_task

from . import services


@shared_task
def fetch_all_sources():
    """Fetch every configured source (settings.PAPER_SOURCES); returns a summary per source."""
    return services.fetch_configured_sources()
