import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from papers.models import FetchRun, Paper

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command("fetch_papers", *args, stdout=out)
    return out.getvalue()


def test_bundled_command_prints_counts_and_is_idempotent():
    assert run("--source", "bundled").startswith("bundled: 415 new, 0 updated, 0 unchanged")
    assert run("--source", "bundled").startswith("bundled: 0 new, 0 updated, 415 unchanged")
    assert Paper.objects.count() == 415


def test_command_lists_skipped_items_with_reasons(fixture_path):
    out = run(
        "--source", "bundled", "--from-file", str(fixture_path("bundled", "corpus_sample.jsonl"))
    )
    assert "4 new" in out and "1 skipped, 1 field dropped" in out
    assert "  skipped item 3: no title" in out
    assert "  dropped corpus:bad-counts-884529392a upvotes: upvotes is not a non-negative integer: -3" in out


def test_command_failure_is_one_line_naming_the_source(fixture_path):
    with pytest.raises(CommandError) as caught:
        run(
            "--source",
            "bundled",
            "--from-file",
            str(fixture_path("bundled", "corpus_truncated.jsonl")),
        )
    message = str(caught.value)
    assert message.startswith("bundled: ") and "\n" not in message
    assert FetchRun.objects.get().status == "failed"


def test_command_rejects_a_bad_date():
    with pytest.raises(CommandError, match="not a date"):
        run("--source", "bundled", "--date", "2025-13-40")


def test_command_rejects_a_day_before_arxiv_began():
    with pytest.raises(CommandError, match="before arXiv began"):
        run("--source", "bundled", "--date", "0026-12-04")
    assert not FetchRun.objects.exists()


class Terminal(StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(capsys):
    call_command("fetch_papers", "--source", "bundled", stdout=StringIO())
    assert "store" not in capsys.readouterr().err
    call_command("fetch_papers", "--source", "bundled", stdout=Terminal())
    assert "/415" in capsys.readouterr().err


def test_hf_replay_from_file(fixture_path):
    out = run("--source", "hf", "--from-file", str(fixture_path("hf", "daily_papers.json")))
    assert out.startswith("hf: 5 new, 0 updated, 0 unchanged, 2 skipped, 1 field dropped (7 read)")
    assert "  skipped 2501.08001: duplicate in this response" in out
    assert "  dropped 2501.09103 upvotes: upvotes is not a non-negative integer: 'lots'" in out


def test_a_run_without_dropped_fields_keeps_the_usual_summary(fixture_path):
    out = run("--source", "arxiv-rss", "--from-file", str(fixture_path("arxiv", "rss_weekend.xml")))
    assert out == "arxiv-rss: 0 new, 0 updated, 0 unchanged, 0 skipped (0 read)\n"


def test_a_dropped_field_is_echoed_on_one_printable_line(tmp_path):
    path = tmp_path / "daily_papers.json"
    path.write_text(json.dumps([{"paper": {"id": "2501.00002", "title": "T", "upvotes": "\x1b[2J\n\u202e3"}}]))
    out = run("--source", "hf", "--from-file", str(path))
    [dropped] = [line for line in out.splitlines() if line.startswith("  dropped")]
    assert dropped.startswith("  dropped 2501.00002 upvotes: upvotes is not a non-negative integer: ")
    assert dropped.isprintable()
    assert Paper.objects.get().title == "T"


def test_categories_reach_the_arxiv_query(monkeypatch):
    seen = {}

    def fake_fetch(name, **kwargs):
        seen.update(kwargs, name=name)
        from papers.services import FetchReport

        return FetchReport(source=name)

    monkeypatch.setattr("papers.management.commands.fetch_papers.fetch_from_source", fake_fetch)
    run("--source", "arxiv", "--category", "cs.LG", "cs.CL", "--date", "2025-01-15")
    assert seen["name"] == "arxiv" and seen["categories"] == ["cs.LG", "cs.CL"]
    assert seen["date"].isoformat() == "2025-01-15"


def test_a_hostile_item_id_is_echoed_escaped_on_one_line_in_the_output_and_the_log(tmp_path, caplog):
    hostile = "\x1b[31m2501.00001\n\u202eevil\udfff"
    path = tmp_path / "daily_papers.json"
    path.write_text(json.dumps([
        {"paper": {"id": "2501.00002", "title": "A readable paper", "upvotes": 1}},
        {"paper": {"id": hostile, "title": "T", "upvotes": 1}},
    ]))

    out = run("--source", "hf", "--from-file", str(path))

    skipped = [line for line in out.splitlines() if line.startswith("  skipped")]
    assert skipped == ["  skipped \\x1b[31m2501.00001\\n\\u202eevil\\udfff: paper.id is not an arXiv id: "
                       "'\\x1b[31m2501.00001\\n\\u202eevil\\udfff'"]
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped item")]
    assert logged.startswith("skipped item source=hf key=\\x1b[31m2501.00001\\n\\u202eevil\\udfff reason=")
    assert logged.isprintable()


def test_a_file_with_no_readable_item_fails_with_one_printable_line(tmp_path):
    path = tmp_path / "daily_papers.json"
    path.write_text(json.dumps([{"paper": {"id": "\x1b[31m\u202eevil", "title": "T"}}]))
    with pytest.raises(CommandError) as caught:
        run("--source", "hf", "--from-file", str(path))
    message = str(caught.value)
    assert message.startswith("hf: could not read its one item (the first: paper.id is not an arXiv id")
    assert message.isprintable()
    assert FetchRun.objects.get().status == "failed" and not Paper.objects.exists()
