"""Run directories in the explorer: found by session, audited against the cached history, plotted.

`RunDirs` finds the party directories under the `--runs` paths (a party's directory, a
`vflchain run --out` directory, or a folder of those) and groups them by the session id
their job.json names, rescanning at most every few seconds (a running job's directory
appears while the explorer runs). `audit` runs `chain.audit`'s checks with the explorer's
cached history instead of a fresh read of the chain. `charts` reads what the guest's
files hold into plain lists for the page's charts: loss per round, ROC and KS curves,
WoE and IV per feature, GMM components and cluster sizes, bytes per round.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from chain.audit import (
    AuditUnavailable,
    Check,
    PartyFiles,
    audit_group,
    audit_party,
    failures,
    load_party_files,
    training_link,
    training_session_id,
)
from nodes.explorer.source import EventIndex, ExplorerError
from nodes.report import EXPLAIN

RESCAN_S = 2.0
MAX_DEPTH = 3
MAX_POINTS = 200  # points per ROC/KS curve sent to the page


def find_party_dirs(path: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Every directory with a job.json at or under `path` (at most `depth` levels down)."""
    if (path / "job.json").is_file():
        return [path]
    if depth == 0 or not path.is_dir():
        return []
    out: list[Path] = []
    for sub in sorted(path.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            out += find_party_dirs(sub, depth - 1)
    return out


def _opener_first(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: (p.name not in ("guest", "coordinator"), p.name))


class RunDirs:
    """The `--runs` directories' parties, grouped by the session their job.json names."""

    def __init__(self, roots: list[str | Path]) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        for r in self.roots:
            if not r.exists():
                raise ExplorerError(f"--runs {r}: no such directory")
        self._by_session: dict[str, list[Path]] = {}
        self._scanned = -math.inf

    def by_session(self) -> dict[str, list[Path]]:
        if time.monotonic() - self._scanned >= RESCAN_S:
            found: dict[str, list[Path]] = {}
            for root in self.roots:
                for d in find_party_dirs(root):
                    try:
                        sid = str(json.loads((d / "job.json").read_text(encoding="utf-8")).get("session_id") or "")
                    except (OSError, ValueError, AttributeError):
                        continue
                    if sid and d not in found.get(sid.lower(), []):
                        found.setdefault(sid.lower(), []).append(d)
            self._by_session = {k: _opener_first(v) for k, v in found.items()}
            self._scanned = time.monotonic()
        return self._by_session

    def of(self, sid: str) -> list[Path]:
        return self.by_session().get(sid.lower(), [])


def audit(index: EventIndex, files: list[PartyFiles]) -> dict[str, Any]:
    """Every check of `files` against their session in `index`: the verdict the page shows.

    AuditUnavailable (a clear message) when the files name no session, another chain or
    contract, or a session the chain does not have."""
    from nodes.commands.audit import config_commitment_of

    if not files:
        raise AuditUnavailable("no party directory (job.json) found")
    first = next((f for f in files if f.is_opener), files[0])
    sid = str(first.job.get("session_id") or "")
    if not sid:
        raise AuditUnavailable(f"{first.role}/job.json names no session (the job never opened one)")
    index.refresh()
    chain_id, contract = first.job.get("chain_id"), str(first.job.get("contract") or "")
    if chain_id is not None and int(chain_id) != index.chain_id:
        raise AuditUnavailable(f"the run was recorded on chain {chain_id}; this explorer reads chain "
                               f"{index.chain_id}")
    if contract and contract.lower() != index.contract.lower():
        raise AuditUnavailable(f"the run was recorded on contract {contract}; this explorer reads "
                               f"{index.contract}")
    try:
        history = index.history(sid)
    except ExplorerError as exc:
        raise AuditUnavailable(str(exc)) from None
    checks: list[Check] = []
    for f in files:
        checks += audit_party(f, history, config_commitment_of)
    checks += audit_group(files)
    for f in files:
        if f.kind != "predict":
            continue
        tid = training_session_id(f)
        training, why = None, ""
        if tid:
            try:
                training = index.history(tid, timestamps=False)
            except ExplorerError as exc:
                why = f"training session {tid} is not on this chain ({exc})"
        checks += training_link(f, history, training, why)
    bad = failures(checks)
    return {"session_id": history.session_id, "ok": not bad, "total": len(checks), "failed": len(bad),
            "checks": [dict(c.to_dict(), explain=EXPLAIN.get(c.check, ""), line=c.line()) for c in checks],
            "parties": [{"role": f.role, "path": str(f.path), "job_id": f.job.get("job_id"),
                         "status": f.job.get("status"), "error": f.job.get("error")} for f in files]}


def audit_paths(index: EventIndex, paths: list[Path]) -> dict[str, Any]:
    return audit(index, [load_party_files(p) for p in paths])


# -- chart data ----------------------------------------------------------------------------

def _jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    try:
        return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def loss_series(d: Path) -> list[dict[str, Any]]:
    return [{"round": int(r["round"]), "loss": _num(r.get("loss")), "phase": str(r.get("phase", ""))}
            for r in _jsonl(d / "rounds.jsonl") if _num(r.get("loss")) is not None and "round" in r]


def communication(d: Path) -> list[dict[str, Any]]:
    """Bytes sent and received by this party per round (transcript.jsonl)."""
    per: dict[int, dict[str, Any]] = {}
    for m in _jsonl(d / "transcript.jsonl"):
        try:
            r, size = int(m["round"]), int(m.get("size", 0))
        except (KeyError, TypeError, ValueError):
            continue
        row = per.setdefault(r, {"round": r, "sent": 0, "received": 0, "messages": 0, "phase": str(m.get("phase", ""))})
        row["sent" if m.get("direction") == "sent" else "received"] += size
        row["messages"] += 1
    return [per[r] for r in sorted(per)]


def _downsample(xs: np.ndarray, ys: np.ndarray) -> list[list[float]]:
    idx = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), MAX_POINTS)).round().astype(int))
    return [[round(float(xs[i]), 5), round(float(ys[i]), 5)] for i in idx]


def roc_ks(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Per data split (train/validate): the ROC curve with its AUC and the KS curves with the KS."""
    out = []
    splits = sorted({r.get("type", "") for r in rows})
    for split in splits:
        pairs = [(_num(r.get("label")), _num(r.get("predict_score"))) for r in rows if r.get("type", "") == split]
        pairs = [(y, s) for y, s in pairs if y is not None and s is not None]
        if len(pairs) < 2:
            continue
        y = np.array([p[0] for p in pairs]) > 0.5
        s = np.array([p[1] for p in pairs])
        pos, neg = int(y.sum()), int((~y).sum())
        if pos == 0 or neg == 0:
            continue
        order = np.argsort(-s, kind="mergesort")
        ys, ss = y[order], s[order]
        last = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]  # one point per distinct score
        tpr = np.r_[0.0, np.cumsum(ys)[last] / pos]
        fpr = np.r_[0.0, np.cumsum(~ys)[last] / neg]
        thr = np.r_[1.0, ss[last]]
        auc = float(np.trapezoid(tpr, fpr))
        ks_i = int(np.argmax(tpr - fpr))
        out.append({"split": split or "all", "n": len(pairs), "auc": round(auc, 4),
                    "ks": round(float(tpr[ks_i] - fpr[ks_i]), 4), "ks_threshold": round(float(thr[ks_i]), 4),
                    "roc": _downsample(fpr, tpr), "ks_tpr": _downsample(thr, tpr), "ks_fpr": _downsample(thr, fpr)})
    return out


def binning(d: Path) -> dict[str, Any]:
    """IV per feature and WoE per bin, from binning.csv."""
    features: dict[str, dict[str, Any]] = {}
    for r in _csv(d / "binning.csv"):
        name = r.get("feature", "")
        f = features.setdefault(name, {"feature": name, "iv": _num(r.get("iv_total")) or 0.0, "bins": []})
        f["bins"].append({"bin": r.get("bin", ""), "interval": r.get("interval", ""), "woe": _num(r.get("woe")),
                          "events": _num(r.get("event_count")), "non_events": _num(r.get("non_event_count"))})
    ranked = sorted(features.values(), key=lambda f: -f["iv"])
    return {"features": ranked}


def gmm(d: Path, predictions: list[dict[str, str]]) -> dict[str, Any] | None:
    """The guest's mixture components (means on its first two features, weights) and cluster sizes."""
    try:
        model = json.loads((d / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(model, dict) or model.get("algorithm") != "gmm":
        return None
    feats = [str(f) for f in model.get("features") or []]
    means = model.get("means") or []
    weights = [_num(w) or 0.0 for w in model.get("weights") or []]
    comps = []
    for k, m in enumerate(means):
        xs = [_num(v) for v in (m if isinstance(m, list) else [])]
        comps.append({"k": k, "weight": weights[k] if k < len(weights) else 0.0,
                      "x": xs[0] if xs else 0.0, "y": xs[1] if len(xs) > 1 else 0.0})
    sizes: dict[str, int] = {}
    for r in predictions:
        c = r.get("predict_result", "")
        sizes[c] = sizes.get(c, 0) + 1
    return {"features": feats[:2], "components": comps,
            "sizes": [{"cluster": k, "count": v} for k, v in sorted(sizes.items())]}


def metrics(d: Path) -> dict[str, Any]:
    try:
        m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def charts(paths: list[Path]) -> dict[str, Any]:
    """Everything the session page plots, from the opener's directory (the guest's files hold the
    labels, the metrics and the binning); communication for every party shown."""
    if not paths:
        return {}
    opener = paths[0]
    preds = _csv(opener / "predictions.csv")
    algorithm = ""
    try:
        algorithm = str(json.loads((opener / "job.json").read_text(encoding="utf-8")).get("algorithm") or "")
    except (OSError, ValueError, AttributeError):
        pass
    out: dict[str, Any] = {"loss": loss_series(opener),
                           "communication": {p.name: communication(p) for p in paths},
                           "binning": binning(opener), "metrics": metrics(opener)}
    out["gmm"] = gmm(opener, preds)
    out["roc"] = [] if out["gmm"] is not None or algorithm == "gmm" else roc_ks(preds)
    return out
