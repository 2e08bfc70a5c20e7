from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from digest import retention


class Command(BaseCommand):
    help = (
        "Delete the final delivery rows and settled ESP calls of editions older than "
        "DELIVERY_RETENTION_DAYS (beat runs this nightly; 0 keeps every digest)."
    )

    def handle(self, *args, **options):
        pruned = retention.prune_old_digests()
        if pruned.before is None:
            self.stdout.write("DELIVERY_RETENTION_DAYS is 0: every digest is kept")
            return
        self.stdout.write(
            f"digests deleted: {pruned.deliveries} deliveries and {pruned.calls} ESP "
            f"call{pluralize(pruned.calls)} of editions before {pruned.before.isoformat()}"
        )
