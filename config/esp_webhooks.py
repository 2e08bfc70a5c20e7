"""anymail's webhook URLs (``/anymail/<esp>/tracking/`` and the rest), imported on the first one.

``include("anymail.urls")`` imports the webhook module of every ESP anymail
knows, Amazon SES's among them, which imports boto3: about 0.6 s added to the
first ``reverse()`` of every process, a Celery worker's first digest included,
for views that most processes never serve. Here the paths are the same and are
resolved against ``anymail.urls`` only when a request reaches one.
"""

from django.urls import resolve
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt  # every anymail webhook view is: the ESP cannot send a CSRF token
def anymail_webhook(request, rest):
    """Hand the request to the anymail view ``rest`` names (a 404 if none does)."""
    match = resolve(f"/{rest}", urlconf="anymail.urls")
    return match.func(request, *match.args, **match.kwargs)
