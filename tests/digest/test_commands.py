"""`manage.py run_daily` and `send_digests`: the arguments they refuse and what they print."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from digest.models import Edition
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def bundled_only(settings):
    settings.PAPER_SOURCES = ["bundled"]


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("command", ["run_daily", "send_digests"])
@pytest.mark.parametrize("date", ["2026-02-30", "2026-13-01", "06/12/2026", ""])
def test_a_malformed_or_impossible_date_is_refused_naming_the_format(bundled_only, command, date):
    with pytest.raises(CommandError, match=r"not a date \(YYYY-MM-DD\)"):
        run(command, "--date", date)
    assert not Edition.objects.exists()


@pytest.mark.parametrize("args", [["run_daily"], ["send_digests", "--subscriber", "reader@example.org"]])
def test_a_day_before_arxiv_began_is_refused_before_any_edition_is_built(bundled_only, args):
    SubscriberFactory(email="reader@example.org")

    with pytest.raises(CommandError, match="0001-01-01 is before arXiv began"):
        run(*args, "--date", "0001-01-01")

    assert not Edition.objects.exists()
