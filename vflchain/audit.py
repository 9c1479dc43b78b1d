"""Auditing an in-process job's run directories against its chain (chain/audit.py, as `vflchain audit`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.audit import (
    AuditUnavailable,
    Check,
    audit_group,
    audit_party,
    failures,
    load_history,
    load_party_files,
)
from vflchain.chains import JobChain


@dataclass
class AuditResult:
    """Every check of the audit; `ok` when all hold."""

    checks: list[Check]
    session_id: str
    report: dict[str, Path] | None  # {"html", "md", "json"} when a report was written

    @property
    def failures(self) -> list[Check]:
        return failures(self.checks)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary_line(self) -> str:
        """"audit passed: all N checks hold" or "audit FAILED: k of N checks do not hold" (as `vflchain audit`)."""
        if self.ok:
            return f"audit passed: all {len(self.checks)} checks hold"
        return f"audit FAILED: {len(self.failures)} of {len(self.checks)} checks do not hold"


def audit(run: str | Path, chain: str | Path | None = None, report: str | Path | None = None) -> AuditResult:
    """Audit a job's run directories (`out` of `run_job` or `vflchain run`, or one party's directory).

    Args:
        run: the directory.
        chain: an embedded chain state directory or a JSON-RPC URL; None: the state recorded in job.json.
        report: where to write report.html, report.md and audit.json; None: no report.
    Returns:
        an `AuditResult`.
    Raises:
        AuditUnavailable: no chain, contract or session to audit against (one line).
    """
    from nodes.commands.audit import audit_run

    url = str(chain) if chain is not None and str(chain).startswith(("http://", "https://")) else None
    state = None if chain is None or url else str(chain)
    history, checks, files, source, links = audit_run([str(run)], url, state, None)
    return AuditResult(checks, history.session_id, _report(history, checks, source, files, links, report))


def audit_run_dirs(out: Path, job_chain: JobChain | None, report: str | Path | None) -> AuditResult:
    """The audit of `run_job`'s `out` against the chain the job used, while it is open (an ephemeral
    embedded chain) or from its state directory."""
    if job_chain is None or job_chain.kind == "none":
        raise AuditUnavailable("this job ran without a chain (chain=None): nothing was anchored to audit against")
    if job_chain.kind == "state":
        return audit(out, job_chain.state, report)
    from nodes.commands.audit import config_commitment_of, party_dirs

    files = [load_party_files(p) for p in party_dirs([str(out)])]
    opener = next((f for f in files if f.is_opener), files[0])
    history = load_history(job_chain.client(), str(opener.job.get("session_id")))
    checks: list[Check] = []
    for f in files:
        checks += audit_party(f, history, config_commitment_of)
    checks += audit_group(files)
    return AuditResult(checks, history.session_id,
                       _report(history, checks, "embedded chain in this process", files, [], report))


def _report(history: Any, checks: list[Check], source: str, files: list[Any], links: list[dict[str, Any]],
            report: str | Path | None) -> dict[str, Path] | None:
    if report is None:
        return None
    from nodes.commands.audit import build_result
    from nodes.report import write_report

    scope = "Run directories audited against the chain: " + ", ".join(
        f"{f.role} {f.path.resolve()}" for f in files) + "."
    return write_report(build_result(history, checks, source, scope, files, links), Path(report))
