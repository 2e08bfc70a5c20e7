"""The scale issue's reference figures, measured again on this host.

The scale issue sets its targets beside figures its author measured on a 2-core
machine: django-newsletter 1.2.1's real sending path at about 340 messages/s
(one identical message of 10 articles to 10,000 subscribers, locmem backend;
about 550/s with 2 articles), and a naive Django loop (a 10-paper template
rendered per recipient, an ``EmailMultiAlternatives`` built and sent through
the locmem backend) at about 1,250/s, rendering alone about 2,400/s. This runs
the same three here, so that ``bench/digest_scale.py``'s figures can be read
against the same peer on the same host.

The peer runs as its own small Django project in this process (its models,
its templates, ``Submission.submit()`` as its ``submit_newsletter`` command
calls it) on a throwaway PostgreSQL cluster, or SQLite with ``--database
sqlite``. The articles are the bundled corpus's first papers: the title, the
abstract cut to 320 characters as the digest cuts a summary, and a link. The naive loop renders the peer's own message templates from
articles already in memory: no SQL per recipient.

Needs the peer, which the project does not depend on (the ``peer`` extra), in a
virtualenv of its own: its dependency chardet changes how feedparser reads a
feed in an encoding other than the one it declares, which the test suite checks
in ``.venv``.

    python3 -m venv .venv-peer && .venv-peer/bin/pip install -e '.[peer]'
    .venv-peer/bin/python bench/peer_newsletter.py
    .venv-peer/bin/python bench/peer_newsletter.py --database sqlite --rounds 5

Prints each figure per round and its median, then one line:

    REFERENCE peer_10=… peer_2=… naive_loop=… render_only=… database=… (issue: 340, 550, 1250, 2400)
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "papers" / "data" / "papers.jsonl"
SUMMARY_LIMIT = 320  # as the digest cuts a summary (digest.rendering.SUMMARY_LIMIT)
ISSUE_FIGURES = {"peer_10": 340, "peer_2": 550, "naive_loop": 1250, "render_only": 2400}

urlpatterns = []  # the peer project's URL conf (``settings_for``), filled once Django is set up


def settings_for(database):
    import environ

    return {
        "DEBUG": False,
        "SECRET_KEY": "peer-bench-not-a-secret",
        "ALLOWED_HOSTS": ["127.0.0.1"],
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sites",
            "newsletter",
        ],
        "DATABASES": {"default": environ.Env.db_url_config(database)},
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "SITE_ID": 1,
        "ROOT_URLCONF": __name__,
        "USE_TZ": True,
        "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "NEWSLETTER_THUMBNAIL": "sorl-thumbnail",  # named only: no article has an image
        "NEWSLETTER_CONFIRM_EMAIL": False,
        "NEWSLETTER_USE_HTTPS": True,
        "STATIC_URL": "/static/",
        "MEDIA_URL": "/media/",
    }


def corpus_articles(count):
    with CORPUS.open() as f:
        papers = [json.loads(line) for _, line in zip(range(count), f)]
    return [
        {"title": p["title"][:200], "text": summary(p["abstract"]), "url": f"https://papers.example/{n}"}
        for n, p in enumerate(papers, start=1)
    ]


def summary(abstract, limit=SUMMARY_LIMIT):
    """The abstract's first words, as a digest shows them: a whole abstract is one line of
    1,000–2,000 characters, which the email package then quoted-printable encodes."""
    text = " ".join(abstract.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "…"


def setup_peer(subscribers):
    """Migrate, then one newsletter with ``subscribers`` active subscriptions."""
    from django.contrib.sites.models import Site
    from django.core.management import call_command
    from newsletter.models import Newsletter, Subscription

    call_command("migrate", verbosity=0)
    Site.objects.update_or_create(pk=1, defaults={"domain": "peer.example", "name": "peer"})
    newsletter = Newsletter.objects.create(
        title="Trending papers", slug="trending", email="news@peer.example", sender="Peer bench"
    )
    Subscription.objects.bulk_create(
        [
            Subscription(newsletter=newsletter, name_field=f"Reader {n}", email_field=f"reader{n}@peer.example",
                         subscribed=True)
            for n in range(subscribers)
        ],
        batch_size=2000,
    )
    return newsletter


def new_submission(newsletter, articles, slug):
    """A message of ``articles`` and its submission to every subscriber, as the admin prepares one."""
    from django.utils import timezone
    from newsletter.models import Article, Message, Submission

    message = Message.objects.create(title=f"Today's papers ({slug})", slug=slug, newsletter=newsletter)
    for order, article in enumerate(articles):
        Article.objects.create(post=message, sortorder=order, **article)
    submission = Submission.from_message(message)
    submission.publish_date = timezone.now() - timezone.timedelta(seconds=1)
    submission.prepared = True
    submission.save()
    return submission


def time_peer(newsletter, articles, slug):
    """``Submission.submit()``: django-newsletter's whole sending path, every message through locmem."""
    from django.core import mail

    submission = new_submission(newsletter, articles, slug)
    count = submission.subscriptions.count()
    mail.outbox = []
    start = time.perf_counter()
    submission.submit()
    seconds = time.perf_counter() - start
    if len(mail.outbox) != count or len({m.to[0] for m in mail.outbox}) != count:
        raise SystemExit(f"peer sent {len(mail.outbox)} messages to {count} subscribers")
    mail.outbox = []
    return count / seconds


def time_naive_loop(newsletter, articles, recipients, render_only):
    """The issue's naive loop: the message's templates rendered per recipient from articles in
    memory, an ``EmailMultiAlternatives`` built and sent through locmem (or the renders alone)."""
    from django.core import mail
    from django.core.mail import EmailMultiAlternatives
    from django.template.loader import get_template

    html_template = get_template("newsletter/message/message.html")
    text_template = get_template("newsletter/message/message.txt")
    message = {"title": "Today's papers", "articles": {"all": articles}}
    base = {"newsletter": newsletter, "message": message, "site_url": "https://peer.example", "submission": None}
    mail.outbox = []
    start = time.perf_counter()
    for n in range(recipients):
        context = {**base, "subscription": {"email": f"reader{n}@peer.example"}}
        html = html_template.render(context)
        text = text_template.render(context)
        if render_only:
            continue
        email = EmailMultiAlternatives("Today's papers", text, "news@peer.example", [f"reader{n}@peer.example"])
        email.attach_alternative(html, "text/html")
        email.send()
    seconds = time.perf_counter() - start
    if not render_only and len(mail.outbox) != recipients:
        raise SystemExit(f"naive loop sent {len(mail.outbox)} of {recipients}")
    mail.outbox = []
    return recipients / seconds


def start_database(kind):
    """A database URL, and what to stop afterwards."""
    if kind == "sqlite":
        folder = tempfile.TemporaryDirectory(prefix="peer-bench-")
        return f"sqlite:///{folder.name}/peer.sqlite3", folder.cleanup
    from tests.servers import PostgresServer

    server = PostgresServer().start()
    return server.create_database("peer"), server.stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    try:
        import newsletter  # noqa: F401
    except ImportError:
        raise SystemExit("django-newsletter is not installed: python3 -m venv .venv-peer && "
                         ".venv-peer/bin/pip install -e '.[peer]', then run this with .venv-peer/bin/python")

    database, stop = start_database(args.database)
    try:
        import django
        from django.conf import settings

        settings.configure(**settings_for(database))
        django.setup()
        from django.urls import include, path

        urlpatterns.append(path("newsletter/", include("newsletter.urls")))  # its emails link to its pages

        newsletter = setup_peer(args.subscribers)
        ten, two = corpus_articles(10), corpus_articles(2)
        figures = {name: [] for name in ISSUE_FIGURES}
        for round_number in range(args.rounds):
            figures["peer_10"].append(time_peer(newsletter, ten, f"ten-{round_number}"))
            figures["peer_2"].append(time_peer(newsletter, two, f"two-{round_number}"))
            figures["naive_loop"].append(time_naive_loop(newsletter, ten, args.subscribers, render_only=False))
            figures["render_only"].append(time_naive_loop(newsletter, ten, args.subscribers, render_only=True))
            print(f"round {round_number + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in figures.items()),
                  flush=True)
    finally:
        stop()

    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, median in medians.items():
        print(f"{name:12} median {median:8,.0f}/s   the issue's machine {ISSUE_FIGURES[name]:,}/s   "
              f"this host at {median / ISSUE_FIGURES[name]:.2f} of it")
    print("REFERENCE " + " ".join(f"{k}={v:.0f}" for k, v in medians.items())
          + f" database={args.database} subscribers={args.subscribers}"
          + " (issue: " + ", ".join(str(v) for v in ISSUE_FIGURES.values()) + ")")


if __name__ == "__main__":
    main()
