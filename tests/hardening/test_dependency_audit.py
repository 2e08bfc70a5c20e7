"""The CI dependency audit (.ci/pip_audit_check.py): fails for an unexplained finding,
passes for an explained one, and never fails for a network reason."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "pip_audit_check.py"
spec = importlib.util.spec_from_file_location("pip_audit_check", SCRIPT)
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

DJANGO_VULN = {
    "id": "PYSEC-2099-1",
    "aliases": ["CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"],
    "fix_versions": ["5.2.99"],
    "description": "A made-up vulnerability in a made-up release.",
}


def report(*dependencies):
    return {"dependencies": list(dependencies), "fixes": []}


def clean(name="requests", version="2.32.5"):
    return {"name": name, "version": version, "vulns": []}


def vulnerable(vuln=DJANGO_VULN):
    return {"name": "django", "version": "5.2.19", "vulns": [vuln]}


def not_found(name):
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name}"}


def test_a_clean_report_passes():
    outcome = audit.evaluate(report(clean(), clean("lxml", "6.1.3")), {})
    assert outcome.status == "pass" and "audit passed: 2 packages" in outcome.lines[-1]


def test_an_unexplained_vulnerability_fails_the_build():
    outcome = audit.evaluate(report(clean(), vulnerable()), {})
    assert outcome.status == "fail"
    assert any("VULNERABLE: django 5.2.19 PYSEC-2099-1 (fixed in: 5.2.99)" in l for l in outcome.lines)


@pytest.mark.parametrize("listed", ["PYSEC-2099-1", "CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"])
def test_a_vulnerability_explained_in_the_ignore_file_passes_under_any_alias(listed):
    outcome = audit.evaluate(report(vulnerable()), {listed: "admin-only code path we never use"})
    assert outcome.status == "pass"
    assert any("admin-only code path" in line for line in outcome.lines)


def test_an_ignore_line_without_a_reason_is_an_error(tmp_path):
    ignore = tmp_path / "ignore.txt"
    ignore.write_text("# comment\nPYSEC-2099-1 a reason\nGHSA-aaaa-bbbb-cccc\n")
    with pytest.raises(audit.IgnoreFileError, match=":3: GHSA-aaaa-bbbb-cccc is listed without a reason"):
        audit.load_ignores(ignore)


def test_the_repository_ignore_file_is_valid():
    audit.load_ignores(audit.DEFAULT_IGNORE_FILE)


def test_a_service_that_can_look_up_no_package_counts_as_unreachable():
    """What a mirror without PyPI's JSON API gives: every package "not found", no finding."""
    skipped = report(not_found("django"), not_found("requests"))
    assert audit.evaluate(skipped, {}).status == "skipped"
    assert audit.judge_run(json.dumps(skipped), "", {}) is None


@pytest.mark.parametrize(
    "stderr",
    [
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev', port=443): "
        "Max retries exceeded (Caused by NameResolutionError(...))",
        "pip_audit._service.interface.ServiceError: HTTP 503 from the service",
        "urllib3.exceptions.ReadTimeoutError: Read timed out. (read timeout=20)",
        "pip-audit did not finish within 600 s (Timeout)",
    ],
)
def test_network_failures_skip_the_audit_instead_of_failing(stderr):
    assert audit.judge_run("", stderr, {}) is None


def test_a_pip_audit_crash_for_another_reason_fails():
    outcome = audit.judge_run("", "Traceback...\nValueError: invalid requirement 'x=='", {})
    assert outcome.status == "fail" and "invalid requirement" in outcome.lines[-1]


def test_the_script_prints_the_skip_line_and_exits_0_when_no_service_answers(monkeypatch, capsys):
    monkeypatch.setattr(audit, "run_pip_audit", lambda service, timeout: ("", "ConnectionError"))
    assert audit.main([]) == 0
    assert "audit skipped: service unreachable (pypi, osv)" in capsys.readouterr().out


def test_the_script_judges_a_saved_report(tmp_path, capsys):
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report(vulnerable())))
    assert audit.main(["--report", str(saved)]) == 1
    ignore = tmp_path / "ignore.txt"
    ignore.write_text("CVE-2099-0001 fixed upstream; we upgrade on the next release\n")
    assert audit.main(["--report", str(saved), "--ignore-file", str(ignore)]) == 0
