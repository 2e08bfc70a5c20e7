"""What anymail's test backend answers in the batch-sending tests: errors, and who each call carried."""

import requests
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailRequestsAPIError


def api_error(status):
    response = requests.Response()
    response.status_code, response.reason, response._content = status, "ESP said no", b"{}"
    return AnymailRequestsAPIError("ESP said no", status_code=status, response=response)


def timeout_error():
    try:
        raise requests.Timeout("read timed out")
    except requests.Timeout:
        try:
            raise AnymailRequestsAPIError("timed out talking to the ESP")
        except AnymailRequestsAPIError as error:
            return error


def params(message):
    return message.anymail_test_params


def failing_first_call(error):
    """anymail's test ``post_to_esp`` raising ``error`` on its first call; and each call's recipients."""
    calls = []
    post = AnymailTestBackend.post_to_esp

    def post_to_esp(backend, payload, message):
        calls.append(list(message.to))
        if len(calls) == 1:
            raise error
        return post(backend, payload, message)

    return post_to_esp, calls
