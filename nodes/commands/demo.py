"""`vflchain demo`: the demonstration end to end (what `make demo` runs).

1. Writes the breast cancer split with 90% shared IDs (`--data`, default data/breast).
2. Runs `examples/breast_lr.toml` (intersection, WoE/IV binning, feature selection,
   vertical logistic regression) and `examples/breast_gmm.toml` (intersection,
   FL-EM-GMM), each exactly as `vflchain run` does: the embedded chain, the host
   node and the guest node as three processes over gRPC on loopback.
3. Audits both jobs' run directories against the chain's persisted state once the
   chain process has stopped (`vflchain audit`), writing each provenance report.
4. Prints a summary table: per job its session, rounds attested, headline metrics,
   the audit's verdict and where the report is.
5. Ends with the one command that opens `vflchain explorer` on the demo's chain and runs.

Layout of `--out DIR` (default runs/demo): `lr/` and `gmm/`, each with `guest/`,
`host/`, `logs/` and `audit/` (report.html, report.md, audit.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nodes.datafiles import write_party_csv
from nodes.errors import ConfigError, NodeError
from nodes.ui import console
from vfl.datasets import breast_split

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOBS = (("lr", "breast_lr.toml"), ("gmm", "breast_gmm.toml"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demonstration (what `make demo` runs): LR and GMM jobs, then their audit",
                       description="Prepare the breast cancer data, run the LR job (binning, selection, logistic "
                       "regression) and the GMM job as separate processes on the embedded chain, audit both "
                       "and print where the provenance reports are.")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo; replaced)")
    p.add_argument("--data", default="data/breast", help="data directory (default data/breast)")
    p.add_argument("--jobs", default="lr,gmm", help="which jobs to run, comma-separated (default lr,gmm)")
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every job (repeatable)")
    p.set_defaults(func=handle)


def _metrics(run: Path) -> str:
    try:
        m = json.loads((run / "guest" / "metrics.json").read_text())
    except (OSError, ValueError):
        return "-"
    v = m.get("validate") if isinstance(m.get("validate"), dict) else None
    if v:
        return "validation " + ", ".join(f"{k.upper()} {v[k]:.3f}" for k in ("auc", "ks") if k in v)
    labels = {"log_likelihood": "log-lik", "adjusted_rand_index": "ARI"}
    picks = [f"{label} {m[k]:.4f}" for k, label in labels.items()
             if isinstance(m.get(k), int | float) and not isinstance(m.get(k), bool)]
    return ", ".join(picks) or "-"


def audit_run(run: Path) -> dict[str, Any]:
    """Audit one job's run directories against the chain state recorded in them; the report's paths."""
    from chain.audit import failures
    from nodes.commands.audit import audit_dirs, build_result
    from nodes.report import write_report

    history, checks, files, source = audit_dirs([str(run)], None, None, None)
    result = build_result(history, checks, source, "Run directories audited against the chain: " + ", ".join(
        f"{f.role} {f.path.resolve()}" for f in files) + ".", files)
    paths = write_report(result, run / "audit")
    return {"summary": result["summary"], "checks": len(checks), "failed": failures(checks), "paths": paths}


def explorer_command(run: Path, out: Path) -> str:
    """The one command that opens `vflchain explorer` on the chain `run` used, with the demo's run directories."""
    import shlex

    job = json.loads((run / "guest" / "job.json").read_text(encoding="utf-8"))
    state = ((job.get("config") or {}).get("chain") or {}).get("state") or ".vflchain/chain"
    return f"vflchain explorer --state {shlex.quote(str(state))} --runs {shlex.quote(str(out.resolve()))}"


def handle(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nodes.launch import Launcher

    con = console()
    wanted = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = set(wanted) - {name for name, _ in JOBS}
    if unknown or not wanted:
        raise ConfigError(f"--jobs: unknown job {sorted(unknown)[0] if unknown else '(none)'}; choose from lr, gmm")
    data_dir = Path(args.data).resolve()
    guest, host = breast_split(overlap=0.9)
    write_party_csv(guest, data_dir / "guest.csv")
    write_party_csv(host, data_dir / "host.csv")
    shared = len(set(guest.ids.tolist()) & set(host.ids.tolist()))
    con.print(f"[bold]data[/] {data_dir}: guest {guest.n_rows} rows (y + {len(guest.features)} features), "
              f"host {host.n_rows} rows ({len(host.features)} features), {shared} IDs in both")
    sets = [f"guest.data={data_dir / 'guest.csv'}", f"host.data={data_dir / 'host.csv'}",
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0",  # free loopback ports: all on this machine
            f"paillier.key_bits={args.key_bits}", *args.set]
    out = Path(args.out)
    runs = []
    for name, config in JOBS:
        if name in wanted:
            con.rule(f"[bold]{name} job[/] ({config})")
            Launcher(str(EXAMPLES / config), str(out / name), sets, force=True).run()
            runs.append((name, out / name))
    con.rule("[bold]audit[/] (the chain process has stopped: its persisted state is read)")
    table = Table(title="vflchain demo", title_justify="left", header_style="bold")
    for col in ("job", "session", "metrics (guest)", "rounds attested", "audit"):
        table.add_column(col)
    reports = []
    bad = 0
    for name, run in runs:
        a = audit_run(run)
        s = a["summary"]
        verdict = f"[green]passed[/] ({a['checks']} checks)" if not a["failed"] else \
            f"[red]FAILED[/] ({len(a['failed'])} of {a['checks']})"
        bad += len(a["failed"])
        for f in a["failed"]:
            con.print(f"[red]{name}: {f.line()}[/]")
        table.add_row(name, f"{s['session_id'][:10]}… {s['status']}", _metrics(run),
                      f"{s['rounds_by_state']['attested']} of {s['rounds']}", verdict)
        reports.append(f"{name} provenance report: {a['paths']['html']}")
    con.print(table)
    for line in reports:
        con.print(line)
    con.print(f"Open a report in a browser, or audit again: [bold]vflchain audit {runs[0][1]}[/]")
    con.print("Explore every session on the demo's chain (then open the URL it prints):")
    con.print(explorer_command(runs[0][1], out), soft_wrap=True, highlight=False, markup=False)
    if bad:
        raise NodeError(f"the audit found {bad} mismatch(es); see the reports above")
    return 0
