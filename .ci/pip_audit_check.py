"""Dependency audit for CI: pip-audit over the installed environment.

Fails (exit 1) for a known vulnerability that is not listed, with a reason,
in .ci/pip-audit-ignore.txt. Never fails for a network reason: when no
vulnerability service can be reached (or it can look up none of the
packages), it prints "audit skipped: service unreachable" and exits 0.

    .venv/bin/python .ci/pip_audit_check.py            # run pip-audit (PyPI, then OSV)
    .venv/bin/python .ci/pip_audit_check.py --report saved.json   # judge a saved JSON report

Ignore file: one vulnerability per line, its id (PYSEC-…, GHSA-…, CVE-…; any
alias matches) followed by the reason it does not apply or cannot be fixed
yet. A line without a reason is an error. ``#`` starts a comment.
"""

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_IGNORE_FILE = HERE / "pip-audit-ignore.txt"
SERVICES = ("pypi", "osv")
NETWORK_ERRORS = re.compile(
    r"ConnectionError|NameResolutionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection (?:refused|reset|aborted)|"
    r"timed out|Timeout|SSLError|ProxyError|ServiceError|HTTP(?:Error)?:? 5\d\d|"
    r"50[234] Server Error",
    re.IGNORECASE,
)


class IgnoreFileError(Exception):
    pass


@dataclass
class Outcome:
    status: str  # "pass", "fail" or "skipped"
    lines: list = field(default_factory=list)


def load_ignores(path):
    """{vulnerability id: reason} from the ignore file; IgnoreFileError for a line without a reason."""
    ignores = {}
    if not Path(path).exists():
        return ignores
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise IgnoreFileError(f"{path}:{number}: {vuln_id} is listed without a reason")
        ignores[vuln_id.strip()] = reason.strip()
    return ignores


def evaluate(report, ignores):
    """Judge one pip-audit JSON report against the ignore list."""
    dependencies = report.get("dependencies", []) if isinstance(report, dict) else []
    audited = [d for d in dependencies if "skip_reason" not in d]
    skipped = [d for d in dependencies if "skip_reason" in d]
    if not audited:
        return Outcome("skipped", [
            f"audit skipped: service unreachable (0 of {len(dependencies)} packages could be "
            "looked up)"
        ])
    lines, findings, used = [], [], set()
    for dependency in audited:
        for vuln in dependency.get("vulns", []):
            ids = [vuln.get("id", "?"), *vuln.get("aliases", [])]
            listed = next((i for i in ids if i in ignores), None)
            name = f"{dependency['name']} {dependency['version']} {ids[0]}"
            if listed:
                used.add(listed)
                lines.append(f"ignored (explained): {name}: {ignores[listed]}")
            else:
                fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix released"
                summary = " ".join((vuln.get("description") or "").split())[:160]
                findings.append(f"VULNERABLE: {name} (fixed in: {fixes}) {summary}")
    for dependency in skipped:
        lines.append(f"not audited: {dependency['name']}: {dependency['skip_reason']}")
    for stale in sorted(set(ignores) - used):
        lines.append(f"note: {stale} is in the ignore file but no longer reported")
    if findings:
        return Outcome("fail", [*findings, *lines, f"audit failed: {len(findings)} unexplained "
                                "vulnerabilit(y/ies); upgrade, or list each with a reason in "
                                f"{DEFAULT_IGNORE_FILE.name}"])
    return Outcome("pass", [*lines, f"audit passed: {len(audited)} packages, "
                            f"{len(used)} known vulnerabilit(y/ies) explained in the ignore file"])


def run_pip_audit(service, timeout):
    command = [
        sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--format", "json",
        "--progress-spinner", "off", "--vulnerability-service", service, "--timeout", "20",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"pip-audit did not finish within {timeout} s (Timeout)"
    return result.stdout, result.stderr


def judge_run(stdout, stderr, ignores):
    """An Outcome for one pip-audit run, or None when its service could not be reached."""
    try:
        report = json.loads(stdout) if stdout else None
    except json.JSONDecodeError:
        report = None
    if report is not None:
        outcome = evaluate(report, ignores)
        return None if outcome.status == "skipped" else outcome
    if NETWORK_ERRORS.search(stderr or ""):
        return None
    last = (stderr or "no output").strip().splitlines()[-1:] or ["no output"]
    return Outcome("fail", [f"audit failed: pip-audit error: {last[0]}"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignore-file", default=str(DEFAULT_IGNORE_FILE))
    parser.add_argument("--report", help="judge a saved pip-audit JSON report instead of running it")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per pip-audit run")
    args = parser.parse_args(argv)
    try:
        ignores = load_ignores(args.ignore_file)
    except IgnoreFileError as error:
        print(f"audit failed: {error}")
        return 1
    if args.report:
        outcome = evaluate(json.loads(Path(args.report).read_text()), ignores)
        print("\n".join(outcome.lines))
        return 1 if outcome.status == "fail" else 0
    tried = []
    for service in SERVICES:
        stdout, stderr = run_pip_audit(service, args.timeout)
        outcome = judge_run(stdout, stderr, ignores)
        if outcome is not None:
            print(f"pip-audit ({service}):")
            print("\n".join(outcome.lines))
            return 1 if outcome.status == "fail" else 0
        tried.append(service)
    print(f"audit skipped: service unreachable ({', '.join(tried)}); not a failure of this build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
