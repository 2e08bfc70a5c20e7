from django.conf import settings
from django.core.checks import register

from config.kept_days import below_the_floor


@register()
def unconfirmed_signup_days_long_enough(app_configs, **kwargs):
    from .retention import MIN_UNCONFIRMED_DAYS

    return below_the_floor(
        "UNCONFIRMED_SIGNUP_DAYS", settings.UNCONFIRMED_SIGNUP_DAYS, MIN_UNCONFIRMED_DAYS,
        kept="signups nobody confirmed", since="a confirmation link works for 7 days",
        keep_all="keep them", check_id="subscriptions.W001",
    )
