"""anymail's webhook URLs (``/anymail/<esp>/tracking/`` and the rest), imported on the first one.

``include("anymail.urls")`` imports the webhook module of every ESP anymail
knows, Amazon SES's among them, which imports boto3: about half a second
added to the first ``reverse()`` of every process (a send worker's first
digest links included) and 15 MB to its memory, for views most processes
never serve. Here the paths are the same, and they are resolved against
``anymail.urls`` only when a request reaches one.

Every webhook view is served with ``RefusingBadRequests``: anymail's views
read the body as the ESP would send it, and raise whatever Python raises when
it is not (a ``JSONDecodeError``, a ``KeyError``, an ``AnymailAPIError`` for
SES's "Unknown SNS message type"), which Django answers with a 500 and an
error-level traceback. Anyone can post junk to these URLs, so such a request
is refused with a 400 and one warning line instead; so is a request to the
webhook of an ESP whose settings are missing, since it cannot be checked.
"""

import logging
from functools import cache

from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import HttpResponseBadRequest
from django.urls import resolve
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt

log = logging.getLogger(__name__)

# What anymail's validators and parsers raise on a body that is not what the ESP sends
# (an ``OverflowError`` for a UNIX time Python cannot hold). Errors of our own side (a
# database or network failure) are none of these: they stay a 500, which an ESP retries.
MALFORMED = (AnymailError, ImproperlyConfigured, ValueError, TypeError, LookupError, AttributeError, OverflowError)


class RefusingBadRequests:
    """Mixin for an anymail webhook view: a malformed or unauthenticated POST is a logged 400.

    The log line names the path and the kind of error, never the exception's
    message: anymail quotes the body in some of them.
    """

    unconfigured = None

    def __init__(self, **kwargs):
        try:
            super().__init__(**kwargs)
        except ImproperlyConfigured as err:  # e.g. POSTAL_WEBHOOK_KEY unset: nothing to check a request with
            self.unconfigured = err

    def post(self, request, *args, **kwargs):
        try:
            if self.unconfigured:
                raise AnymailWebhookValidationFailure("webhook settings missing") from self.unconfigured
            return super().post(request, *args, **kwargs)
        except SuspiciousOperation as refusal:
            return refused(request, refusal)

    def run_validators(self, request):
        try:
            super().run_validators(request)
        except AnymailWebhookValidationFailure:
            raise
        except MALFORMED as err:
            raise AnymailWebhookValidationFailure("malformed webhook request") from err

    def parse_events(self, request):
        try:
            return super().parse_events(request)
        except MALFORMED as err:
            raise AnymailWebhookValidationFailure("malformed webhook body") from err


def refused(request, refusal):
    """A 400, logged at warning level with the type of the error behind it, not its text."""
    reason = type(refusal.__cause__ or refusal).__name__
    response = HttpResponseBadRequest()
    log_response(
        "ESP webhook refused path=%s reason=%s", request.path, reason,
        response=response, request=request, logger=log, level="warning",
    )
    return response


def checked(view_class):
    """``view_class`` with ``RefusingBadRequests`` mixed in."""
    return type(view_class.__name__, (RefusingBadRequests, view_class), {})


@cache
def checked_view(view):
    """The view function of ``view``'s class, checked (made once per anymail view)."""
    return checked(view.view_class).as_view(**view.view_initkwargs)


@csrf_exempt  # as every anymail webhook view is: an ESP has neither a CSRF token nor a login
@login_not_required
def anymail_webhook(request, rest):
    """Hand the request to the anymail view ``rest`` names (a 404 if none does)."""
    match = resolve(f"/{rest}", urlconf="anymail.urls")
    return checked_view(match.func)(request, *match.args, **match.kwargs)
