"""Load test on loopback: one-click unsubscribe, ESP webhooks and a signup flood,
each driven by wrk against gunicorn (2 workers) with production-like settings.

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/load.py [--seconds 30] [--connections 16] [--only unsubscribe,webhooks,signup]
    .venv/bin/python bench/load.py --only csv-import     # the admin CSV import, not run by default

It starts its own PostgreSQL and Redis (tests.servers), migrates, seeds
subscribers, starts gunicorn on a free 127.0.0.1 port (DEBUG=false,
SECURE_SSL_REDIRECT=false for plain-HTTP loopback, REDIS_URL set so rate
limits share Redis), runs each scenario for --seconds, prints requests/s,
p50/p99 latency and the status codes, verifies the database and the outbox,
and stops everything. Needs wrk (``apt-get install wrk``). Nothing leaves
127.0.0.1.

Targets: one-click unsubscribe >= 500 req/s, p99 < 100 ms, zero 5xx;
webhooks >= 300 events/s, every accepted event stored; signup: no more
confirmation emails than the rate limits allow.

``csv-import`` (only when asked for) is no wrk run: a staff session uploads a
file of MAX_IMPORT_ROWS rows (pending, active, existing, suppressed and
invalid rows) to the admin's import page through gunicorn, then a Celery
worker (solo pool, queue "default") runs the import task. It reports how long
the upload took to answer (it must answer well before gunicorn's 30 s
timeout) and how long the task took, and checks the record's counts, the
rows, and one confirmation email per pending row. Run it alone: a worker
consuming "default" would first apply any webhook events queued before.
"""

import argparse
import base64
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from email import message_from_binary_file
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes import mailgun_webhooks  # noqa: E402  (signed Mailgun event bodies)
from tests.servers import PostgresServer, RedisServer, free_port, wait_for_port  # noqa: E402

BIN = Path(sys.executable).parent
WEBHOOK_USER, WEBHOOK_PASSWORD = "mailgun", "load-test-" + secrets.token_hex(8)
SIGNING_KEY = "key-load-" + secrets.token_hex(8)
TARGETS = {
    "unsubscribe": {"rps": 500, "p99_ms": 100},
    "webhooks": {"rps": 300},
    "csv-import": {"answer_s": 30},  # gunicorn's --timeout below
}
IP_RATE, EMAIL_RATE = "20/10m", "5/h"  # the production defaults, stated here to check them
SIGNUP_IPS, SIGNUP_ADDRESSES = 10, 500
VICTIM = "victim@example.org"  # a fifth of the flood targets one address

# --- wrk's Lua: each thread takes every Nth line of a prepared file, sends one request
# per line, counts status codes; done() prints one JSON line the driver reads. ---------
LUA = r"""
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  statuses, sent, lines = {}, 0, {}
  local nthreads, n = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if n % nthreads == id then lines[#lines + 1] = line end
    n = n + 1
  end
  nlines = #lines
end
function request()
  sent = sent + 1
  return build(lines[((sent - 1) % #lines) + 1])
end
function response(status, headers, body)
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
end
function done(summary, latency, requests)
  local codes, sent_total, lines_total = {}, 0, 0
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do codes[code] = (codes[code] or 0) + count end
    sent_total = sent_total + thread:get("sent")
    lines_total = lines_total + thread:get("nlines")
  end
  local parts = {}
  for code, count in pairs(codes) do parts[#parts + 1] = string.format('"%s": %d', code, count) end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "socket_errors": %d, "timeouts": %d, "sent": %d, "lines": %d, "codes": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout, sent_total, lines_total, table.concat(parts, ", ")))
end
"""
BUILDERS = {
    "unsubscribe": r"""
function build(token)
  return wrk.format("POST", "/unsubscribe/" .. token .. "/",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end
""",
    "webhooks": r"""
function build(body)
  return wrk.format("POST", "/anymail/mailgun/tracking/",
    {["Content-Type"] = "application/json", ["Authorization"] = "AUTH"}, body)
end
""",
    "signup": r"""
function build(line)
  local ip, email = line:match("([^\t]+)\t([^\t]+)")
  return wrk.format("POST", "/subscribe/",
    {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = "csrftoken=COOKIE",
     ["X-Forwarded-For"] = ip},
    "csrfmiddlewaretoken=FORMTOKEN&email=" .. email .. "&interests=diffusion+models")
end
""",
}


class LoggedProcess:
    """A server started in its own session with its output in a log file; stopped with
    SIGTERM, then SIGKILL for the whole group if it does not leave in time."""

    def __init__(self, argv, env, log_path):
        self.argv, self.env, self.log_path, self.process = argv, env, log_path, None

    def start(self):
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process:
            self.log.close()


class Gunicorn(LoggedProcess):
    def __init__(self, env, workdir, workers=2, worker_class="sync", threads=1):
        self.port = free_port()
        argv = [
            str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
            "--timeout", "30", "--no-control-socket",
        ]
        super().__init__(argv, env, workdir / "gunicorn.log")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        super().start()
        wait_for_port(self.port, timeout=30, process=self.process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz:\n{self.log_path.read_text()}")


def app_environment(workdir, database_url, redis_url):
    env = {k: v for k, v in os.environ.items() if k not in {"ESP", "EMAIL_URL", "EMAIL_BACKEND"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        STATICFILES_STORAGE="django.contrib.staticfiles.storage.StaticFilesStorage",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        VAR_DIR=str(workdir),
        OUTBOX_DIR=str(workdir / "outbox"),
        PAPER_SOURCES="bundled",
        LOG_LEVEL="WARNING",
        WEBHOOK_SECRET=f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}",
        MAILGUN_WEBHOOK_SIGNING_KEY=SIGNING_KEY,
        TRUSTED_PROXY_COUNT="1",  # the signup flood comes "through our proxy" from many addresses
        SUBSCRIBE_RATE_PER_IP=IP_RATE,
        SUBSCRIBE_RATE_PER_EMAIL=EMAIL_RATE,
    )
    return env


def setup_django(env):
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    (Path(env["VAR_DIR"]) / "static").mkdir(exist_ok=True)


def seed_subscribers(count):
    """Active subscribers and one unsubscribe token each (what a digest's link carries)."""
    from django.utils import timezone

    from subscriptions.models import Subscriber
    from subscriptions.tokens import UNSUBSCRIBE, make_token

    now = timezone.now()
    rows = Subscriber.objects.bulk_create(
        [
            Subscriber(email=f"reader{n}@example.org", status="active", confirmed_at=now,
                       consent_note="load test")
            for n in range(count)
        ],
        batch_size=5000,
    )
    return [(row.email, make_token(row, UNSUBSCRIBE)) for row in rows]


# --- CPU accounting: the machine may be shared; say how much of it others used ---------

TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def process_tree_seconds(roots):
    """CPU seconds used so far by the processes ``roots`` and all their descendants."""
    parents, times = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        rest = text.rsplit(")", 1)[1].split()
        parents[pid] = int(rest[1])
        times[pid] = (int(rest[11]) + int(rest[12])) / TICKS
    wanted, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in wanted]
        wanted.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in wanted)


class CpuMeter:
    """Cores used during a scenario by our servers, by wrk, and by everything else."""

    def __init__(self, roots):
        self.roots = roots

    def __enter__(self):
        self.started = time.monotonic()
        self.busy, self.ours = machine_busy_seconds(), process_tree_seconds(self.roots)
        self.children = os.times().children_user + os.times().children_system
        return self

    def __exit__(self, *exc):
        elapsed = time.monotonic() - self.started
        ours = process_tree_seconds(self.roots) - self.ours
        wrk = os.times().children_user + os.times().children_system - self.children
        busy = machine_busy_seconds() - self.busy
        self.cores = {
            "servers": ours / elapsed,
            "wrk": wrk / elapsed,
            "others": max(0.0, busy - ours - wrk) / elapsed,
        }


def wait_for_quiet(threshold, max_wait):
    """On a shared machine, wait (up to ``max_wait`` s) until other processes use less than
    ``threshold`` cores, measured over 3 s while our servers are idle."""
    deadline = time.monotonic() + max_wait
    while True:
        before, started = machine_busy_seconds(), time.monotonic()
        time.sleep(3)
        busy = (machine_busy_seconds() - before) / (time.monotonic() - started)
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        print(f"   (other processes use {busy:.2f} cores; waiting for a quieter machine)", flush=True)


def run_wrk(scenario, url, lines_path, args, substitutions=None):
    script = LUA + BUILDERS[scenario]
    for placeholder, value in (substitutions or {}).items():
        script = script.replace(placeholder, value)
    script_path = lines_path.with_suffix(".lua")
    script_path.write_text(script)
    command = [
        "wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.seconds}s",
        "--timeout", "10s", "-s", str(script_path), url, "--", str(lines_path), str(args.threads),
    ]
    if args.quiet_wait:
        wait_for_quiet(args.quiet_threshold, args.quiet_wait)
    with CpuMeter(args.server_pids) as meter:
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120)
    match = re.search(r"^WRK_RESULT (.*)$", result.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk gave no result:\n{result.stdout}\n{result.stderr}")
    time.sleep(2)  # let the requests still in flight when wrk stopped counting finish
    figures = json.loads(match.group(1))
    figures["codes"] = {int(k): v for k, v in figures["codes"].items()}
    seconds = figures["duration_us"] / 1e6
    figures.update(
        rps=figures["requests"] / seconds,
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        seconds=seconds,
        errors_5xx=sum(v for k, v in figures["codes"].items() if k >= 500),
        repeats=max(0, figures["sent"] - figures["lines"]),
        cores=meter.cores,
    )
    return figures


def warm_up(url, paths):
    for _ in range(10):
        for path in paths:
            requests.get(url + path, timeout=10)


# --- Scenarios ---------------------------------------------------------------------


def scenario_unsubscribe(url, workdir, args, seeded):
    from django.db.models import Count

    from subscriptions.models import Subscriber

    lines = workdir / "unsubscribe.txt"
    lines.write_text("\n".join(token for _, token in seeded) + "\n")
    warm_up(url, ["/healthz", f"/unsubscribe/{seeded[-1][1]}/"])
    before = Subscriber.objects.filter(status="unsubscribed").count()
    figures = run_wrk("unsubscribe", url, lines, args)
    unsubscribed = Subscriber.objects.filter(status="unsubscribed").count() - before
    ok = figures["codes"].get(200, 0)
    # Each line is a different subscriber; requests still in flight when wrk stopped
    # counting were answered too, so the rows lie between the 200s counted and those sent.
    figures["verified"] = {
        "unsubscribed_rows": unsubscribed,
        "one_click_200s": ok,
        "all_unsubscribed": ok <= unsubscribed <= min(figures["sent"], len(seeded)),
        "recorded_as": dict(
            Subscriber.objects.filter(status="unsubscribed")
            .values_list("unsubscribed_via")
            .annotate(n=Count("id"))
        ),
    }
    target = TARGETS["unsubscribe"]
    figures["passed"] = (
        figures["rps"] >= target["rps"] and figures["p99_ms"] < target["p99_ms"]
        and figures["errors_5xx"] == 0 and figures["socket_errors"] == 0
        and figures["verified"]["all_unsubscribed"]
    )
    return figures


def webhook_bodies(count, recipients):
    rng = random.Random(7)
    bodies = []
    for n in range(count):
        kind = "complained" if n % 100 == 99 else rng.choice(["delivered", "delivered", "opened"])
        body = mailgun_webhooks.event(
            SIGNING_KEY, kind, rng.choice(recipients), f"20261120.{n}@mg.example.org"
        )
        bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


def scenario_webhooks(url, workdir, args, seeded, redis_url):
    import redis

    from digest.models import WebhookEvent

    count = args.seconds * args.max_rate
    lines = workdir / "webhooks.txt"
    lines.write_text("\n".join(webhook_bodies(count, [email for email, _ in seeded])) + "\n")
    auth = "Basic " + base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
    warm_up(url, ["/healthz"])
    before = WebhookEvent.objects.count()
    figures = run_wrk("webhooks", url, lines, args, {"AUTH": auth})
    stored = WebhookEvent.objects.count() - before
    ok = figures["codes"].get(200, 0)
    queued = redis.Redis.from_url(redis_url).llen("default")
    applied = WebhookEvent.objects.filter(applied_at__isnull=False).count()
    figures["verified"] = {
        "accepted_200s": ok,
        "stored_rows": stored,
        "lost": max(0, ok - stored) if figures["repeats"] == 0 else "n/a (bodies repeated)",
        "stored_but_answered_after_the_count": max(0, stored - ok),
        "applied_at_once (complaints)": applied,
        "queued_for_a_worker (engagement)": queued,
    }
    figures["passed"] = (
        figures["rps"] >= TARGETS["webhooks"]["rps"] and figures["errors_5xx"] == 0
        and figures["repeats"] == 0 and ok <= stored <= figures["sent"]
        and applied + queued == stored and figures["socket_errors"] == 0
    )
    return figures


def windows_during(value, period, started, ended):
    """How many django-ratelimit windows of ``value`` the run touched (their edges are
    staggered per key by crc32(value) % period)."""
    offset = zlib.crc32(value.encode()) % period
    edge = started - ((started - offset) % period) + period
    count = 1
    while edge <= ended:
        count += 1
        edge += period
    return count


def scenario_signup(url, workdir, args):
    from subscriptions.models import Subscriber

    rng = random.Random(11)
    ips = [f"10.1.{n // 250}.{n % 250 + 1}" for n in range(SIGNUP_IPS)]
    addresses = [f"flood{n}@example.org" for n in range(SIGNUP_ADDRESSES)]
    lines = workdir / "signup.txt"
    lines.write_text(
        "\n".join(
            f"{rng.choice(ips)}\t{VICTIM if rng.random() < 0.2 else rng.choice(addresses)}"
            for _ in range(args.seconds * args.max_rate)
        )
        + "\n"
    )
    session = requests.Session()
    page = session.get(f"{url}/subscribe/", timeout=10)
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    cookie = session.cookies["csrftoken"]
    outbox = Path(workdir / "outbox")
    emails_before = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
    rows_before = Subscriber.objects.count()
    started = int(time.time())
    figures = run_wrk("signup", url, lines, args, {"COOKIE": cookie, "FORMTOKEN": form_token})
    ended = int(time.time())

    recipients = {}
    for path in sorted(outbox.glob("*.eml"))[emails_before:] if outbox.exists() else []:
        with open(path, "rb") as handle:
            to = message_from_binary_file(handle)["To"]
        recipients[to] = recipients.get(to, 0) + 1
    accepted = figures["codes"].get(302, 0)
    from django_ratelimit.core import _split_rate

    ip_count, ip_period = _split_rate(IP_RATE)
    allowed_by_ip = sum(ip_count * windows_during(ip, ip_period, started, ended) for ip in ips)
    emails = sum(recipients.values())
    created = Subscriber.objects.count() - rows_before
    in_flight = figures["sent"] - figures["requests"]  # sent, answered after wrk stopped counting
    figures["verified"] = {
        "accepted_302s": accepted,
        "refused_429s": figures["codes"].get(429, 0),
        "allowed_by_ip_limit": allowed_by_ip,
        "confirmation_emails": emails,
        "emails_to_the_flooded_address": recipients.get(VICTIM, 0),
        "most_emails_to_one_address": max(recipients.values(), default=0),
        "pending_rows_created": created,
    }
    figures["passed"] = (
        accepted <= allowed_by_ip and emails <= accepted + in_flight and emails == created
        and max(recipients.values(), default=0) <= 1 and figures["errors_5xx"] == 0
        and set(figures["codes"]) <= {302, 429} and figures["socket_errors"] == 0
    )
    return figures


def import_file(rows):
    """A CSV of ``rows`` lines: 76 % new (pending), 16 % with earlier consent (active),
    4 % existing, 2 % suppressed, 2 % invalid; and the expected counts."""
    share = {"existing": rows * 4 // 100, "suppressed": rows * 2 // 100, "invalid": rows * 2 // 100}
    share["active"] = rows * 16 // 100
    share["pending"] = rows - sum(share.values())
    lines = ["email,interests,categories,frequency,max_papers,send_hour,timezone,confirmed_at,"
             "consent_note"]
    lines += [f'imported{n}@example.org,"diffusion models, RLHF",cs.LG cs.CL,daily,10,7,'
              f"Europe/Berlin,," for n in range(share["pending"])]
    lines += [f"consented{n}@example.org,world models,cs.CV,weekly,5,8,UTC,2024-03-01,2024 form"
              for n in range(share["active"])]
    lines += [f"reader{n}@example.org,,,,,,,," for n in range(share["existing"])]
    lines += [f"bounced{n}@example.org,,,,,,,," for n in range(share["suppressed"])]
    lines += [f"invalid{n}@example.org,,,,,,Mars/Base,," for n in range(share["invalid"])]
    return ("\n".join(lines) + "\n").encode(), share


class CeleryWorker(LoggedProcess):
    def __init__(self, env, workdir):
        argv = [
            str(BIN / "celery"), "-A", "config", "worker", "-Q", "default", "-P", "solo",
            "-l", "warning", "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]
        super().__init__(argv, env, workdir / "celery.log")


def scenario_csv_import(url, workdir, args, env, redis_url):
    import redis
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from subscriptions.csv_io import MAX_IMPORT_ROWS
    from subscriptions.models import Subscriber, SubscriberImport, Suppression, email_hash

    payload, expected = import_file(MAX_IMPORT_ROWS)
    Suppression.objects.bulk_create(
        [Suppression(email_hash=email_hash(f"bounced{n}@example.org"), reason="bounced")
         for n in range(expected["suppressed"])],
        ignore_conflicts=True,
    )
    operator = get_user_model().objects.create_superuser("load-operator", "op@example.org", "x")
    staff = Client()
    staff.force_login(operator)  # the session row the web workers will find
    session_cookie = f"{settings.SESSION_COOKIE_NAME}={staff.cookies[settings.SESSION_COOKIE_NAME].value}"
    page_url = f"{url}/admin/subscriptions/subscriber/import/"
    browser = requests.Session()
    page = browser.get(page_url, headers={"Cookie": session_cookie}, timeout=10)
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    cookies = f"{session_cookie}; csrftoken={browser.cookies['csrftoken']}"
    outbox = Path(workdir / "outbox")
    emails_before = set(outbox.glob("*.eml")) if outbox.exists() else set()
    queued_before = redis.Redis.from_url(redis_url).llen("default")
    if args.quiet_wait:
        wait_for_quiet(args.quiet_threshold, args.quiet_wait)

    worker = CeleryWorker(env, workdir)
    with CpuMeter(args.server_pids) as meter:
        started = time.monotonic()
        answer = requests.post(
            page_url, headers={"Cookie": cookies}, data={"csrfmiddlewaretoken": form_token},
            files={"file": ("subscribers.csv", payload, "text/csv")}, allow_redirects=False,
            timeout=60,
        )
        answer_s = time.monotonic() - started
        record = SubscriberImport.objects.order_by("-pk").first()
        status_after_answer = record.status if record else None
        try:
            worker.start()
            deadline = time.monotonic() + 900
            while record and time.monotonic() < deadline:
                record.refresh_from_db()
                if record.status in ("done", "failed"):
                    break
                time.sleep(0.2)
            done_s = time.monotonic() - started
        finally:
            worker.stop()
    recipients = {}
    for path in sorted(set(outbox.glob("*.eml")) - emails_before) if outbox.exists() else []:
        with open(path, "rb") as handle:
            to = message_from_binary_file(handle)["To"]
        recipients[to] = recipients.get(to, 0) + 1
    counts = {
        "pending": record.imported_pending, "active": record.imported_active,
        "existing": record.skipped_existing, "suppressed": record.skipped_suppressed,
        "invalid": len(record.row_errors),
    } if record else {}
    task_s = (record.finished_at - record.started_at).total_seconds() if record and record.finished_at else None
    rows = MAX_IMPORT_ROWS
    figures = {
        "rows": rows,
        "answer_status": answer.status_code,
        "answer_s": answer_s,
        "status_after_answer": status_after_answer,
        "status": record.status if record else None,
        "task_s": task_s,
        "ms_per_row": task_s * 1000 / rows if task_s else None,
        "upload_to_done_s": done_s,
        "cores": meter.cores,
        "verified": {
            "counts": counts,
            "expected": expected,
            "new_pending_rows": Subscriber.objects.filter(email__startswith="imported").count(),
            "new_active_rows": Subscriber.objects.filter(email__startswith="consented").count(),
            "confirmation_emails": sum(recipients.values()),
            "most_emails_to_one_address": max(recipients.values(), default=0),
            "tasks_queued_before_the_upload": queued_before,
        },
    }
    v = figures["verified"]
    figures["passed"] = (
        answer.status_code == 302 and answer_s < TARGETS["csv-import"]["answer_s"]
        and figures["status"] == "done" and counts == expected
        and v["new_pending_rows"] == expected["pending"] and v["new_active_rows"] == expected["active"]
        and v["confirmation_emails"] == expected["pending"] and v["most_emails_to_one_address"] == 1
        and set(recipients) == {f"imported{n}@example.org" for n in range(expected["pending"])}
    )
    return figures


def report_csv_import(figures):
    task = f"{figures['task_s']:.1f} s" if figures["task_s"] is not None else "did not finish"
    print(
        f"\n== csv-import: {figures['rows']} rows; upload answered {figures['answer_status']} in "
        f"{figures['answer_s']:.2f} s (import {figures['status_after_answer']}); the task took {task}"
        + (f" = {figures['ms_per_row']:.1f} ms per row" if figures["ms_per_row"] else "")
        + f"; upload to done {figures['upload_to_done_s']:.1f} s (worker start included)"
    )
    cores = figures["cores"]
    # The worker is a child this process waited for: its CPU shows where wrk's would.
    print(f"   CPU (cores): gunicorn+PostgreSQL+Redis {cores['servers']:.2f}, Celery worker "
          f"{cores['wrk']:.2f}, other processes on the machine {cores['others']:.2f} "
          f"(of {os.cpu_count()})")
    for key, value in figures["verified"].items():
        print(f"   {key}: {value}")
    print(f"   {'PASS' if figures['passed'] else 'FAIL'}")


# --- Report ---------------------------------------------------------------------------


def report(name, figures):
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(figures["codes"].items()))
    print(
        f"\n== {name}: {figures['requests']} requests in {figures['seconds']:.1f} s = "
        f"{figures['rps']:.0f} req/s; latency p50 {figures['p50_ms']:.1f} ms, "
        f"p90 {figures['p90_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, max "
        f"{figures['max_us'] / 1000:.0f} ms"
    )
    print(f"   status codes: {codes}; 5xx: {figures['errors_5xx']}; socket errors: "
          f"{figures['socket_errors']}; timeouts: {figures['timeouts']}")
    cores = figures["cores"]
    print(f"   CPU (cores): gunicorn+PostgreSQL+Redis {cores['servers']:.2f}, wrk {cores['wrk']:.2f}, "
          f"other processes on the machine {cores['others']:.2f} (of {os.cpu_count()})")
    for key, value in figures["verified"].items():
        print(f"   {key}: {value}")
    print(f"   {'PASS' if figures['passed'] else 'FAIL'}")


def markdown_table(results, args):
    """The figures as the table in docs/reliability.md."""
    rows = [
        "| Scenario | Requests | req/s | p50 ms | p99 ms | 5xx / socket errors | Verified | Target | Result "
        "| Other load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in results.items():
        v = f["verified"]
        if name == "csv-import":
            continue  # no wrk run: its own line, printed by report_csv_import
        if name == "unsubscribe":
            checked = f"{v['unsubscribed_rows']} rows unsubscribed for {v['one_click_200s']} 200s counted"
            target = f"≥ {TARGETS['unsubscribe']['rps']} req/s, p99 < {TARGETS['unsubscribe']['p99_ms']} ms, no 5xx"
        elif name == "webhooks":
            checked = (f"{v['stored_rows']} events stored for {v['accepted_200s']} 200s counted, "
                       f"lost {v['lost']}; {v['applied_at_once (complaints)']} applied, "
                       f"{v['queued_for_a_worker (engagement)']} queued")
            target = f"≥ {TARGETS['webhooks']['rps']} events/s, none lost"
        else:
            checked = (f"{v['accepted_302s']} accepted (limit allows {v['allowed_by_ip_limit']}), "
                       f"{v['refused_429s']} × 429; {v['confirmation_emails']} confirmation emails, "
                       f"{v['emails_to_the_flooded_address']} to the flooded address")
            target = "emails within the limits"
        rows.append(
            f"| {name} | {f['requests']:,} in {f['seconds']:.0f} s | {f['rps']:.0f} | {f['p50_ms']:.1f} "
            f"| {f['p99_ms']:.1f} | {f['errors_5xx']} / {f['socket_errors']} | {checked} | {target} "
            f"| {'pass' if f['passed'] else 'FAIL'} | {f['cores']['others']:.2f} |"
        )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Paperboy load test on loopback (wrk + gunicorn).")
    parser.add_argument("--seconds", type=int, default=30, help="duration of each scenario")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync",
                        help="gunicorn worker class (sync, as in the Procfile, or gthread)")
    parser.add_argument("--gunicorn-threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--max-rate", type=int, default=2500,
                        help="requests/s prepared per scenario (distinct tokens and events)")
    parser.add_argument("--only", default="unsubscribe,webhooks,signup")
    parser.add_argument("--quiet-wait", type=int, default=300,
                        help="seconds to wait, before each scenario, for other processes to calm down")
    parser.add_argument("--quiet-threshold", type=float, default=0.25,
                        help="cores other processes may use when a scenario starts")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="paperboy-load-"))
    postgres = redis_server = web = None
    results = {}
    try:
        postgres = PostgresServer().start()
        database_url = postgres.create_database("load")
        redis_server = RedisServer().start()
        env = app_environment(workdir, database_url, redis_server.url(0))
        setup_django(env)
        print(f"seeding {args.seconds * args.max_rate} subscribers …", flush=True)
        seeded = seed_subscribers(args.seconds * args.max_rate)
        web = Gunicorn(env, workdir, args.workers, args.worker_class, args.gunicorn_threads).start()
        postmaster = int((postgres.datadir / "postmaster.pid").read_text().split()[0])
        args.server_pids = [web.process.pid, postmaster, redis_server.process.pid]
        print(f"gunicorn ({args.workers} {args.worker_class} workers, {args.gunicorn_threads} "
              f"thread(s) each) on {web.url}; wrk -t{args.threads} -c{args.connections} "
              f"-d{args.seconds}s; load average before: {os.getloadavg()[0]:.2f}", flush=True)
        for name in scenarios:
            if name == "unsubscribe":
                results[name] = scenario_unsubscribe(web.url, workdir, args, seeded)
            elif name == "webhooks":
                results[name] = scenario_webhooks(web.url, workdir, args, seeded, redis_server.url(0))
            elif name == "signup":
                results[name] = scenario_signup(web.url, workdir, args)
            elif name == "csv-import":
                results[name] = scenario_csv_import(web.url, workdir, args, env, redis_server.url(0))
                report_csv_import(results[name])
                continue
            report(name, results[name])
        errors = re.findall(r"^.*(?:ERROR|Traceback).*$", web.log_path.read_text(), re.MULTILINE)
        print(f"\ngunicorn log: {len(errors)} error line(s)" + (f", first: {errors[0]}" if errors else ""))
        print("\n" + markdown_table(results, args))
    finally:
        if web:
            web.stop()
        if redis_server:
            redis_server.stop()
        if postgres:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:
                pass
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0 if results and all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
