"""HEAD through the WSGI handler, as gunicorn calls it: the GET's headers, no body.

Django's test client drops a HEAD response's body itself, so these go through
``WSGIHandler`` instead."""

from io import BytesIO
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler

pytestmark = pytest.mark.django_db


def call(method, path):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": BytesIO(b""), "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=dict(headers))

    body = b"".join(WSGIHandler()(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.mark.parametrize("path", ["/", "/healthz", "/subscribe/check-your-inbox/"])
def test_a_head_response_has_the_gets_headers_and_no_body(settings, path):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    get_status, get_headers, get_body = call("GET", path)
    status, headers, body = call("HEAD", path)
    assert get_body and body == b""
    assert status == get_status
    assert headers["Content-Type"] == get_headers["Content-Type"]
    assert headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))
