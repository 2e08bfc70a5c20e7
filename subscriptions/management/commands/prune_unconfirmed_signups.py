from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from subscriptions import retention


class Command(BaseCommand):
    help = (
        "Delete the pending readers who never confirmed, signed up and last sent a confirmation "
        "more than UNCONFIRMED_SIGNUP_DAYS ago, and forget new addresses whose link has expired "
        "(beat runs this nightly; 0 keeps every signup)."
    )

    def handle(self, *args, **options):
        pruned = retention.prune_unconfirmed_signups()
        forgotten = f"new address{pluralize(pruned.new_addresses, 'es')} forgotten: {pruned.new_addresses}"
        if pruned.before is None:
            self.stdout.write(f"UNCONFIRMED_SIGNUP_DAYS is 0: every signup is kept; {forgotten}")
            return
        self.stdout.write(
            f"unconfirmed signups deleted: {pruned.readers} (signed up before "
            f"{pruned.before.isoformat(timespec='seconds')}); {forgotten}"
        )
