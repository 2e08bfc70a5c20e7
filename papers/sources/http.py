"""The HTTP client of the network sources: timeouts, retries with backoff, a polite
User-Agent, a minimum interval between calls, and every failure as one SourceError line."""

import logging
import time
from itertools import takewhile
from urllib.parse import urlencode

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

from .base import SourceError

log = logging.getLogger(__name__)
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

    def get_backoff_time(self):
        """``backoff_factor`` before the first retry, doubling on each one after, up to
        ``backoff_max``. urllib3 2 waits nothing before the first retry: arXiv, whose factor is
        its 3-second interval, would be called again at once after a 503 or a timeout."""
        errors = len(list(takewhile(lambda attempt: attempt.redirect_location is None, reversed(self.history))))
        if errors == 0:
            return 0
        return min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1))

    def get_retry_after(self, response):
        """The wait the server asks for, capped; None (the usual backoff) when its
        ``Retry-After`` is neither seconds nor a date, which urllib3 would raise on,
        failing a retryable 503 at once."""
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            return None
        return None if seconds is None else min(seconds, self.max_retry_after)


class Throttle:
    """Keeps at least ``interval`` seconds between calls (arXiv asks for 3 s)."""

    def __init__(self, interval, clock=None, sleep=None):
        self.interval = interval
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
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


class BrokenBody(Exception):
    """The connection broke after the headers, while the body was being read."""


class TooLarge(Exception):
    """The body is larger than a source's answer can sensibly be."""


def read_body(response, limit):
    """The (decompressed) body of a streamed response, refused as soon as it passes
    ``limit`` bytes: a runaway or hostile answer must not take the worker's memory."""
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{int(declared):,} bytes declared")
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=1 << 16):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{size:,} bytes read")
        chunks.append(chunk)
    return b"".join(chunks)


class HttpClient:
    """GETs for one source. ``min_interval`` spaces calls out (and backoff is never shorter)."""

    def __init__(self, source_name, min_interval=0.0):
        self.source_name = source_name
        self.throttle = Throttle(min_interval)
        self.backoff = max(settings.HTTP_BACKOFF_SECONDS, min_interval)
        self.session = build_session(backoff=self.backoff)
        self.timeout = settings.HTTP_TIMEOUT_SECONDS

    def get(self, url, params=None):
        """The body of a 2xx response, or SourceError naming the source and the problem.

        urllib3 retries connection errors, timeouts and 429/5xx answers; a body
        cut off midway is past its reach, so it is retried here the same way.
        """
        shown = f"{url}?{urlencode(params)}" if params else url
        retries = settings.HTTP_RETRIES
        for attempt in range(retries + 1):
            self.throttle.wait()
            try:
                return self.get_once(url, params, shown)
            except BrokenBody as exc:
                if attempt == retries:
                    raise self.error(
                        f"connection broken while reading the response ({shown}): {exc}"
                    ) from None
                log.warning("retrying source=%s after a broken response: %s", self.source_name, exc)
                time.sleep(self.backoff * 2**attempt)

    def get_once(self, url, params, shown):
        limit = settings.HTTP_MAX_RESPONSE_BYTES
        try:
            with self.session.get(url, params=params, timeout=self.timeout, stream=True) as response:
                if response.status_code >= 400:
                    raise self.error(http_problem(response, shown))
                body = read_body(response, limit)  # read it all here, so a reset mid-body is caught too
        except TooLarge as exc:
            problem = f"the response is larger than {limit:,} bytes ({exc} or more; {shown})"
            raise self.error(problem) from None
        except requests.exceptions.Timeout:
            raise self.error(f"timed out after {self.timeout:g} s ({shown})") from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise BrokenBody(describe(exc)) from None
        except requests.exceptions.ConnectionError as exc:
            if any(is_timeout(reason) for reason in reasons(exc)):
                raise self.error(f"timed out after {self.timeout:g} s ({shown})") from None
            raise self.error(f"connection failed ({shown}): {describe(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise self.error(f"request failed ({shown}): {describe(exc)}") from None
        return body

    def error(self, problem):
        return SourceError(self.source_name, problem)


def http_problem(response, shown):
    problem = f"HTTP {response.status_code} {response.reason or ''}".rstrip() + f" from {shown}"
    if response.status_code == 429:
        retry_after = (response.headers.get("Retry-After") or "").strip()
        problem = f"rate limited ({problem})"
        if retry_after:
            wait = f"{retry_after} s" if retry_after.isdigit() else retry_after  # or an HTTP date
            problem += f"; the server asks to retry after {wait}"
    return problem


def reasons(exc):
    """The chain of causes inside a requests/urllib3 error, outermost first."""
    chain = [exc]
    while True:
        current = chain[-1]
        inner = getattr(current, "reason", None)
        if inner is None and current.args and isinstance(current.args[0], Exception):
            inner = current.args[0]
        if not isinstance(inner, Exception) or inner in chain:
            return chain
        chain.append(inner)


def is_timeout(reason):
    # urllib3's NewConnectionError (refused, unreachable) subclasses its timeout error
    return isinstance(reason, Urllib3TimeoutError) and not isinstance(reason, NewConnectionError)


def describe(exc):
    """The innermost reason of a requests/urllib3 error, on one line."""
    reason = reasons(exc)[-1]
    return " ".join(str(reason).split()) or type(reason).__name__
