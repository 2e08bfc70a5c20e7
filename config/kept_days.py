"""Settings that say for how many days rows are kept before a nightly prune deletes them
(``DELIVERY_RETENTION_DAYS``, ``UNCONFIRMED_SIGNUP_DAYS``): 0 keeps them forever, and a value
set below what the product still needs is raised to that floor, with a system check's warning."""

from django.core.checks import Warning


def days_kept(days, minimum):
    """``days`` as the prune applies it: 0 (forever), else at least ``minimum``."""
    return max(days, minimum) if days > 0 else 0


def below_the_floor(setting, days, minimum, *, kept, since, keep_all, check_id):
    """The warning for ``setting`` set to ``days``, below its floor ``minimum``; [] otherwise.
    ``kept``: what the setting keeps; ``since``: why the floor; ``keep_all``: what 0 means."""
    if not 0 < days < minimum:
        return []
    return [
        Warning(
            f"{setting} is {days}: {kept} are kept {minimum} days all the same, since {since}.",
            hint=f"Set {setting} to 0 ({keep_all}) or to {minimum} or more.",
            id=check_id,
        )
    ]
