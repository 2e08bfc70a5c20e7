"""`manage.py suppress_addresses`: the bounces an SMTP relay reports by email, suppressed in one go."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from subscriptions import services
from subscriptions.models import Subscriber, Suppression, email_hash
from subscriptions.services import SignupResult
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

BOUNCES = """\
# bounces of 2026-12-07
Ada@Example.org

grace@example.org
nobody@example.org
not an address
"""


def run(*args, **options):
    out, err = StringIO(), StringIO()
    call_command("suppress_addresses", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_each_listed_address_is_never_emailed_again_whoever_it_belongs_to(tmp_path):
    active = SubscriberFactory(email="ada@example.org")
    complained = SubscriberFactory(email="grace@example.org", status="complained")
    unlisted = SubscriberFactory(email="alan@example.org")
    listing = tmp_path / "bounces.txt"
    listing.write_text(BOUNCES)

    out, err = run(str(listing))

    assert out.strip() == (
        "1 subscriber suppressed (bounced), 1 already suppressed, 1 address without a subscriber put on the "
        "suppression list"
    )
    assert err.strip() == "line 6: not an address, skipped: 'not an address'"
    statuses = dict(Subscriber.objects.values_list("email", "status"))
    assert statuses == {active.email: "bounced", complained.email: "complained", unlisted.email: "active"}
    assert Suppression.objects.get(email_hash=email_hash("ada@example.org")).reason == "bounced"
    assert services.request_subscription("nobody@example.org", {}) is SignupResult.BLOCKED


def test_the_addresses_may_come_on_standard_input_with_another_reason():
    reader = SubscriberFactory(email="ada@example.org")

    out, _ = run("-", reason="complained", stdin=StringIO("ada@example.org\n"))

    assert out.startswith("1 subscriber suppressed (complained)")
    assert Subscriber.objects.get(pk=reader.pk).status == "complained"


def test_a_file_that_cannot_be_read_is_refused_naming_it(tmp_path):
    with pytest.raises(CommandError, match="cannot read .*missing.txt"):
        run(str(tmp_path / "missing.txt"))


def test_a_file_that_is_not_utf8_is_refused_naming_it_and_nothing_is_suppressed(tmp_path):
    reader = SubscriberFactory(email="ada@example.org")
    listing = tmp_path / "bounces.txt"
    listing.write_bytes(b"ada@example.org\nb\xe9b\xe9@example.org\n")

    with pytest.raises(CommandError, match=r"cannot read .*bounces.txt: not UTF-8 \(line 2\)"):
        run(str(listing))
    assert Subscriber.objects.get(pk=reader.pk).status == "active" and not Suppression.objects.exists()
