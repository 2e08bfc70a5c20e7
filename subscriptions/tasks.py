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
    return _tried_again_if_deferred(self, services.send_account_email, subscriber_id, name, previous)


@shared_task(bind=True, acks_late=False)
def send_address_changed_note(self, subscriber_id, old_email):
    """The note to the address a reader moved away from; acknowledged on receipt and tried
    again while the mail system defers it, like ``send_account_email``."""
    return _tried_again_if_deferred(self, services.send_address_changed_note, subscriber_id, old_email)


def _tried_again_if_deferred(task, send, *args):
    """``send(*args, may_defer=…)``, the task retried after each of ACCOUNT_EMAIL_RETRY_DELAYS
    while the mail system defers the email; the last try may not defer."""
    retries = len(settings.ACCOUNT_EMAIL_RETRY_DELAYS)
    tries_left = not task.request.is_eager and task.request.retries < retries
    try:
        return send(*args, may_defer=tries_left)
    except services.AccountEmailDeferred as exc:
        countdown = services.account_email_retry_delay(task.request.retries)
        raise task.retry(exc=exc, countdown=countdown, max_retries=retries)


@shared_task(acks_late=True)
def prune_unconfirmed_signups():
    return retention.prune_unconfirmed_signups().readers
