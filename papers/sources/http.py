"""The HTTP client of the network sources: timeouts, retries with backoff, a polite
User-Agent, a minimum interval between calls, and every failure as one SourceError line."""

import time
from urllib.parse import urlencode

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from .base import SourceError

RETRY_STATUSES = (429, 500, 502, 503, 504)


class CappedRetry(Retry):
    """urllib3 Retry that honours ``Retry-After`` but never waits longer than a cap,
    so one rate-limited source cannot hold the morning job for an hour."""

    def __init__(self, *args, max_retry_after=60.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kwargs):
        retry = super().new(**kwargs)
        retry.max_retry_after = self.max_retry_after
        return retry

    def get_retry_after(self, response):
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_retry_after)


class Throttle:
    """Keeps at least ``interval`` seconds between calls (arXiv asks for 3 s)."""

    def __init__(self, interval, clock=time.monotonic, sleep=time.sleep):
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.last = None

    def wait(self):
        if self.last is not None and self.interval > 0:
            remaining = self.last + self.interval - self.clock()
            if remaining > 0:
                self.sleep(remaining)
        self.last = self.clock()


def build_session(backoff=None):
    retries = settings.HTTP_RETRIES
    retry = CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=settings.HTTP_BACKOFF_SECONDS if backoff is None else backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # the last response comes back; its status is reported below
        max_retry_after=settings.HTTP_MAX_RETRY_AFTER_SECONDS,
    )
    session = requests.Session()
    session.headers["User-Agent"] = settings.HTTP_USER_AGENT
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class HttpClient:
    """GETs for one source. ``min_interval`` spaces calls out (and backoff is never shorter)."""

    def __init__(self, source_name, min_interval=0.0):
        self.source_name = source_name
        self.throttle = Throttle(min_interval)
        backoff = max(settings.HTTP_BACKOFF_SECONDS, min_interval)
        self.session = build_session(backoff=backoff)
        self.timeout = settings.HTTP_TIMEOUT_SECONDS

    def get(self, url, params=None):
        """The body of a 2xx response, or SourceError naming the source and the problem."""
        shown = f"{url}?{urlencode(params)}" if params else url
        self.throttle.wait()
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
            body = response.content  # read it all here, so a reset mid-body is caught too
        except requests.exceptions.Timeout:
            raise self.error(f"timed out after {self.timeout:g} s ({shown})") from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise self.error(f"connection broken while reading the response ({shown}): {exc}") from None
        except requests.exceptions.ConnectionError as exc:
            if any(isinstance(arg, ReadTimeoutError) for arg in exc.args):
                raise self.error(f"timed out after {self.timeout:g} s ({shown})") from None
            raise self.error(f"connection failed ({shown}): {describe(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise self.error(f"request failed ({shown}): {describe(exc)}") from None
        if response.status_code >= 400:
            raise self.error(http_problem(response, shown))
        return body

    def error(self, problem):
        return SourceError(self.source_name, problem)


def http_problem(response, shown):
    problem = f"HTTP {response.status_code} {response.reason or ''}".rstrip() + f" from {shown}"
    if response.status_code == 429:
        retry_after = response.headers.get("Retry-After")
        problem = f"rate limited ({problem})"
        if retry_after:
            problem += f"; the server asks to retry after {retry_after} s"
    return problem


def describe(exc):
    """The innermost reason of a requests/urllib3 error, on one line."""
    reason = exc
    while True:
        inner = getattr(reason, "reason", None)
        if inner is None and reason.args and isinstance(reason.args[0], Exception):
            inner = reason.args[0]
        if inner is None or inner is reason:
            break
        reason = inner
    return " ".join(str(reason).split()) or type(reason).__name__
