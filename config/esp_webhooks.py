"""anymail's webhook URLs (``/anymail/<esp>/tracking/`` and the rest), imported on the first one.

``include("anymail.urls")`` imports the webhook module of every ESP anymail
knows, Amazon SES's among them, which imports boto3: about half a second
added to the first ``reverse()`` of every process (a send worker's first
digest links included) and 15 MB to its memory, for views most processes
never serve. Here the paths are the same, and they are resolved against
``anymail.urls`` only when a request reaches one.
"""

from django.contrib.auth.decorators import login_not_required
from django.urls import resolve
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt  # as every anymail webhook view is: an ESP has neither a CSRF token nor a login
@login_not_required
def anymail_webhook(request, rest):
    """Hand the request to the anymail view ``rest`` names (a 404 if none does)."""
    match = resolve(f"/{rest}", urlconf="anymail.urls")
    return match.func(request, *match.args, **match.kwargs)
