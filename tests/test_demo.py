"""The embedded default (SQLite, in-process tasks, .eml outbox) as `make demo` runs it."""

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_manage(*args, env):
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def embedded_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "ESP", "EMAIL_URL"}}
    env.update(VAR_DIR=str(tmp_path), OUTBOX_DIR=str(tmp_path / "outbox"))
    return env


def test_demo_sends_one_digest_per_demo_subscriber_and_none_on_a_rerun(embedded_env, tmp_path):
    run_manage("migrate", "--noinput", env=embedded_env)
    first = run_manage("demo", env=embedded_env)
    outbox = tmp_path / "outbox"
    after_first = sorted(outbox.glob("*.eml"))

    second = run_manage("demo", env=embedded_env)
    after_second = sorted(outbox.glob("*.eml"))

    assert (tmp_path / "paperboy.sqlite3").exists()
    assert len(after_first) == 3, first
    assert after_second == after_first, second
    assert "digests sent in this run: 0" in second
    messages = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in after_first]
    assert len({m["To"] for m in messages}) == 3
    for message in messages:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"]
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert len(html.encode()) < 100 * 1024
        assert "Why:" in text and "Why:" in html
