"""HEAD responses without a body.

Django answers HEAD as it answers GET and leaves dropping the body to the server.
gunicorn does drop it, but logs a warning for every such response ("WSGI app sent
body bytes on a no-body response"): a load balancer checking ``/healthz`` with HEAD
every few seconds would fill the log. The headers, Content-Length included, stay
those of the GET.
"""


def head_without_body(get_response):
    def middleware(request):
        response = get_response(request)
        if request.method == "HEAD":
            if response.streaming:
                response.streaming_content = []
            else:
                response.content = b""
        return response

    return middleware
