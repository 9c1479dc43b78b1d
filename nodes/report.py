"""The provenance report an audit writes: one self-contained HTML page and the same in Markdown.

Input is the audit's JSON-ready result (`nodes.commands.audit.build_result`): the session,
its participants, the timeline of events with their transactions, the rounds and
their attestation, the metrics, and every check with its outcome. The page has no
scripts, no external files: a consortium member opens it in any browser.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from nodes.communication import PHASE_HEAD, ROUND_HEAD, phase_rows
from nodes.communication import round_rows as comm_round_rows
from nodes.rundir import atomic_write

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:70em;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f4f4f4}code{font-size:.92em;word-break:break-all}
.verdict{padding:.8em 1em;border-radius:6px;font-weight:600;font-size:1.1em}
.pass{background:#e6f4ea;color:#1e6b34}.fail{background:#fce8e6;color:#a50e0e}
.ok{color:#1e6b34;font-weight:600}.bad{color:#a50e0e;font-weight:600}.muted{color:#666}
"""

EXPLAIN = {
    "session id": "The run directory belongs to the session audited.",
    "config commitment": "The job configuration the parties agreed on is the one committed when the session opened.",
    "config recomputed": "Recomputing the salted commitment from job.json's configuration and config_salt, "
                         "bound to this session, gives the on-chain value.",
    "participants": "The session's participants on chain are the ones the run directory names "
                    "(guest and host, or the coordinator and its clients).",
    "session role": "The account took part in the session in the role its run directory claims.",
    "registered role": "The account is registered on the contract with the role it played.",
    "round transaction": "The round's transaction in rounds.jsonl is the one that posted it on chain.",
    "round commitment": "The commitment in rounds.jsonl is the one on chain.",
    "checkpoint commitment": "keccak256(binding || salt || parameters) of the checkpoint file, bound to this "
                             "session, round and party, equals the on-chain commitment: the file holds exactly "
                             "the parameters committed in that round.",
    "transcript digest": "The digest recomputed from transcript.jsonl equals the one posted on chain.",
    "manifest digest": "Horizontal jobs: SHA-256 of the round's manifest (manifests.jsonl) equals the digest "
                       "posted on chain.",
    "transcript in manifest": "Horizontal jobs: every message in the client's own transcript of the round is "
                              "listed in the manifest the coordinator showed.",
    "round attested": "Every participant posted the same transcript digest for the round.",
    "model commitment": "The model file, with its salt (job.json openings) and this session's binding, "
                        "reopens the model commitment posted at close.",
    "metrics hash": "metrics.json, with its salt and this session's binding, reopens the metrics commitment "
                    "the guest posted at close.",
    "session closed": "Every participant finalized and the session closed.",
    "model used": "Prediction jobs: model.json reopens the training model commitment named in the "
                  "\"models\" round.",
    "predictions hash": "Prediction jobs: SHA-256 of predictions.csv equals the hash committed in the "
                        "\"predict\" round.",
    "training model": "Prediction jobs: the model each party used is the one its training session closed with.",
    "resume point": "A resume in job.json continued from a round this party submitted and both attested.",
    "resume handshake": "The resumed run's new handshake round committed resumed_from = that round.",
    "round cut off": "A round a kill interrupted before it was committed, followed by a resume: not compared.",
    "session interrupted": "The session is still active on chain and the run stopped resumable: only the "
                           "committed rounds are checked.",
}


def _interruptions(result: dict[str, Any]) -> list[list[str]]:
    """One row per resume: party, when, from which attested round, the new handshake round and its block."""
    return [[x["party"], str(x["time"] or "?"), "" if x["from_round"] is None else str(x["from_round"]),
             "" if x["handshake_round"] is None else str(x["handshake_round"]),
             "" if x["block"] is None else str(x["block"])] for x in result.get("resumes", [])]


INTERRUPTION_HEAD = ["party", "resumed at", "from attested round", "new handshake round", "handshake block"]


def _link_rows(result: dict[str, Any]) -> list[list[str]]:
    """Linked sessions (a prediction job's training session): relation, session, algorithm, status, models."""
    return [[x["relation"], x["session_id"], x["algorithm"], x["status"],
             ", ".join(f"{r} {_short(m)}" for r, m in x["model_commitments"].items())]
            for x in result.get("links", [])]


def _time(ts: int | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(h: str | None, n: int = 10) -> str:
    h = str(h or "")
    return h if len(h) <= 2 * n + 1 else f"{h[:n + 2]}…{h[-n + 2:]}"


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in metrics.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, int | float) and not isinstance(v2, bool):
                    rows.append((f"{k} {k2}", f"{v2:.6g}"))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            rows.append((k, f"{v:.6g}"))
    return rows


EVALUATION_NOTE = ("Confusion matrix at the threshold the predictions use (class 1 when the score is at least "
                   "0.5; rows actual, columns predicted). Lift and gain: rows ranked by descending score, cut "
                   "into ten deciles; gain is the share of all positives found up to the decile, lift the "
                   "decile's response rate over the overall rate.")
LIFT_HEAD = ["decile", "rows", "positives", "scores", "gain", "lift", "cumulative lift"]
COMMUNICATION_NOTE = ("Recomputed from each party's transcript.jsonl (the messages whose digests are on chain): "
                      "bytes of the encoded messages, without TLS and gRPC framing. A phase's seconds run from "
                      "the previous phase's last message to its own last message.")


def _num(v: Any, fmt: str = ".4f") -> str:
    return "" if v is None else format(v, fmt) if isinstance(v, float) else str(v)


def evaluation_splits(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The metrics.json splits (train, validate, predict) that carry a confusion matrix."""
    return [(k, v) for k, v in metrics.items() if isinstance(v, dict) and isinstance(v.get("confusion_matrix"), dict)]


def confusion_rows(split: dict[str, Any]) -> list[list[str]]:
    c = split["confusion_matrix"]
    return [["actual 0", str(c.get("tn")), str(c.get("fp"))], ["actual 1", str(c.get("fn")), str(c.get("tp"))]]


def lift_rows(split: dict[str, Any]) -> list[list[str]]:
    return [[str(r.get("decile")), str(r.get("rows")), str(r.get("positives")),
             f"{_num(r.get('score_min'))}–{_num(r.get('score_max'))}", _num(r.get("gain")), _num(r.get("lift"), ".3f"),
             _num(r.get("cumulative_lift"), ".3f")] for r in split.get("lift_gain") or [] if isinstance(r, dict)]


def pr_svg(split: dict[str, Any], size: int = 220) -> str:
    """The split's precision-recall curve (metrics.json `pr_curve`) as an inline SVG step line, axes 0..1."""
    curve = split.get("pr_curve") or {}
    rs, ps = curve.get("recall") or [], curve.get("precision") or []
    pts: list[str] = []
    for i, (r, q) in enumerate(zip(rs, ps, strict=False)):
        if not isinstance(r, int | float) or not isinstance(q, int | float):
            return ""
        if i:  # a step: on (recall[i-1], recall[i]] the precision is precision[i] (as average precision counts it)
            pts.append(f"{30 + rs[i - 1] * size:.1f},{10 + (1 - q) * size:.1f}")
        pts.append(f"{30 + r * size:.1f},{10 + (1 - q) * size:.1f}")
    if len(pts) < 2:
        return ""
    w, h = size + 40, size + 40
    return (f"<svg width='{w}' height='{h}' role='img' "
            f"aria-label='precision-recall curve'><rect x='30' y='10' width='{size}' height='{size}' fill='none' "
            f"stroke='#999'/><polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='{' '.join(pts)}'/>"
            f"<text x='{30 + size / 2}' y='{h - 8}' font-size='11' text-anchor='middle'>recall</text>"
            f"<text x='12' y='{10 + size / 2}' font-size='11' text-anchor='middle' "
            f"transform='rotate(-90 12 {10 + size / 2})'>precision</text>"
            f"<text x='26' y='16' font-size='9' text-anchor='end'>1</text>"
            f"<text x='26' y='{10 + size}' font-size='9' text-anchor='end'>0</text></svg>")


def round_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per round: phase, loss, each party's transaction, state."""
    by_round: dict[int, dict[str, Any]] = {}
    for ev in result["timeline"]:
        if ev["round"] is None:
            continue
        row = by_round.setdefault(ev["round"], {"round": ev["round"], "phase": "", "loss": None,
                                                "tx": {}, "state": "pending"})
        if ev["event"] == "RoundSubmitted":
            row["tx"][ev["role"] or ev["party"]] = ev["tx_hash"]
        elif ev["event"] == "RoundAttested":
            row["state"] = "attested"
        elif ev["event"] == "RoundDisputed":
            row["state"] = "disputed"
    for party in result.get("parties", {}).values():
        for line in party.get("rounds", []):
            row = by_round.get(int(line.get("round", -1)))
            if row is not None:
                row["phase"] = row["phase"] or line.get("phase", "")
                if line.get("loss") is not None:
                    row["loss"] = line["loss"]
    return [by_round[r] for r in sorted(by_round)]


# -- HTML ---------------------------------------------------------------------------------

def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    esc = (lambda x: x) if raw else html.escape
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>")
    return "".join(out) + "</table>"


def _code(x: Any) -> str:
    return f"<code>{html.escape(str(x))}</code>"


def _verdict(result: dict[str, Any], fails: list[dict[str, Any]]) -> str:
    """The one-line verdict; an aborted session says so, and who aborted it."""
    ab = result["summary"].get("aborted")
    aborted = (f" — the session was ABORTED by the {ab['role']} in block {ab['block']}: only what was "
               "committed before the abort is checked") if ab else ""
    if result.get("interrupted"):
        aborted += " — the session is INTERRUPTED (still active on chain, resumable): only what was committed is checked"
    if fails:
        return f"FAIL: {len(fails)} check(s) do not hold{aborted}"
    return "PASS: every check holds — the files shown are the ones committed on chain" + aborted


def render_html(result: dict[str, Any]) -> str:
    s = result["summary"]
    ok = result["ok"]
    fails = [c for c in result["checks"] if not c["ok"]]
    verdict = _verdict(result, fails)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>vflchain provenance report "
             f"{html.escape(s['session_id'][:12])}</title><style>{CSS}</style></head><body>",
             "<h1>Provenance report</h1>",
             f"<p class='muted'>vflchain {html.escape(result['version'])} audit, generated "
             f"{html.escape(result['generated'])}. {html.escape(result['scope'])}</p>",
             f"<div class='verdict {'pass' if ok else 'fail'}'>{html.escape(verdict)}</div>"]
    if fails:
        parts.append("<h2>Findings</h2>")
        parts.append(_table(["check", "party", "file", "round", "field", "expected", "found", "note"],
                            [[c["check"], c["party"], c["file"], "" if c["round"] is None else c["round"],
                              c["field"], c["expected"], c["found"], c["detail"]] for c in fails]))
    parts.append("<h2>Session</h2>")
    parts.append(_table(["", ""], [
        ["session id", _code(s["session_id"])], ["algorithm", html.escape(s["algorithm"])],
        ["status", html.escape(s["status"])],
        ["configuration commitment", _code(s["config_commitment"])],
        ["chain", html.escape(f"chain id {s['chain_id']} — {result['chain']['source']}")],
        ["audit contract", _code(s["contract"])],
        ["opened", html.escape(f"block {s['opened_block']} {_time(result['opened_time'])}")],
        ["closed" if s["status"] == "closed" else "ended",
         html.escape(f"block {s['closed_block']} {_time(result['closed_time'])}") if s["closed_block"] else "—"],
        ["rounds", html.escape(", ".join(f"{v} {k}" for k, v in s["rounds_by_state"].items()))],
        ["metrics hash", _code(s["metrics_hash"])],
    ], raw=True))
    if result.get("resumes"):
        parts.append("<h2>Interruptions</h2><p class='muted'>Each resume of the killed run (job.json "
                     "<code>resumed</code>), checked against the chain.</p>")
        parts.append(_table(INTERRUPTION_HEAD, _interruptions(result)))
    parts.append("<h2>Participants</h2>")
    parts.append(_table(["role", "organisation", "account", "joined", "finalized", "last round",
                         "model commitment"],
                        [[p["role"], p["organisation"], _code(p["address"]), "yes" if p["joined"] else "no",
                          "yes" if p["finalized"] else "no", p["last_round"], _code(_short(p["model_commitment"]))]
                         for p in s["participants"]], raw=True))
    if result.get("links"):
        parts.append("<h2>Linked sessions</h2>")
        parts.append(_table(["relation", "session", "algorithm", "status", "model commitments"],
                            _link_rows(result)))
    metrics = result.get("metrics") or {}
    if metrics:
        parts.append("<h2>Metrics (guest, metrics.json)</h2>")
        parts.append(_table(["metric", "value"], [list(r) for r in _metric_rows(metrics)]))
    splits = evaluation_splits(metrics)
    if splits:
        parts.append(f"<h2>Evaluation (guest, metrics.json)</h2><p class='muted'>{html.escape(EVALUATION_NOTE)}</p>")
        for name, split in splits:
            th = split["confusion_matrix"].get("threshold")
            parts.append(f"<h3>{html.escape(name)}: average precision {html.escape(_num(split.get('average_precision')))}"
                         f", confusion matrix at score &ge; {html.escape(str(th))}</h3>")
            parts.append(_table(["", "predicted 0", "predicted 1"], confusion_rows(split)))
            parts.append(_table(LIFT_HEAD, lift_rows(split)))
            parts.append(pr_svg(split))
    if result.get("communication"):
        parts.append(f"<h2>Communication</h2><p class='muted'>{html.escape(COMMUNICATION_NOTE)}</p>")
        for role, comm in result["communication"].items():
            parts.append(f"<h3>{html.escape(role)}</h3>")
            parts.append(_table(PHASE_HEAD, phase_rows(comm)))
            parts.append("<details><summary>per round</summary>" + _table(ROUND_HEAD, comm_round_rows(comm))
                         + "</details>")
    parts.append("<h2>Rounds</h2><p class='muted'>Every round each party commits to its own parameters "
                 "and to the digest of the round's messages; a round is attested when both digests agree.</p>")
    roles = sorted({k for r in round_rows(result) for k in r["tx"]})
    parts.append(_table(["round", "phase", "loss", *[f"{r} transaction" for r in roles], "state"],
                        [[str(r["round"]), html.escape(r["phase"]),
                          "" if r["loss"] is None else f"{r['loss']:.6f}",
                          *[_code(_short(r["tx"].get(x))) for x in roles],
                          f"<span class='{'ok' if r['state'] == 'attested' else 'bad'}'>{r['state']}</span>"]
                         for r in round_rows(result)], raw=True))
    parts.append("<h2>Timeline (contract events)</h2>")
    parts.append(_table(["block", "time", "event", "party", "round", "what", "transaction"],
                        [[str(e["block"]), html.escape(_time(e["time"])), html.escape(e["event"]),
                          html.escape(f"{e['role']} {_short(e['party'], 6)}".strip()),
                          "" if e["round"] is None else str(e["round"]), html.escape(e["what"]),
                          _code(_short(e["tx_hash"]))] for e in result["timeline"]], raw=True))
    parts.append("<h2>Checks</h2><p class='muted'>What each check proves:</p><ul>")
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in EXPLAIN.items()]
    parts.append("</ul>")
    parts.append(_table(["result", "check", "party", "file", "round", "field", "detail"],
                        [[f"<span class='{'ok' if c['ok'] else 'bad'}'>{'pass' if c['ok'] else 'FAIL'}</span>",
                          html.escape(c["check"]), html.escape(c["party"]), html.escape(c["file"]),
                          "" if c["round"] is None else str(c["round"]), html.escape(c["field"]),
                          html.escape(c["detail"] if c["ok"] else
                                      f"expected {c['expected']}, found {c['found']} {c['detail']}".strip())]
                         for c in result["checks"]], raw=True))
    parts.append("</body></html>\n")
    return "".join(parts)


# -- Markdown -------------------------------------------------------------------------------

def _md_table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def render_markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    fails = [c for c in result["checks"] if not c["ok"]]
    out = ["# Provenance report\n",
           f"vflchain {result['version']} audit, generated {result['generated']}. {result['scope']}\n",
           f"**{_verdict(result, fails).replace(': ', '**: ', 1)}.\n"]
    if fails:
        out += ["## Findings\n", _md_table(
            ["check", "party", "file", "round", "field", "expected", "found", "note"],
            [[c["check"], c["party"], c["file"], "" if c["round"] is None else c["round"], c["field"],
              c["expected"], c["found"], c["detail"]] for c in fails])]
    out += ["## Session\n", _md_table(["", ""], [
        ["session id", f"`{s['session_id']}`"], ["algorithm", s["algorithm"]], ["status", s["status"]],
        ["configuration commitment", f"`{s['config_commitment']}`"],
        ["chain", f"chain id {s['chain_id']} — {result['chain']['source']}"], ["audit contract", f"`{s['contract']}`"],
        ["opened", f"block {s['opened_block']} {_time(result['opened_time'])}"],
        ["ended", f"block {s['closed_block']} {_time(result['closed_time'])}" if s["closed_block"] else "—"],
        ["rounds", ", ".join(f"{v} {k}" for k, v in s["rounds_by_state"].items())],
        ["metrics hash", f"`{s['metrics_hash']}`"]])]
    if result.get("resumes"):
        out += ["## Interruptions\n", _md_table(INTERRUPTION_HEAD, _interruptions(result))]
    out += ["## Participants\n", _md_table(
        ["role", "organisation", "account", "joined", "finalized", "last round"],
        [[p["role"], p["organisation"], f"`{p['address']}`", p["joined"], p["finalized"], p["last_round"]]
         for p in s["participants"]])]
    if result.get("links"):
        out += ["## Linked sessions\n", _md_table(["relation", "session", "algorithm", "status", "model commitments"],
                                                  _link_rows(result))]
    if result.get("metrics"):
        out += ["## Metrics (guest)\n", _md_table(["metric", "value"], [list(r) for r in _metric_rows(result["metrics"])])]
    for name, split in evaluation_splits(result.get("metrics") or {}):
        out += [f"## Evaluation: {name}\n", f"{EVALUATION_NOTE} Average precision "
                f"{_num(split.get('average_precision'))}.\n",
                _md_table(["", "predicted 0", "predicted 1"], confusion_rows(split)), _md_table(LIFT_HEAD, lift_rows(split))]
    for role, comm in (result.get("communication") or {}).items():
        out += [f"## Communication: {role}\n", f"{COMMUNICATION_NOTE}\n", _md_table(PHASE_HEAD, phase_rows(comm)),
                _md_table(ROUND_HEAD, comm_round_rows(comm))]
    rows = round_rows(result)
    roles = sorted({k for r in rows for k in r["tx"]})
    out += ["## Rounds\n", _md_table(
        ["round", "phase", "loss", *[f"{r} tx" for r in roles], "state"],
        [[r["round"], r["phase"], "" if r["loss"] is None else f"{r['loss']:.6f}",
          *[f"`{_short(r['tx'].get(x))}`" for x in roles], r["state"]] for r in rows])]
    out += ["## Timeline\n", _md_table(
        ["block", "time", "event", "party", "round", "what", "tx"],
        [[e["block"], _time(e["time"]), e["event"], f"{e['role']} `{_short(e['party'], 6)}`",
          "" if e["round"] is None else e["round"], e["what"], f"`{_short(e['tx_hash'])}`"]
         for e in result["timeline"]])]
    out += ["## Checks\n", _md_table(
        ["result", "check", "party", "file", "round", "field", "detail"],
        [["pass" if c["ok"] else "**FAIL**", c["check"], c["party"], c["file"],
          "" if c["round"] is None else c["round"], c["field"],
          c["detail"] if c["ok"] else f"expected {c['expected']}, found {c['found']} {c['detail']}".strip()]
         for c in result["checks"]])]
    return "\n".join(out)


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.html, report.md and audit.json (the raw result) into `out_dir`."""
    out = Path(out_dir)
    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "audit.json"}
    atomic_write(paths["html"], render_html(result).encode("utf-8"))
    atomic_write(paths["md"], render_markdown(result).encode("utf-8"))
    atomic_write(paths["json"], (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    return paths
