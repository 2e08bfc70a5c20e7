from django.conf import settings
from django.core.checks import Warning, register


@register()
def unconfirmed_signup_days_long_enough(app_configs, **kwargs):
    from .retention import MIN_UNCONFIRMED_DAYS

    days = settings.UNCONFIRMED_SIGNUP_DAYS
    if not 0 < days < MIN_UNCONFIRMED_DAYS:
        return []
    return [
        Warning(
            f"UNCONFIRMED_SIGNUP_DAYS is {days}: signups nobody confirmed are kept {MIN_UNCONFIRMED_DAYS} "
            "days all the same, since a confirmation link works for 7 days.",
            hint=f"Set UNCONFIRMED_SIGNUP_DAYS to 0 (keep them) or to {MIN_UNCONFIRMED_DAYS} or more.",
            id="subscriptions.W001",
        )
    ]
