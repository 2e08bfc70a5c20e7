"""The daily job through a real worker, sending over SMTP to a local server.

The received messages are parsed as a mail client would: headers, the text
and HTML alternatives, and every link back to the site, each fetched from
the running gunicorn.
"""

import html
import re

import pytest

from digest.models import Delivery, Feedback
from subscriptions.models import Subscriber
from tests.fakes.smtp import SmtpSink
from tests.ops.audience import addresses, make_audience
from tests.ops.conftest import sources_env
from tests.ops.stack import wait_until

pytestmark = [pytest.mark.celery_worker, pytest.mark.redis, pytest.mark.postgres]

FROM = "Paperboy <digest@paperboy.example.org>"
TEXT_LINK = re.compile(r"https?://[^\s<>\"']+")
HTML_LINK = re.compile(r"""href="([^"]+)\"""")


def unsubscribe_url_of(message):
    """The URL of ``List-Unsubscribe: <https://…>, <mailto:…>``."""
    header = message["List-Unsubscribe"]
    match = re.fullmatch(r"<(https?://[^>]+)>, <mailto:[^>]+>", " ".join(header.split()))
    assert match, f"unexpected List-Unsubscribe: {header!r}"
    return match.group(1)


def site_links(mail, site_url):
    text_links = set(TEXT_LINK.findall(mail.body("plain")))
    html_links = {html.unescape(url) for url in HTML_LINK.findall(mail.body("html"))}
    return {url for url in text_links | html_links if url.startswith(f"{site_url}/")}


@pytest.fixture
def smtp_run(stack, recorded_sources, smtp_sink):
    """Run the daily job once; return (readers, not_due) once every reader's digest was sent."""
    readers, not_due = make_audience()
    stack.configure(**sources_env(recorded_sources), EMAIL_URL=smtp_sink.url, DEFAULT_FROM_EMAIL=FROM)
    stack.start_web()
    stack.start_worker()
    stack.send_task("digest.tasks.run_daily_job")
    all_sent = wait_until(lambda: Delivery.objects.filter(status="sent").count() == len(readers), 60)
    assert all_sent, stack.logs()
    return readers, not_due


@pytest.mark.django_db(transaction=True)
def test_each_active_subscriber_receives_one_well_formed_digest_over_smtp(smtp_run, smtp_sink, stack):
    readers, _ = smtp_run
    mails = smtp_sink.messages

    assert sorted(rcpt.lower() for mail in mails for rcpt in mail.rcpt_tos) == addresses(readers)
    for mail in mails:
        message = mail.message
        subscriber = Subscriber.objects.get(email__iexact=mail.rcpt_tos[0])
        assert message["To"] == subscriber.email
        assert message["From"] == FROM
        assert message["Subject"].startswith("Paperboy ")
        assert message["Date"] and re.fullmatch(r"<[^@\s]+@[^>\s]+>", message["Message-ID"])
        assert message.get_content_type() == "multipart/alternative"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"]
        unsubscribe_url = unsubscribe_url_of(message)
        assert unsubscribe_url.startswith(f"{stack.site_url}/unsubscribe/")
        text, body_html = mail.body("plain"), mail.body("html")
        assert unsubscribe_url in text and html.escape(unsubscribe_url) in body_html
        assert "<script>alert" not in body_html  # a recorded title tries to inject a script
    logs = stack.logs(tail=None).lower()
    assert not [email for email in addresses(readers) if email in logs]  # ids, never addresses


@pytest.mark.django_db(transaction=True)
def test_every_site_link_in_the_emails_opens_on_the_running_site_without_side_effects(smtp_run, smtp_sink, stack):
    links = set()
    for mail in smtp_sink.messages:
        links |= site_links(mail, stack.site_url)
    kinds = {url[len(stack.site_url):].split("/")[1] for url in links}

    broken = {url: stack.get(url, allow_redirects=False).status_code for url in sorted(links)}
    broken = {url: status for url, status in broken.items() if status != 200}

    assert {"unsubscribe", "preferences", "vote", "d", "digest"} <= kinds
    assert not broken, broken
    # Mail scanners open every link: opening them must neither vote nor unsubscribe.
    assert not Feedback.objects.exists()
    assert Subscriber.objects.filter(status="active").count() == len(smtp_run[0])


@pytest.mark.django_db(transaction=True)
def test_one_click_unsubscribe_from_the_header_works_against_the_running_site(smtp_run, smtp_sink, stack):
    mail = smtp_sink.messages[0]
    unsubscribe_url = unsubscribe_url_of(mail.message)

    response = stack.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    subscriber = Subscriber.objects.get(email__iexact=mail.rcpt_tos[0])
    assert subscriber.status == "unsubscribed" and subscriber.unsubscribed_via == "one-click"


@pytest.mark.django_db(transaction=True)
def test_a_relay_that_refuses_the_login_holds_every_digest_until_it_takes_it_then_sends_each_once(
    stack, recorded_sources
):
    readers, _ = make_audience()
    with SmtpSink(refuse_login=True) as relay:
        stack.configure(**sources_env(recorded_sources), EMAIL_URL=f"smtp://paperboy:secret@127.0.0.1:{relay.port}",
                        DEFAULT_FROM_EMAIL=FROM, DIGEST_RETRY_BASE_SECONDS=1)
        stack.start_worker()
        stack.send_task("digest.tasks.run_daily_job")
        assert wait_until(lambda: "digest chunk done" in stack.logs(tail=None), 60), stack.logs()
        assert "SMTPAuthenticationError" in stack.logs(tail=None)
        assert not Delivery.objects.filter(status__in=["sent", "failed"]).exists()  # each back to pending

        relay.refuse_login = False  # the relay's account is put right; the task's retry sends
        all_sent = wait_until(lambda: Delivery.objects.filter(status="sent").count() == len(readers), 60)
        assert all_sent, stack.logs()

    assert sorted(rcpt.lower() for mail in relay.messages for rcpt in mail.rcpt_tos) == addresses(readers)
