"""`vflchain demo` (what `make demo` runs): jobs as real processes on the embedded chain, then their audit."""

from __future__ import annotations

import json

import pytest

from nodes.cli import main as cli

pytestmark = pytest.mark.slow


def test_demo_runs_the_gmm_job_and_audits_it(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = cli(["demo", "--out", str(out), "--data", str(tmp_path / "data"), "--jobs", "gmm", "--key-bits", "1024",
                "--set", "paillier.insecure_test_keys=true", "--set", "gmm.max_iter=2", "--set", f"chain.state={tmp_path / 'chain'}"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "passed" in text and f"gmm provenance report: {out / 'gmm' / 'audit' / 'report.html'}" in text
    result = json.loads((out / "gmm" / "audit" / "audit.json").read_text())
    assert result["ok"] and result["summary"]["algorithm"] == "gmm" and result["summary"]["status"] == "closed"
    assert result["metrics"]["algorithm"] == "gmm" and (out / "gmm" / "audit" / "report.md").exists()
    assert not (out / "lr").exists()
    assert text.rstrip().splitlines()[-1] == f"vflchain explorer --state {tmp_path / 'chain'} --runs {out.resolve()}"
