from django.conf import settings
from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from digest import webhooks


class Command(BaseCommand):
    help = "Delete applied ESP webhook events older than WEBHOOK_EVENT_RETENTION_DAYS (beat runs this nightly)."

    def handle(self, *args, **options):
        deleted = webhooks.prune_webhook_events()
        days = settings.WEBHOOK_EVENT_RETENTION_DAYS
        self.stdout.write(f"webhook events deleted: {deleted} (older than {days} day{pluralize(days)})")
