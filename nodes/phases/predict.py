"""Phase `predict`: score new aligned rows with both parties' saved models (`vflchain predict`).

A prediction job is a job like a training one, anchored on chain the same way:
handshake, a session with algorithm "lr-predict" or "gmm-predict", PSI of the new
rows' IDs (phase `intersection`), this phase, close. Each party loads only its OWN
model.json (`load_party_model`, before anything else, so a bad model fails at once).

round r1 (predict)
    guest -> host   models   {"algorithm", "training_job", "n_rows"}
    host  -> guest  models   the same (or {"abort": reason})
    each checks: same algorithm, both models from the same training job; each commits
    to its training session's model commitment and its opening (salt and binding, from
    the training job.json next to model.json), which reopens from its model.json
round r2 (lr)   host -> guest  predict_scores  X_h w_h of every aligned row in plaintext,
                               with the ID-order digest      (nodes.phases.lr.predict_*)
round r2 (gmm)  guest -> host  predict {"n_rows", "k"}; host -> guest log_density of its
                               block less each row's level, (N, K), and the levels' sum
                                                             (nodes.phases.gmm.run_predict_*)

Outputs (the party's run directory): `model.json`, a byte copy of the model used (it
reopens the training commitment; the session's own final model commitment is a fresh
one, bound to this session), and at the guest
`predictions.csv` (type "predict"), `metrics.json` (LR: when the new rows have labels of
both classes; GMM: log-likelihood of the new rows, plus ARI and best-permutation
accuracy when they have labels) and plots. docs/protocols/lr.md and gmm.md say what
each party learns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chain.commitment import TAG_MODEL, Opening
from chain.errors import ChainError
from nodes.context import PartyContext
from nodes.errors import NodeError
from nodes.rundir import atomic_write
from nodes.ui import console, table
from vfl.binning import Preprocessing, preprocessing_from_json
from vfl.data import PartyData
from vfl.errors import DataError, VflError

PHASE = "predict"
ALGORITHMS = ("lr", "gmm")


class PredictAborted(NodeError):
    """The peer refused to score with the models at hand, and said why."""


@dataclass
class PartyModel:
    """One party's saved model, as read from its model.json."""

    algorithm: str  # "lr" | "gmm"
    role: str
    path: Path
    raw: bytes  # the file's bytes
    training_job: str | None
    model: Any  # vfl.lr.model.LrPartModel | vfl.gmm.model.PartyMixture
    preprocess: Preprocessing | None = None  # LR with [selection] woe_transform
    # the training job's opening of its model commitment (job.json "openings" next to model.json):
    # salt and binding, checked to reopen to the commitment from these bytes; None for a bare model file
    opening: Opening | None = None

    @property
    def features(self) -> list[str]:
        """The model's columns (after its preprocessing)."""
        return list(self.model.features)

    @property
    def input_features(self) -> list[str]:
        """The raw data columns scoring needs (the preprocessing's inputs, else the model's columns)."""
        return list(self.preprocess.features) if self.preprocess is not None else self.features

    @property
    def commitment(self) -> str | None:
        """The training session's model commitment of this party (None: not known for a bare file)."""
        return self.opening.commitment if self.opening is not None else None

    def describe(self) -> dict[str, Any]:
        """What job.json records about the model used."""
        return {"path": str(self.path), "algorithm": self.algorithm, "training_job": self.training_job,
                "model_commitment": self.commitment, "features": self.features}


def _model_file(path: str | Path, role: str) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    for c in (p / role / "model.json", p / "model.json"):
        if c.is_file():
            return c
    if not p.exists():
        raise DataError(f"model {path}: no such file or directory")
    raise DataError(f"model {path}: no {role} model there (looked for {p / role / 'model.json'} "
                    f"and {p / 'model.json'})")


def _training_job(model_file: Path, doc: dict[str, Any]) -> tuple[str | None, Opening | None]:
    """The trained job's id and its opening of the model commitment; refuses a model whose job.json
    (next to it) says it did not complete, or whose opening does not reopen to the committed value."""
    job_file = model_file.parent / "job.json"
    job: dict[str, Any] = {}
    if job_file.is_file():
        try:
            job = json.loads(job_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            job = {}
        if isinstance(job, dict) and job.get("status") not in (None, "complete"):
            raise DataError(f"{model_file}: its training job did not complete (status {job.get('status')!r}"
                            f"{': ' + str(job['error']) if job.get('error') else ''}); train again")
    jid = doc.get("job_id") or (job.get("job_id") if isinstance(job, dict) else None)
    doc_opening = ((job.get("openings") if isinstance(job, dict) else None) or {}).get("model")
    opening = None
    if doc_opening is not None:
        try:
            opening = Opening.from_json(doc_opening)
            ok = opening.recompute(TAG_MODEL, model_file.read_bytes()) == opening.commitment.lower()
        except (ChainError, OSError) as exc:
            raise DataError(f"{job_file}: unreadable model opening ({exc})") from None
        if not ok:
            raise DataError(f"{model_file} is not the model its training job committed to "
                            f"({opening.commitment}); use the trained model.json unchanged")
    return (str(jid) if jid else None), opening


def load_party_model(path: str | Path, role: str) -> PartyModel:
    """This party's model.json from a file, its run directory or the trained job's directory."""
    from vfl.gmm.model import PartyMixture
    from vfl.lr.model import LrPartModel

    f = _model_file(path, role)
    try:
        raw = f.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{f}: cannot read the model ({exc})") from None
    if not isinstance(doc, dict) or doc.get("algorithm") not in ALGORITHMS:
        raise DataError(f"{f}: not a model file (algorithm must be one of {', '.join(ALGORITHMS)})")
    if doc.get("role", role) != role:
        raise DataError(f"{f}: a {doc['role']} model, but this party is the {role}")
    preprocess = None
    if doc["algorithm"] == "lr":
        model: Any = LrPartModel.from_json(doc, str(f))
        if model.role != role:
            raise DataError(f"{f}: a {model.role} model, but this party is the {role}")
        if doc.get("preprocess"):
            preprocess = preprocessing_from_json(doc["preprocess"])
            if preprocess.columns != model.features:
                raise DataError(f"{f}: the preprocessing's columns {preprocess.columns} differ from the "
                                f"model's features {model.features}")
    else:
        model = PartyMixture.from_json(doc, str(f))
    training_job, opening = _training_job(f, doc)
    return PartyModel(doc["algorithm"], role, f, raw, training_job, model, preprocess, opening)


def check_columns(pm: PartyModel, data: PartyData) -> None:
    """The data has every column the model needs (checked before the session, and again here)."""
    needed = pm.input_features
    missing = [c for c in needed if c not in data.features]
    if missing:
        raise DataError(f"{data.source}: the {pm.role}'s model needs column {missing[0]!r}, which the data "
                        f"does not have (model columns: {', '.join(needed)})")


def _models_problem(mine: dict[str, Any], theirs: dict[str, Any], me: str, peer: str) -> str | None:
    if theirs.get("algorithm") != mine["algorithm"]:
        return (f"the {me}'s model is {mine['algorithm']!r}, the {peer}'s {theirs.get('algorithm')!r}; "
                "both must come from one trained job")
    a, b = mine.get("training_job"), theirs.get("training_job")
    if a and b and a != b:
        return (f"the {me}'s model comes from job {a}, the {peer}'s from job {b}; "
                "use both parties' models of one trained job")
    if theirs.get("n_rows") != mine["n_rows"]:
        return f"the {me} has {mine['n_rows']} aligned rows, the {peer} {theirs.get('n_rows')}"
    return None


def _setup(ctx: PartyContext) -> PartyModel:
    """Round r1: exchange what the models are, check they belong together, commit to the own model."""
    pm = ctx.state.get("predict_model")
    if not isinstance(pm, PartyModel):
        raise NodeError("predict: no model loaded (vflchain node --model DIR)")
    if ctx.data is None:
        raise DataError(f"predict: the {ctx.role} has no rows to score")
    check_columns(pm, ctx.data)
    ch = ctx.channel(PHASE)
    r = ctx.next_round()
    mine = {"algorithm": pm.algorithm, "training_job": pm.training_job, "n_rows": ctx.data.n_rows}
    if ctx.role == "guest":
        ch.send("models", mine, round=r)
        theirs = ch.recv("models", round=r)
        if "abort" in theirs:
            raise PredictAborted(f"the host refused to score: {theirs['abort']}")
        problem = _models_problem(mine, theirs, "guest", "host")
        if problem:
            raise DataError(problem)  # closing the link tells the host
    else:
        theirs = ch.recv("models", round=r)
        problem = _models_problem(mine, theirs, "host", "guest")
        ch.send("models", {"abort": problem} if problem else mine, round=r)
        if problem:
            raise DataError(problem)
    atomic_write(ctx.rundir.file("model.json"), pm.raw)
    ctx.commit_round(r, PHASE, {"step": "models", "algorithm": pm.algorithm, "training_job": pm.training_job,
                                "model_commitment": pm.commitment, "rows": ctx.data.n_rows,
                                "model_opening": pm.opening.to_json() if pm.opening is not None else None})
    ctx.event("phase_step", phase=PHASE, step="models", training_job=pm.training_job or "?")
    return pm


def run_guest(ctx: PartyContext) -> dict[str, Any]:
    """Score the aligned rows: predictions.csv, metrics.json (see the module docstring), plots."""
    pm = _setup(ctx)
    if pm.algorithm == "lr":
        from nodes.phases.lr import predict_guest

        proba = predict_guest(ctx, pm.model, pm.preprocess)
        return {"rows": len(proba)}
    from nodes.phases.gmm import run_predict_guest

    resp, labels = run_predict_guest(ctx, pm.model)
    _gmm_outputs(ctx, pm, resp, labels)
    return {"rows": len(labels)}


def run_host(ctx: PartyContext) -> dict[str, Any]:
    """The host's side: its partial scores (LR) or its block's log-densities (GMM) of the aligned rows."""
    pm = _setup(ctx)
    if pm.algorithm == "lr":
        from nodes.phases.lr import predict_host

        predict_host(ctx, pm.model, pm.preprocess)
    else:
        from nodes.phases.gmm import run_predict_host

        run_predict_host(ctx, pm.model)
    assert ctx.data is not None
    console().print(table("predict: host", ["item", "value"],
                          [["rows scored", ctx.data.n_rows], ["own model columns", len(pm.features)],
                           ["model", str(pm.path)]]))
    return {"rows": ctx.data.n_rows}


def _gmm_outputs(ctx: PartyContext, pm: PartyModel, resp: np.ndarray, labels: np.ndarray) -> None:
    """metrics.json and the 2-D cluster plot of a GMM prediction job."""
    from nodes.plots.gmm import plot_clusters_2d
    from vfl.gmm import adjusted_rand_index, best_permutation_accuracy, contingency

    data = ctx.data
    assert data is not None
    k = pm.model.k
    ll = ctx.state.get("gmm_predict_log_likelihood")
    sizes = np.bincount(labels, minlength=k)
    metrics: dict[str, Any] = {"algorithm": "gmm", "k": k, "rows": data.n_rows,
                               "log_likelihood": ll, "cluster_sizes": sizes.tolist(),
                               "training_job": pm.training_job}
    rows = [["rows", data.n_rows], ["clusters (rows each)", ", ".join(map(str, sizes.tolist()))],
            ["mean log-likelihood", f"{ll:.6g}" if isinstance(ll, float) else "-"]]
    if data.y is not None:
        values, tab = contingency(data.y, labels, k)
        metrics["adjusted_rand_index"] = adjusted_rand_index(data.y, labels)
        metrics["best_permutation_accuracy"], _ = best_permutation_accuracy(data.y, labels, k)
        metrics["clusters_by_label"] = {str(c): {str(int(v)): int(tab[c, j]) for j, v in enumerate(values)}
                                        for c in range(k)}
        rows += [["ARI", f"{metrics['adjusted_rand_index']:.4f}"],
                 ["best-permutation accuracy", f"{metrics['best_permutation_accuracy']:.4f}"]]
    if not (np.all(np.isfinite(resp)) and isinstance(ll, float) and np.isfinite(ll)):
        raise VflError("predict: non-finite responsibilities or log-likelihood; no metrics written")
    ctx.rundir.write_json("metrics.json", metrics)
    if data.X.shape[0] >= 2 and data.X.shape[1] >= 1:
        X = data.select(list(pm.model.features)).X
        plot_clusters_2d(X, labels, data.y, ctx.rundir.plot_path("gmm_predict_clusters.png"))
    console().print(table(f"predict: FL-EM-GMM, K={k}", ["item", "value"], rows))
