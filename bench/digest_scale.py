"""Digest send benchmark: N personalised digests through the real send path.

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/digest_scale.py --subscribers 10000
    .venv/bin/python bench/digest_scale.py --subscribers 100000
    .venv/bin/python bench/digest_scale.py --subscribers 100000 --workers 2
    .venv/bin/python bench/digest_scale.py --subscribers 100000 --workers 2 --rounds 5
    .venv/bin/python bench/digest_scale.py --subscribers 100000 --own-phrases 0.3 --voters 0.1
    .venv/bin/python bench/digest_scale.py --subscribers 1000000 --workers 2
    .venv/bin/python bench/digest_scale.py --subscribers 100000 --esp-latency 150 --calls-in-flight 4

What it does:

1. Starts a throwaway PostgreSQL cluster, imports the bundled corpus, builds
   the daily edition and inserts N active subscribers whose interests and
   categories are drawn from realistic ML keyword sets (their digests differ);
   ``--own-phrases`` gives a share of them an interest in their own words,
   ``--voters`` a share of them votes on earlier papers.
2. Starts the imitation Mailgun API (tests/fakes/mailgun.py) in its own
   process and points anymail's Mailgun backend at it. ``--esp-latency MS``
   makes it answer each call that much later, as a real ESP across the
   network does (the naive baseline's server answers at once).
3. Sends the edition with the production path in a fresh process per worker,
   timed from the moment every worker has booted (Django set up, the app
   imported, as a Celery worker is before the beat fires; boot is printed
   apart) to the last digest recorded. The beat's tick puts its task,
   ``enqueue_due_digests``, on the workers' one queue, and a worker process
   runs it as the Procfile's worker does: the due readers streamed, each
   chunk of DIGEST_SEND_BATCH_SIZE claimed (its pending rows inserted) and
   published as a ``send_digest_chunk`` task on the same queue. Each worker
   process takes the next task whenever it is free (a prefetch of one) and
   runs it eagerly (``send_digest_chunk`` calls
   ``digest.sending.send_edition_to``). ``--enqueue apart`` runs the beat's
   task in a process of its own beside the workers instead, as the worker
   for the default queue does once send workers run apart (docs/deploy.md).
   ``--workers 2`` runs two processes; ``--rounds K`` sends K times
   with each, alternated, and prints each round's ratio and the median one
   (the host's speed drifts from run to run). ``--calls-in-flight K`` sets
   DIGEST_ESP_CALLS_IN_FLIGHT for the send.
4. Times a naive baseline on the same data (a sample of readers): the whole
   digest rendered from the templates per reader (paper blocks included),
   one single-recipient message each through the same backend, to a second
   imitation server.
5. Verifies every subscriber has exactly one ``sent`` delivery and the ESP
   received exactly one message per subscriber, each with its own body (the
   bodies of about 100,000 readers are kept to compare: beyond that, those of
   every k-th ESP call).
6. Prints per phase (select/claim, rank, render, send, record) the seconds,
   rows/s, SQL queries and peak RSS; per worker its page faults per digest
   and its CPU per thread; the CPU of the workers, PostgreSQL and the
   imitation ESP, and how busy the host's cores were; what the settled ledger
   stores per delivery row and per ESP call; with ``--rounds``,
   each round's ratio split into cores kept busy and CPU per reader; then
   one RESULT line.
"""

import argparse
import multiprocessing
import os
import random
import re
import resource
import sys
import threading
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INTERESTS = [
    "large language models", "reasoning", "chain of thought", "reinforcement learning from human feedback",
    "diffusion models", "image generation", "video generation", "text-to-image", "3D reconstruction",
    "neural radiance fields", "gaussian splatting", "robotics", "embodied AI", "world models", "agents",
    "tool use", "retrieval augmented generation", "code generation", "mathematical reasoning",
    "vision language models", "multimodal", "speech recognition", "text-to-speech", "mixture of experts",
    "quantization", "efficient inference", "long context", "sparse attention", "state space models",
    "graph neural networks", "molecules", "protein", "time series", "recommendation", "benchmark",
    "evaluation", "alignment", "safety", "hallucination", "interpretability", "federated learning",
    "contrastive learning", "self-supervised learning", "object detection", "segmentation",
    "medical imaging", "autonomous driving", "knowledge distillation", "in-context learning",
    "instruction tuning", "preference optimization", "reward models", "scaling laws", "tokenization",
    "machine translation", "question answering", "summarization", "video understanding",
    "continual learning", "uncertainty", "optimization", "transformers",
]
CATEGORIES = ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "cs.RO", "stat.ML", "cs.IR", "cs.SD"]
MAILGUN_DOMAIN = "mg.bench.example"
MAILGUN_KEY = "bench-key"
NAIVE_SAMPLE = 1000
# The imitation ESP keeps and checks the bodies of about this many readers (2 GB): beyond, of every k-th call.
BODIES_KEPT = 100_000
# Memory the imitation ESP sets aside per thousand readers whose calls it keeps: a reader's
# part of a call is about 21 KB, with 20 papers about twice that.
ARENA_MB_PER_THOUSAND = 32


# --- Environment ---------------------------------------------------------------


def configure_env(database_url, esp_url):
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="ERROR",
        DEBUG="false",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789",
        ALLOWED_HOSTS="127.0.0.1",
        SITE_URL="https://paperboy.example",
        ESP="mailgun",
        MAILGUN_API_KEY=MAILGUN_KEY,
        MAILGUN_SENDER_DOMAIN=MAILGUN_DOMAIN,
        MAILGUN_API_URL=esp_url,
        REDIS_URL="",
        CONN_MAX_AGE="0",
    )
    os.environ.pop("EMAIL_URL", None)


def django_setup():
    import django

    django.setup()


def cpu_seconds():
    """CPU seconds (user + system) this process has used, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def host_busy_seconds():
    """CPU seconds every core of the host has spent running anything (Linux /proc/stat: user,
    nice, system, irq and softirq; not idle, I/O wait or time the hypervisor kept)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def page_faults():
    """Minor page faults this process has taken: memory the kernel mapped in for it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def tree_cpu_seconds(root_pid):
    """CPU seconds used by ``root_pid`` and its children, exited ones included (Linux /proc):
    the PostgreSQL server's share of the two cores, whatever backends came and went."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), [int(v) for v in fields[11:15]]  # ppid; utime stime cutime cstime

    total = sum(stat(root_pid)[1])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid, times = stat(entry)
            except (OSError, IndexError):
                continue
            if ppid == root_pid:
                total += times[0] + times[1]
    return total / tick


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class QueryCounter:
    """Counts and times SQL statements by their first words, without keeping them
    (CaptureQueriesContext would keep megabytes)."""

    def __init__(self):
        self.count = 0
        self.per_thread = {}  # a phase counts its own thread's statements (batch threads overlap)
        self.by_statement = {}

    def in_this_thread(self):
        return self.per_thread.get(threading.get_ident(), 0)

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        thread = threading.get_ident()
        self.per_thread[thread] = self.per_thread.get(thread, 0) + 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split())[:90]
            count, seconds = self.by_statement.get(key, (0, 0.0))
            self.by_statement[key] = (count + 1, seconds + time.perf_counter() - started)

    def slowest(self, n=6):
        return sorted(self.by_statement.items(), key=lambda kv: -kv[1][1])[:n]


# --- The imitation ESP, in its own process ------------------------------------


def esp_server(domain, api_key, port_queue, stop_event, stats_queue, bodies_every=1, latency=0.0, arena_mb=0):
    """Run the imitation Mailgun. Like Mailgun it answers "Queued" once a call is checked
    (key, domain, sender, recipients); what each recipient got is kept as received and
    counted after the run, so checking bodies does not take CPU from the send.

    Every call's recipients are counted; the bodies of every ``bodies_every``-th call are
    kept and checked (a million readers' bodies would be 20 GB). ``latency``: seconds each
    call is held before it is answered (calls in progress at once are held side by side).

    ``arena_mb``: memory taken and written once before the send, which the calls are read
    into and kept in. Memory taken during the send instead (a buffer of megabytes per call,
    or a spool file in memory) cost the kernel of this virtual machine 30-60 µs of CPU per
    reader at 100,000 readers, on the two cores the send has; a real ESP runs elsewhere."""
    import hashlib
    import json as _json

    from tests.fakes.mailgun import Answer, FakeMailgun, MailgunHandler, multipart_delimiter

    class ArenaHandler(MailgunHandler):
        def read_body(self):
            """The body read into the arena, as its (start, end) there; bytes once it is full."""
            length = int(self.headers.get("Content-Length") or 0)
            esp = self.server.owner
            start = esp.take(length)
            if start is None:
                return super().read_body()
            if self.rfile.readinto(memoryview(esp.arena)[start:start + length]) != length:
                raise ConnectionError("the client closed the connection in the middle of a body")
            return start, start + length

    class CountingMailgun(FakeMailgun):
        handler_class = ArenaHandler

        def __init__(self, *args, arena_bytes=0, **kwargs):
            super().__init__(*args, **kwargs)
            self.arena = bytearray(arena_bytes)
            for offset in range(0, arena_bytes, 4096):  # written once, so that its pages are taken now
                self.arena[offset] = 1
            self.arena_used = 0
            self.received = []  # per accepted call: (recipients, shared HTML, recipient variables or None)
            self.calls = 0

        def take(self, length):
            """Where ``length`` bytes of the arena start, or None once it is used up."""
            with self._lock:
                start = self.arena_used
                if not length or start + length > len(self.arena):
                    return None
                self.arena_used += length
            return start

        def read_form(self, content_type, body):
            """The form without its recipient variables, which are kept where they were received
            (megabytes per call: copied, split or decoded they cost the server more than checking
            the call) and parsed when the run is over. The client writes them as the last part,
            so the closing delimiter is looked for from the end."""
            data, lo, hi = (self.arena, *body) if isinstance(body, tuple) else (body, 0, len(body))
            head = b'Content-Disposition: form-data; name="recipient-variables"\r\n\r\n'
            start = data.find(head, lo, hi) if content_type.startswith("multipart/form-data") else -1
            if start < 0:
                return super().read_form(content_type, bytes(data[lo:hi]))
            delimiter = multipart_delimiter(content_type)
            end = data.rfind(delimiter, start, hi)
            if end < 0 or data[end + len(delimiter):end + len(delimiter) + 2] != b"--":
                return super().read_form(content_type, bytes(data[lo:hi]))
            part_start = data.rfind(delimiter[2:], lo, start)
            fields = super().read_form(content_type, bytes(data[lo:part_start]) + bytes(data[end + 2:hi]))
            fields["recipient-variables"] = [memoryview(data)[start + len(head):end]]
            return fields

        def handle(self, domain, fields, api_key):
            status, payload, headers = super().handle(domain, fields, api_key)
            with self._lock:
                # Requests from two workers overlap: take this call's own.
                mine = next(i for i in range(len(self.requests) - 1, -1, -1) if self.requests[i].fields is fields)
                request = self.requests.pop(mine)
                if request.accepted:
                    self.calls += 1
                    kept = self.calls % bodies_every == 0
                    variables = request.value("recipient-variables", b"{}") if kept else None
                    if isinstance(variables, str):  # a form that was not multipart
                        variables = variables.encode()
                    self.received.append((request.recipients, request.value("html", ""), variables))
            return status, payload, headers

        def count(self):
            """Per recipient: messages received; the recipients whose bodies were kept, and
            their distinct HTML bodies, as hashes."""
            per_recipient, checked, bodies = {}, 0, set()
            for recipients, html, kept in self.received:
                variables = _json.loads(bytes(kept)) if kept is not None else {}
                for address in recipients:
                    per_recipient[address] = per_recipient.get(address, 0) + 1
                    if kept is not None:
                        checked += 1
                        body = variables.get(address, {}).get("html") or html
                        bodies.add(hashlib.blake2b(body.encode(), digest_size=12).digest())
            return per_recipient, checked, bodies

    esp = CountingMailgun(domain=domain, api_key=api_key, arena_bytes=arena_mb << 20).start()
    if latency:
        esp.answer(Answer(delay=latency))
    port_queue.put(esp.api_url)
    started_cpu = cpu_seconds()
    stop_event.wait()
    esp.stop()
    serving_cpu = cpu_seconds() - started_cpu
    counts, checked, bodies = esp.count()
    stats_queue.put({
        "calls": esp.calls,
        "recipients": len(counts),
        "messages": sum(counts.values()),
        "duplicates": sum(1 for c in counts.values() if c != 1),
        "bodies_checked": checked,
        "distinct_bodies": len(bodies),
        "cpu_seconds": serving_cpu,
    })


class EspProcess:
    def __init__(self, bodies_every=1, latency=0.0, arena_mb=0):
        ctx = multiprocessing.get_context("spawn")
        self.port_queue, self.stats_queue, self.stop_event = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.process = ctx.Process(
            target=esp_server,
            args=(MAILGUN_DOMAIN, MAILGUN_KEY, self.port_queue, self.stop_event, self.stats_queue, bodies_every,
                  latency, arena_mb),
            daemon=True,
        )

    def start(self):
        self.process.start()
        self.api_url = self.port_queue.get(timeout=60)
        return self

    def finish(self):
        self.stop_event.set()
        stats = self.stats_queue.get(timeout=600)
        self.process.join(timeout=30)
        return stats


# --- Data -----------------------------------------------------------------------


def start_database():
    from tests.servers import PostgresServer

    server = PostgresServer().start()
    server.create_database("bench")
    return server


def own_phrase(title_words, rng):
    """An interest in a reader's own words, as people write them: a few words of one title,
    sometimes "for" a few words of another ("token pruning for video diffusion")."""
    def span(longest):
        words = rng.choice(title_words)
        length = min(len(words), rng.randint(1, longest))
        start = rng.randrange(len(words) - length + 1)
        return " ".join(words[start:start + length])

    phrase = span(3)
    return f"{phrase} for {span(2)}" if rng.random() < 0.5 else phrase


def build_data(subscribers, own_phrases=0.0, seed=7):
    """Migrate, import the bundled corpus, build today's daily edition, insert the readers.

    ``own_phrases``: the share of readers who add an interest in their own words to the
    common phrases, so that the distinct interests grow with the readers. Returns the edition
    and how many distinct interest phrases the readers have.
    """
    from django.core.management import call_command
    from django.utils import timezone

    from digest.editions import get_or_build_edition
    from papers.ingest import store_batch
    from papers.models import Paper
    from papers.sources.bundled import BundledSource
    from subscriptions.models import Subscriber

    call_command("migrate", verbosity=0)
    source = BundledSource()
    store_batch(source.fetch().records, source)
    edition, _ = get_or_build_edition("daily", timezone.localdate())
    title_words = [words for title in Paper.objects.values_list("title", flat=True)
                   if (words := re.findall(r"[a-z][a-z0-9-]{2,}", title.lower()))]
    rng = random.Random(seed)
    now = timezone.now()
    batch, distinct = [], set(INTERESTS)
    for n in range(subscribers):
        phrases = rng.sample(INTERESTS, rng.randint(1, 4))
        if rng.random() < own_phrases:
            phrases.append(own_phrase(title_words, rng))
            distinct.add(phrases[-1])
        interests = ", ".join(phrases)
        categories = rng.sample(CATEGORIES, rng.choice((0, 0, 1, 1, 2)))
        batch.append(Subscriber(
            email=f"reader{n}@bench.example", status=Subscriber.Status.ACTIVE, interests=interests,
            categories=categories, frequency=Subscriber.Frequency.DAILY, max_papers=rng.choice((5, 10, 10, 20)),
            timezone="UTC", send_hour=0, always_send_top=True, confirmed_at=now,
            token_secret=f"{rng.getrandbits(128):032x}",
        ))
        if len(batch) == 5000:
            Subscriber.objects.bulk_create(batch)
            batch = []
    Subscriber.objects.bulk_create(batch)
    return edition, len(distinct)


def build_history(days, seed=9):
    """``days`` past daily editions (weekdays before today's edition), each with a sent digest of
    10 papers for every reader, as a ledger looks after months of service (COPY; the papers are
    ids of earlier papers, none of them in today's edition)."""
    import io
    from datetime import datetime, timedelta

    from django.db import connection
    from django.utils import timezone

    from digest.editions import edition_date_for
    from digest.models import Edition
    from subscriptions.models import Subscriber

    rng = random.Random(seed)
    readers = list(Subscriber.objects.values_list("pk", flat=True))
    day, editions = edition_date_for("daily", timezone.localdate()), []  # today's edition: Friday's at weekends
    while len(editions) < days:
        day = edition_date_for("daily", day - timedelta(days=1))
        built = timezone.make_aware(datetime(day.year, day.month, day.day, 6))
        editions.append(Edition.objects.create(cadence="daily", date=day, built_at=built))
    first_past_paper = 10_000_000
    for number, edition in reversed(list(enumerate(editions))):  # oldest first: ids rise with time, as in service
        buffer = io.StringIO()
        sent = edition.built_at + timedelta(minutes=10)
        papers = range(first_past_paper + 40 * number, first_past_paper + 40 * (number + 1))
        for reader in readers:
            buffer.write(f"{reader}\t{edition.pk}\tsent\t{rng.sample(papers, 10)}\t{{}}\t\t\t\t1\t"
                         f"{edition.built_at.isoformat()}\t{sent.isoformat()}\t{sent.isoformat()}\t{sent.isoformat()}\n")
        copy_rows(DELIVERY_COLUMNS, buffer)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def build_votes(share, seed=11):
    """``share`` of the readers have voted on papers of earlier digests: 1 to 40 votes each, about
    three in four of them likes, so that some readers have the five likes that give them a model.
    The papers voted on are copies of the corpus under other arXiv ids, first seen a month ago.
    Returns (voters, readers with a model)."""
    from datetime import timedelta

    from django.utils import timezone

    from digest.models import Feedback
    from digest.ranking import MODEL_MIN_LIKES
    from papers.models import Paper
    from subscriptions.models import Subscriber

    rng = random.Random(seed)
    month_ago = timezone.now() - timedelta(days=30)
    past = Paper.objects.bulk_create([
        Paper(arxiv_id=f"2510.{n:05d}", title=p.title, abstract=p.abstract, ai_keywords=p.ai_keywords,
              categories=p.categories, source=p.source, first_seen_at=month_ago)
        for n, p in enumerate(Paper.objects.order_by("pk"))
    ])
    voters = [pk for pk in Subscriber.objects.values_list("pk", flat=True) if rng.random() < share]
    votes, with_model = [], 0
    for reader in voters:
        papers = rng.sample(past, rng.choice((1, 2, 3, 4, 6, 8, 12, 20, 40)))
        choices = [1 if rng.random() < 0.75 else -1 for _ in papers]
        with_model += choices.count(1) >= MODEL_MIN_LIKES
        votes += [Feedback(subscriber_id=reader, paper=paper, vote=vote, created_at=month_ago)
                  for paper, vote in zip(papers, choices)]
    Feedback.objects.bulk_create(votes, batch_size=5000)
    return len(voters), with_model


DELIVERY_COLUMNS = (
    "digest_delivery (subscriber_id, edition_id, status, paper_ids, reasons, reason, esp_message_id, "
    "send_token, attempts, created_at, sending_at, sent_at, updated_at)"
)


def copy_rows(table, buffer):
    """COPY the tab-separated rows written to ``buffer`` into ``table (columns)``."""
    from django.db import connection

    buffer.seek(0)
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(buffer.read())


# --- The production send path, in a fresh process per worker ----------------


ENQUEUE = "enqueue_due_digests"


def send_worker(database_url, esp_url, index, task_queue, result_queue, workers, profile=None):
    """Boot as a Celery worker process does, say so, then take the tasks that ``task_queue``
    brings, the next one whenever this process is free (a prefetch of one), until None.

    ``ENQUEUE`` is the beat's 15-minute task, which a worker process runs: the due readers read,
    each chunk's pending rows inserted and the chunk published as a ``send_digest_chunk`` task on
    the same queue (``run_enqueue_task``). A chunk (an array of ids) is that task."""
    booted = time.perf_counter()
    configure_env(database_url, esp_url)
    django_setup()
    from celery.signals import worker_process_init
    from django.db import connection
    from django.utils import timezone

    from digest import sending
    from digest.scheduling import current_edition
    from digest.tasks import send_digest_chunk

    worker_process_init.send(sender=None)  # as a Celery pool process does when it starts
    result_queue.put({"index": index, "boot": time.perf_counter() - booted})
    boot_cpu, boot_faults = cpu_seconds(), page_faults()
    task = task_queue.get(timeout=3600)  # the first: the send has begun
    first_task_at = time.perf_counter()
    main_thread_cpu, kernel_cpu = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    if profile and index == 0:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    counter = QueryCounter()
    clock = sending.PHASES
    clock.reset()
    clock.query_count = counter.in_this_thread
    sent, prepare = 0, None
    with connection.execute_wrapper(counter):
        while task is not None:
            if task == ENQUEUE:
                with clock.phase("select/claim"):
                    run_enqueue_task(task_queue, workers)
            else:
                if prepare is None:  # in the process's first send task, as in a long-lived worker
                    prepare = time.perf_counter()
                    edition = current_edition("daily", timezone.now())
                    sending.prepare_edition(edition)
                    prepare = time.perf_counter() - prepare
                sent += send_digest_chunk.apply(args=(edition.pk, task.tolist())).get()["sent"]
            task = task_queue.get(timeout=3600)
    finished = time.perf_counter()
    prepare = prepare or 0.0  # a process that ran only the beat's task prepared nothing
    if profile and index == 0:
        profiler.disable()
        profiler.dump_stats(profile)
    result_queue.put({
        "index": index, "sent": sent, "seconds": finished - first_task_at - prepare, "prepare": prepare,
        "first_task_at": first_task_at, "finished_at": finished,
        "queries": counter.count, "peak_rss_mb": peak_rss_mb(), "phases": clock.summary(),
        "cpu_seconds": cpu_seconds() - boot_cpu,
        "main_thread_cpu_seconds": time.thread_time() - main_thread_cpu,
        "kernel_cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel_cpu,
        "page_faults": page_faults() - boot_faults,
        "slowest": counter.slowest(),
    })


def run_enqueue_task(task_queue, workers):
    """The beat's task, ``digest.services.enqueue_due_digests``, as it runs in production, with
    ``send_digest_chunk.delay`` publishing each chunk on ``task_queue`` (as an array of 8-byte
    ids) instead of on the broker; then None for each of the ``workers`` processes, after every
    chunk (the queue is first in, first out)."""
    from unittest import mock

    from digest import services, tasks

    def publish(edition_id, chunk):
        task_queue.put(array("q", chunk))

    with mock.patch.object(tasks.send_digest_chunk, "delay", publish):
        services.enqueue_due_digests()
    for _ in range(workers):
        task_queue.put(None)


def run_send(database_url, esp_url, workers, profile=None, enqueue="worker"):
    """The send timed as a day's send runs: from the beat's tick (its task on the queue) to the
    last digest recorded, by workers already booted (Python, Django and the app imported), as
    Celery workers are when the beat fires. Their boot is timed apart, as the naive baseline's is
    left out of its rate.

    With ``enqueue="worker"`` the beat's task is the queue's first task and one of the worker
    processes runs it, as the Procfile's one ``celery worker`` over every queue does; with
    ``"apart"`` this process runs it beside them, as the worker for the default queue does once
    send workers run apart (docs/deploy.md). Returns the workers' outcomes, the wall seconds and
    the CPU seconds the host's cores were busy meanwhile (every process: workers, PostgreSQL, the
    ESP, and this one)."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    task_queue = ctx.Queue()
    processes = [ctx.Process(target=send_worker,
                             args=(database_url, esp_url, i, task_queue, results, workers, profile))
                 for i in range(workers)]
    for p in processes:
        p.start()
    boot = {m["index"]: m["boot"] for m in (results.get(timeout=600) for _ in processes)}
    busy = host_busy_seconds()
    wall = tick = time.perf_counter()
    if enqueue == "worker":
        task_queue.put(ENQUEUE)
    else:
        from django.db import connection

        run_enqueue_task(task_queue, workers)
        connection.close()
    outcomes = [results.get(timeout=3600) for _ in processes]
    wall = time.perf_counter() - wall
    busy = host_busy_seconds() - busy
    for p in processes:
        p.join()
    last = max(o["finished_at"] for o in outcomes)
    for o in outcomes:
        o["boot"] = boot[o["index"]]
        o["idle_before"], o["idle_after"] = o["first_task_at"] - tick, last - o["finished_at"]
    return outcomes, wall, busy


# --- The naive baseline ---------------------------------------------------------


def naive_worker(database_url, esp_url, sample, result_queue):
    """Per reader: rank, render every template (paper blocks too), one message, one HTTP call."""
    configure_env(database_url, esp_url)
    django_setup()
    from django.core.mail import get_connection
    from django.template.loader import render_to_string
    from django.utils.safestring import mark_safe

    from digest import rendering
    from digest.emails import build_email, inline_css
    from digest.models import Edition
    from digest.ranking import EditionRanker
    from digest.sending import edition_entries
    from subscriptions.models import Subscriber

    edition = Edition.objects.filter(cadence="daily").latest("date")  # today's: the others are past ones
    ranker = EditionRanker(edition_entries(edition))
    renderer = rendering.DigestRenderer(edition)
    readers = list(Subscriber.objects.order_by("pk")[:sample])
    connection = get_connection()
    started = time.perf_counter()
    for reader in readers:
        ranked = ranker.rank_for(reader)
        renderer.blocks = {}  # nothing shared between readers: each block rendered again
        context = renderer.context(reader, ranked)
        for item in context["items"]:
            block_context = {"paper": item["paper"], "page_url": rendering.paper_page_url(item["paper"], ""),
                             "meta": rendering.meta_line(item["paper"]),
                             "summary": rendering.short_summary(item["paper"]),
                             "links": rendering.paper_links(item["paper"])}
            item["block"] = rendering.PaperBlock(
                html=mark_safe(render_to_string("emails/digest_paper.html", block_context)),
                text=render_to_string("emails/digest_paper.txt", block_context),
            )
        text = render_to_string("emails/digest.txt", context)
        html = inline_css(render_to_string("emails/digest.html", context))
        message = build_email("digest", context, reader.email, rendering.digest_subject(edition, ranked),
                              bodies=(text, html))
        message.connection = connection
        message.send()
    seconds = time.perf_counter() - started
    result_queue.put({"count": len(readers), "seconds": seconds})


def run_naive(database_url, sample):
    esp = EspProcess().start()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=naive_worker, args=(database_url, esp.api_url, sample, results))
    process.start()
    outcome = results.get(timeout=3600)
    process.join()
    stats = esp.finish()
    assert stats["messages"] == outcome["count"], stats
    return outcome


# --- Checks and report ------------------------------------------------------------


def todays_deliveries():
    from django.utils import timezone

    from digest.models import Delivery
    from digest.scheduling import current_edition

    return Delivery.objects.filter(edition=current_edition("daily", timezone.now()))


def settle_calls_after_send():
    """With claims per call, the send leaves its rows pending and its calls hold their outcome;
    the beat's sweep copies it onto the rows later (``digest.calls.settle_calls``). Run here,
    after the send and not timed with it, so that the checks read each row's own status.
    Returns (calls settled, seconds)."""
    from digest.calls import settle_calls

    started = time.perf_counter()
    settled = settle_calls()
    return settled, time.perf_counter() - started


def ledger_bytes():
    """What the send left in the ledger once settled: (delivery rows, their bytes, ESP calls,
    their bytes, of which their papers), live rows as stored (compressed values at their
    compressed size), dead row versions left out."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(pg_column_size(d.*)), 0) FROM digest_delivery d")
        rows = cursor.fetchone()
        cursor.execute("SELECT count(*), coalesce(sum(pg_column_size(c.*)), 0), "
                       "coalesce(sum(pg_column_size(c.papers)), 0) FROM digest_sendcall c")
        return (*rows, *cursor.fetchone())


def verify(subscribers, esp_stats):
    from django.db.models import Count

    from digest.models import SendCall

    by_status = dict(todays_deliveries().values_list("status").annotate(n=Count("id")))
    unsettled = SendCall.objects.exclude(status="sent", settled_at__isnull=False).count()
    per_reader = todays_deliveries().filter(status="sent").values("subscriber_id").annotate(n=Count("id"))
    problems = []
    if unsettled:
        problems.append(f"{unsettled} ESP calls not sent and settled")
    if by_status.get("sent", 0) != subscribers:
        problems.append(f"sent deliveries {by_status} != {subscribers}")
    if per_reader.filter(n__gt=1).exists():
        problems.append("a subscriber has more than one sent delivery")
    if esp_stats["recipients"] != subscribers or esp_stats["messages"] != subscribers:
        problems.append(f"ESP received {esp_stats}, expected {subscribers} recipients, one message each")
    if esp_stats["distinct_bodies"] < esp_stats["bodies_checked"]:
        problems.append(f"only {esp_stats['distinct_bodies']} distinct bodies for {esp_stats['bodies_checked']} readers")
    return by_status, problems


def merge_phases(outcomes):
    merged = {}
    for outcome in outcomes:
        for name, figures in outcome["phases"].items():
            total = merged.setdefault(name, {"seconds": 0.0, "rows": 0, "queries": 0, "peak_rss_mb": 0.0})
            for key in ("seconds", "rows", "queries"):
                total[key] += figures[key]
            total["peak_rss_mb"] = max(total["peak_rss_mb"], figures["peak_rss_mb"])
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="also run with this many processes and compare")
    parser.add_argument("--naive-sample", type=int, default=NAIVE_SAMPLE)
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats of the first send worker to FILE")
    parser.add_argument("--history-days", type=int, default=0,
                        help="past daily editions each reader already got a digest of (the ledger after months)")
    parser.add_argument("--voters", type=float, default=0.0, metavar="SHARE",
                        help="share of readers who have voted on papers of earlier digests (some with a model)")
    parser.add_argument("--own-phrases", type=float, default=0.0, metavar="SHARE",
                        help="share of readers with an interest in their own words (distinct interests grow with N)")
    parser.add_argument("--esp-latency", type=float, default=0.0, metavar="MS",
                        help="milliseconds the imitation ESP holds each call of the send before answering")
    parser.add_argument("--calls-in-flight", type=int, metavar="K",
                        help="DIGEST_ESP_CALLS_IN_FLIGHT for the send (default: the setting's)")
    parser.add_argument("--rounds", type=int, default=1, metavar="K",
                        help="with --workers, send K times with one worker and K times with the others, "
                             "alternated, and print each round's ratio and the median one")
    parser.add_argument("--claims", choices=["per-row", "per-call"],
                        help="DIGEST_CLAIMS_PER_CALL for the send (default: the setting's)")
    parser.add_argument("--enqueue", choices=["worker", "apart"], default="worker",
                        help="who runs the beat's enqueue_due_digests task (the due readers read, each chunk's "
                             "pending rows inserted and handed out) in the timed send: one of the worker processes, "
                             "as the Procfile's one worker over every queue does (default), or a process of its own "
                             "beside them, as the worker for the default queue does once send workers run apart")
    args = parser.parse_args()
    if args.claims is not None:
        os.environ["DIGEST_CLAIMS_PER_CALL"] = str(args.claims == "per-call").lower()
    if args.calls_in_flight is not None:
        os.environ["DIGEST_ESP_CALLS_IN_FLIGHT"] = str(args.calls_in_flight)
    n = args.subscribers

    server = start_database()
    try:
        database_url = server.url("bench")
        configure_env(database_url, "http://127.0.0.1:9/v3")
        django_setup()
        from django.db import connection

        t = time.perf_counter()
        _, phrases = build_data(n, args.own_phrases)
        if args.history_days:
            build_history(args.history_days)
        voters, with_model = build_votes(args.voters) if args.voters else (0, 0)
        connection.close()
        print(f"setup: {n} subscribers ({phrases} distinct interest phrases, {voters} voters, {with_model} with a "
              f"model), bundled corpus, daily edition, {args.history_days} past digests per reader "
              f"in {time.perf_counter() - t:.1f} s")

        naive = run_naive(database_url, min(args.naive_sample, n))
        naive_rate = naive["count"] / naive["seconds"]
        print(f"naive baseline: {naive['count']} readers in {naive['seconds']:.2f} s = {naive_rate:,.0f}/s")

        from django.conf import settings

        print(f"send: the ESP answers each call after {args.esp_latency:.0f} ms; "
              f"{settings.DIGEST_ESP_CALLS_IN_FLIGHT} ESP call(s) in flight per worker; the beat's task run "
              f"{'by a worker process' if args.enqueue == 'worker' else 'apart from the worker processes'}")
        runs = {1: [], args.workers: []}
        for i, workers in enumerate(run_order(args.workers, args.rounds)):
            if i:
                reset_ledger(args.history_days)
            bodies_every = -(-n // BODIES_KEPT)
            esp = EspProcess(bodies_every=bodies_every, latency=args.esp_latency / 1000,
                             arena_mb=ARENA_MB_PER_THOUSAND * n // 1000 if bodies_every == 1 else 0).start()
            postgres_cpu = tree_cpu_seconds(postmaster_pid(server))
            profile = args.profile if workers == 1 and not runs[1] else None
            outcomes, wall, busy = run_send(database_url, esp.api_url, workers, profile, args.enqueue)
            postgres_cpu = tree_cpu_seconds(postmaster_pid(server)) - postgres_cpu
            stats = esp.finish()
            stats["postgres_cpu_seconds"] = postgres_cpu
            stats["host_busy_seconds"] = busy
            stats["settle"] = settle_calls_after_send()
            stats["ledger_bytes"] = ledger_bytes()
            by_status, problems = verify(n, stats)
            connection.close()
            runs[workers].append((outcomes, wall, stats, by_status, problems))
            report(n, workers, outcomes, wall, stats, by_status, problems)

        outcomes, wall, stats, by_status, problems = median_run(runs[1])
        rate = n / wall
        queries = sum(o["queries"] for o in outcomes)
        rss = max(o["peak_rss_mb"] for o in outcomes)
        if args.workers != 1:
            report_workers(n, args.workers, runs)
        print(f"RESULT subscribers={n} seconds={wall:.2f} per_second={rate:.0f} naive_per_second={naive_rate:.0f} "
              f"speedup={rate / naive_rate:.1f} queries={queries} peak_rss_mb={rss:.0f}")
        return 1 if any(run[4] for kept in runs.values() for run in kept) else 0
    finally:
        server.stop()


def run_order(workers, rounds):
    """The sends of ``rounds`` rounds, one worker and ``workers`` alternated, each round in the
    other order than the one before (1, 2, 2, 1, 1, 2 …): a host whose speed drifts during the
    runs favours neither."""
    if workers == 1:
        return [1] * rounds
    pairs = [(1, workers) if r % 2 == 0 else (workers, 1) for r in range(rounds)]
    return [w for pair in pairs for w in pair]


def median_run(kept):
    """Of a setting's runs, the one of median speed (the slower of the two middle ones)."""
    return sorted(kept, key=lambda run: run[1])[len(kept) // 2]


def report_workers(n, workers, runs):
    """Per round, the two speeds and their ratio; then the medians (of an even number of rounds,
    the lower of the two middle ratios). One run of one worker is divided by the run of
    ``workers`` of the same round, next to it in time."""
    ratios = []
    for r, (one, many) in enumerate(zip(runs[1], runs[workers]), 1):
        ratios.append(one[1] / many[1])
        if len(runs[1]) > 1:
            print(f"ROUND {r} one_worker_per_second={n / one[1]:.0f} per_second={n / many[1]:.0f} "
                  f"ratio={ratios[-1]:.3f} {ratio_made_of(n, one, many)}")
    ratios.sort()
    one_worker = median_run(runs[1])
    print(f"WORKERS workers={workers} per_second={n / median_run(runs[workers])[1]:.0f} "
          f"one_worker_per_second={n / one_worker[1]:.0f} ratio={ratios[(len(ratios) - 1) // 2]:.3f}"
          + (f" rounds={len(ratios)} lowest_ratio={ratios[0]:.3f}" if len(ratios) > 1 else "")
          + f" one_worker_cores={one_worker[2]['host_busy_seconds'] / one_worker[1]:.2f}")


def ratio_made_of(n, one, many):
    """What a round's ratio is made of: a run's rate is the cores it kept busy divided by the CPU
    it took per reader (every process on the host), so the ratio is the cores the run of several
    workers kept busy over those of the one, times the one's CPU per reader over theirs."""
    (cores_one, cpu_one), (cores_many, cpu_many) = (
        (run[2]["host_busy_seconds"] / run[1], run[2]["host_busy_seconds"] / n * 1e6) for run in (one, many)
    )
    return (f"cores={cores_one:.2f}/{cores_many:.2f} cpu_us_per_reader={cpu_one:.0f}/{cpu_many:.0f} "
            f"(={cores_many / cores_one:.2f}x{cpu_one / cpu_many:.2f})")


def postmaster_pid(server):
    return int((server.datadir / "postmaster.pid").read_text().split()[0])


def reset_ledger(history):
    """Today's deliveries gone, for the next run: the table emptied as before the first run, or
    with past digests, today's rows deleted and the table vacuumed (no dead rows left to slow it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if not history:
            cursor.execute("TRUNCATE digest_delivery, digest_sendcall CASCADE")
            return
        edition_id = todays_deliveries()[:1].get().edition_id
        cursor.execute("DELETE FROM digest_sendcall WHERE edition_id = %s", [edition_id])
        cursor.execute("DELETE FROM digest_delivery WHERE edition_id = %s", [edition_id])
        cursor.execute("VACUUM ANALYZE digest_delivery")


def report(n, workers, outcomes, wall, stats, by_status, problems):
    print(f"\n== send: {n} readers, {workers} worker process(es), {wall:.2f} s wall, {n / wall:,.0f} digests/s")
    for o in sorted(outcomes, key=lambda o: o["index"]):
        print(f"   worker {o['index']}: booted in {o['boot']:.2f} s (not timed), then sent {o['sent']} in "
              f"{o['seconds']:.2f} s (and prepared the edition in {o['prepare']:.2f} s), {o['queries']} queries, "
              f"peak RSS {o['peak_rss_mb']:.0f} MB, {o['page_faults'] / max(o['sent'], 1):.2f} page faults per digest")
        print(f"     took its first task {o['idle_before']:.2f} s after the tick and finished "
              f"{o['idle_after']:.2f} s before the last process")
        print(f"     CPU {o['cpu_seconds']:.2f} s: main thread {o['main_thread_cpu_seconds']:.2f} s, ESP batch "
              f"threads {o['cpu_seconds'] - o['main_thread_cpu_seconds']:.2f} s; {o['kernel_cpu_seconds']:.2f} s of it in "
              f"the kernel")
    print("   (seconds summed over workers; rank and render are timed per reader, peak RSS is the process peak at the phase's last exit)")
    print("   slowest SQL statements of worker 0 (count, seconds):")
    for statement, (count, seconds) in next(o for o in outcomes if o["index"] == 0)["slowest"]:
        print(f"     {count:>5} {seconds:>7.2f}  {statement}")
    print(f"{'phase':<14}{'seconds':>9}{'rows':>9}{'rows/s':>10}{'queries':>9}{'peak RSS MB':>13}")
    for name, f in merge_phases(outcomes).items():
        per_second = f["rows"] / f["seconds"] if f["seconds"] else 0
        rss = f"{f['peak_rss_mb']:.0f}" if f["peak_rss_mb"] else "-"
        print(f"{name:<14}{f['seconds']:>9.2f}{f['rows']:>9}{per_second:>10,.0f}{f['queries']:>9}{rss:>13}")
    print(f"   ESP: {stats['calls']} calls, {stats['messages']} messages, {stats['recipients']} recipients, "
          f"{stats['distinct_bodies']} distinct bodies of the {stats['bodies_checked']} kept; ledger: {by_status}")
    worker_cpu = sum(o["cpu_seconds"] for o in outcomes)
    print(f"   CPU seconds: workers {worker_cpu:.1f}, PostgreSQL {stats['postgres_cpu_seconds']:.1f}, "
          f"ESP {stats['cpu_seconds']:.1f} (per reader: {worker_cpu / n * 1e6:.0f}, "
          f"{stats['postgres_cpu_seconds'] / n * 1e6:.0f} and {stats['cpu_seconds'] / n * 1e6:.0f} µs)")
    busy = stats["host_busy_seconds"]
    print(f"   host: its cores were busy {busy:.1f} s of the {wall:.2f} s, {busy / wall:.2f} of {os.cpu_count()} cores "
          f"on average, {busy / n * 1e6:.0f} µs of CPU per reader (every process)")
    settled, settle_seconds = stats["settle"]
    if settled:
        print(f"   after the send (not timed): {settled} ESP calls settled onto their rows in {settle_seconds:.2f} s")
    rows, row_bytes, calls, call_bytes, paper_bytes = stats["ledger_bytes"]
    print(f"   ledger once settled: {rows} delivery rows, {row_bytes / max(rows, 1):.0f} bytes each as stored; "
          f"{calls} ESP calls, {call_bytes / max(calls, 1) / 1024:.1f} KB each, of which papers "
          f"{paper_bytes / max(calls, 1) / 1024:.1f} KB")
    print("   checks: " + ("ok" if not problems else "FAILED: " + "; ".join(problems)))


if __name__ == "__main__":
    sys.exit(main())
