import pytest
from django.core.management import CommandError, call_command

from papers.models import FetchRun, Paper

pytestmark = pytest.mark.django_db


def run(*args):
    from io import StringIO

    out = StringIO()
    call_command("fetch_papers", *args, stdout=out)
    return out.getvalue()


def test_bundled_command_prints_counts_and_is_idempotent():
    assert run("--source", "bundled").startswith("bundled: 415 new, 0 updated, 0 unchanged")
    assert run("--source", "bundled").startswith("bundled: 0 new, 0 updated, 415 unchanged")
    assert Paper.objects.count() == 415


def test_command_lists_skipped_items_with_reasons(fixture_path):
    out = run("--source", "bundled", "--from-file", str(fixture_path("bundled", "corpus_sample.jsonl")))
    assert "3 new" in out and "2 skipped" in out
    assert "  skipped item 3: no title" in out


def test_command_failure_is_one_line_naming_the_source(fixture_path):
    with pytest.raises(CommandError) as caught:
        run("--source", "bundled", "--from-file", str(fixture_path("bundled", "corpus_truncated.jsonl")))
    message = str(caught.value)
    assert message.startswith("bundled: ") and "\n" not in message
    assert FetchRun.objects.get().status == "failed"


def test_command_rejects_a_bad_date():
    with pytest.raises(CommandError, match="not a date"):
        run("--source", "bundled", "--date", "2025-13-40")
