import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.text import Truncator

from digest import services
from digest.models import Delivery
from digest.rendering import delivered_papers, digest_subject
from papers.models import Paper
from subscriptions.models import Subscriber

DEMO_SUBSCRIBERS = [
    {
        "email": "ada@demo.paperboy.localhost",
        "interests": "large language models, reasoning, reinforcement learning from human feedback",
        "categories": ["cs.CL"],
        "frequency": Subscriber.Frequency.DAILY,
        "max_papers": 5,
    },
    {
        "email": "grace@demo.paperboy.localhost",
        "interests": "diffusion models, image generation, video generation",
        "categories": ["cs.CV"],
        "frequency": Subscriber.Frequency.DAILY,
        "max_papers": 10,
    },
    {
        "email": "alan@demo.paperboy.localhost",
        "interests": "robotics, agents, embodied AI, world models",
        "categories": [],
        "frequency": Subscriber.Frequency.WEEKLY,
        "max_papers": 10,
    },
]
ADMIN_USERNAME = "admin"
DIGEST_LINES_SHOWN = 3
TITLE_WIDTH = 90


class Command(BaseCommand):
    help = "Set up the offline demo (bundled papers, three subscribers, an admin) and run the daily job."

    def handle(self, *args, **options):
        self.ensure_demo_subscribers()
        password_note = self.ensure_admin()
        sent_before = Delivery.objects.filter(status=Delivery.Status.SENT).count()
        summary = services.run_daily_job()
        sent_now = Delivery.objects.filter(status=Delivery.Status.SENT).count() - sent_before
        self.print_summary(summary, sent_now, password_note)

    def ensure_demo_subscribers(self):
        for spec in DEMO_SUBSCRIBERS:
            Subscriber.objects.get_or_create(
                email=spec["email"],
                defaults={
                    **spec,
                    "status": Subscriber.Status.ACTIVE,
                    "confirmed_at": timezone.now(),
                    "timezone": "UTC",
                    "send_hour": 0,
                    "consent_note": "demo subscriber",
                },
            )

    def ensure_admin(self):
        """A local admin with a random password, kept under var/ so later runs can show it."""
        password_file = settings.VAR_DIR / "demo-admin-password.txt"
        User = get_user_model()
        if User.objects.filter(username=ADMIN_USERNAME).exists() and password_file.exists():
            return password_file.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = User.objects.get_or_create(username=ADMIN_USERNAME, defaults={"email": settings.CONTACT_EMAIL})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        return password

    def print_digest(self, subscriber):
        """The subscriber's latest digest: its subject, then each paper with its why-line."""
        delivery = (
            subscriber.deliveries.filter(status=Delivery.Status.SENT)
            .select_related("edition", "subscriber")
            .order_by("-sent_at")
            .first()
        )
        if delivery is None:
            return
        ranked = delivered_papers(delivery)
        self.stdout.write(self.style.MIGRATE_HEADING(f"  {subscriber.email}, interested in: {subscriber.interests}"))
        self.stdout.write(f"    Subject: {digest_subject(delivery.edition, ranked)}")
        for rank, item in enumerate(ranked[:DIGEST_LINES_SHOWN], start=1):
            self.stdout.write(f"    {rank}. {Truncator(item.paper.title).chars(TITLE_WIDTH)}")
            self.stdout.write(f"       why: {item.reason}")
        if len(ranked) > DIGEST_LINES_SHOWN:
            self.stdout.write(f"    … and {len(ranked) - DIGEST_LINES_SHOWN} more")
        self.stdout.write("")

    def print_summary(self, summary, sent_now, password):
        write = self.stdout.write
        write("")
        write(self.style.SUCCESS("Paperboy demo done."))
        for source, outcome in (summary["fetched"] or {}).items():
            write(f"  papers from {source}: {outcome}")
        write(f"  papers stored: {Paper.objects.count()}")
        for edition in summary["editions"]:
            write(f"  edition: {edition}")
        write(f"  digests sent in this run: {sent_now} (a re-run on the same day sends none)")
        for sub in Subscriber.objects.filter(email__in=[s["email"] for s in DEMO_SUBSCRIBERS]):
            delivery = sub.deliveries.select_related("edition").order_by("-created_at").first()
            state = f"{delivery.status} ({delivery.edition})" if delivery else "no delivery yet"
            write(f"    {sub.email:<34} {sub.frequency:<7} {state}")
        write("")
        for sub in Subscriber.objects.filter(email__in=[s["email"] for s in DEMO_SUBSCRIBERS]).order_by("email"):
            self.print_digest(sub)
        if "outbox" in settings.EMAIL_BACKEND:
            write(f"  outbox (one .eml file per email): {settings.OUTBOX_DIR}")
        write(f"  admin: make serve, then http://127.0.0.1:8000/admin/ as {ADMIN_USERNAME} / {password}")
