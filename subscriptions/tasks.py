"""Celery tasks of the subscriptions app: thin wrappers around its services."""

from celery import shared_task
from django.conf import settings

from . import retention, services


@shared_task(acks_late=True)
def import_subscribers(import_id):
    """Import an uploaded CSV (a SubscriberImport row); safe to deliver twice."""
    return services.run_import(import_id)


@shared_task(bind=True, acks_late=False)
def send_account_email(self, subscriber_id, name, previous=None):
    """A confirmation or "already subscribed" email; acknowledged on receipt, so a worker that
    dies while sending it cannot send it twice (the reader may ask again). One the mail system
    defers is tried again after each of ACCOUNT_EMAIL_RETRY_DELAYS (at most 10 minutes each),
    the address's slot kept meanwhile; after the last, the slot is given back. Run in-process
    (the embedded default, no broker to wait in), it is not tried again."""
    retries = len(settings.ACCOUNT_EMAIL_RETRY_DELAYS)
    tries_left = not self.request.is_eager and self.request.retries < retries
    try:
        return services.send_account_email(subscriber_id, name, previous, may_defer=tries_left)
    except services.AccountEmailDeferred as exc:
        countdown = services.account_email_retry_delay(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=retries)


@shared_task(acks_late=True)
def prune_unconfirmed_signups():
    return retention.prune_unconfirmed_signups().readers
