"""Paperboy's real processes for end-to-end tests: gunicorn, Celery worker and beat, honcho.

A ``Stack`` holds the environment every process of one test shares (the test
database, a Redis database of its own, a work directory, the site URL) and
ends everything it started when the test is over. Tests that check a shutdown
stop their processes themselves; the teardown kills each process group at
once, because a Celery worker's warm shutdown alone takes seconds.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
from celery import Celery
from django.conf import settings

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ALL_QUEUES = "default,fetch,send"
# Variables of the developer's shell that would change what the processes do.
INHERITED_OUT = {"ESP", "EMAIL_URL", "EMAIL_BACKEND", "DATABASE_URL", "REDIS_URL", "PAPER_SOURCES", "DEBUG"}


def wait_until(predicate, timeout, interval=0.25):
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


class ManagedProcess:
    """One subprocess in its own process group, its output in a log file."""

    def __init__(self, name, argv, env, log_path, cwd=ROOT):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.process = None
        self._log = None

    def start(self):
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request_stop(self, sig=signal.SIGTERM):
        if self.running:
            self.process.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Ask the process to stop; kill its whole group if it has not within ``timeout``.
        Returns the exit code and whether it stopped without being killed."""
        if self.process is None:
            return None, True
        self.request_stop(sig)
        try:
            self.process.wait(timeout=timeout)
            clean = True
        except subprocess.TimeoutExpired:
            clean = False
        self._kill_group()
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode, clean

    def group_alive(self):
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def end(self):
        """The test is over and nothing checks how this process stops: kill it and its group at once."""
        self.stop(signal.SIGKILL)

    def _kill_group(self):
        """Leftover children (a pool process, a Procfile entry) are killed with the group."""
        if self.group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)


class HonchoProcess(ManagedProcess):
    """honcho starts each Procfile entry in a session of its own, out of reach of a
    signal to honcho's group; only honcho's own SIGTERM handling stops them."""

    def end(self):
        self.stop()


class Stack:
    """The shared environment of one end-to-end run and the processes started in it."""

    def __init__(self, workdir, database_url, redis_url, **env):
        self.workdir = Path(workdir)
        self.redis_url = redis_url
        self.web_port = free_port()
        self.processes = []
        (self.workdir / "static").mkdir(exist_ok=True)
        self.env = {key: value for key, value in os.environ.items() if key not in INHERITED_OUT}
        self.env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="false",
            SECRET_KEY=settings.SECRET_KEY,  # the test reads the links the processes sign
            SECURE_SSL_REDIRECT="false",
            STATICFILES_STORAGE="django.contrib.staticfiles.storage.StaticFilesStorage",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SITE_URL=self.site_url,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            VAR_DIR=str(self.workdir),
            OUTBOX_DIR=str(self.outbox_dir),
            PAPER_SOURCES="bundled",
            LOG_LEVEL="INFO",
            GUNICORN_CMD_ARGS="--no-control-socket",  # several gunicorns on one machine
        )
        self.env.update({key: str(value) for key, value in env.items()})

    @property
    def site_url(self):
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def outbox_dir(self):
        return self.workdir / "outbox"

    def configure(self, **env):
        self.env.update({key: str(value) for key, value in env.items()})

    def spawn(self, name, argv, process_class=ManagedProcess, **env):
        process = process_class(
            name, argv, {**self.env, **{k: str(v) for k, v in env.items()}}, self.workdir / f"{name}.log"
        )
        self.processes.append(process.start())
        return process

    # --- The processes --------------------------------------------------------

    def start_worker(self, name="worker", queues=ALL_QUEUES, concurrency=2, **env):
        return self.spawn(name, [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-n", f"{name}@%h",
            "-Q", queues, "--concurrency", concurrency, "--loglevel", "info",
            "--without-mingle", "--without-gossip",
        ], **env)

    def start_beat(self, interval_seconds, **env):
        return self.spawn("beat", [
            sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "info",
            "--schedule", self.workdir / "celerybeat-schedule", "--max-interval", "1",
        ], BEAT_INTERVAL_SECONDS=interval_seconds, **env)

    def start_web(self, timeout=30, workers=2, **env):
        process = self.spawn("web", [
            BIN / "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.web_port}",
            "--workers", workers, "--timeout", "30", "--access-logfile", "-",
        ], **env)
        self.wait_for_site(process, timeout)
        return process

    def start_honcho(self, *process_types, **env):
        """``honcho start <types>`` with the repository's Procfile; web listens on ``web_port``."""
        return self.spawn("honcho", [
            BIN / "honcho", "--procfile", ROOT / "Procfile", "--app-root", ROOT, "--no-colour",
            "start", "--port", self.web_port, *process_types,
        ], process_class=HonchoProcess, **env)

    def end_all(self):
        """Teardown: end every process this stack started."""
        for process in reversed(self.processes):
            process.end()

    # --- Talking to them ------------------------------------------------------

    def url(self, path_or_url):
        return path_or_url if path_or_url.startswith("http") else f"{self.site_url}{path_or_url}"

    def get(self, path_or_url, **kwargs):
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url(path_or_url), **kwargs)

    def post(self, path_or_url, **kwargs):
        kwargs.setdefault("timeout", 10)
        return requests.post(self.url(path_or_url), **kwargs)

    def site_answers(self):
        try:
            return self.get("/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_for_site(self, process, timeout=30):
        if not wait_until(lambda: self.site_answers() or not process.running, timeout) or not process.running:
            raise AssertionError(f"the site did not come up; {process.name} log:\n{process.log()[-3000:]}")

    def broker(self):
        return Celery("paperboy-test-client", broker=self.redis_url)

    def send_task(self, name, queue="default", **kwargs):
        with self.broker() as client:
            client.send_task(name, queue=queue, **kwargs)

    def workers_answering(self, timeout=1.0):
        """The names of the Celery workers that answer a ping; none while Redis is down."""
        try:
            with self.broker() as client:
                replies = client.control.ping(timeout=timeout) or []
        except redis.exceptions.ConnectionError:
            return []
        return sorted(name for reply in replies for name in reply)

    def logs(self, tail=4000):
        """Every process's log (its last ``tail`` characters; None: all), for assertions."""
        return "\n".join(f"--- {p.name} ---\n{p.log()[-tail if tail else 0:]}" for p in self.processes)
