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

from chain.commitment import TAG_MODEL, Opening
from chain.errors import ChainError
from nodes import algorithms
from nodes.context import PartyContext
from nodes.errors import NodeError
from nodes.rundir import atomic_write
from nodes.session import Session, as_session
from nodes.ui import console, table
from vfl.binning import Preprocessing
from vfl.data import PartyData
from vfl.errors import DataError

PHASE = "predict"


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
    f = _model_file(path, role)
    try:
        raw = f.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{f}: cannot read the model ({exc})") from None
    known = algorithms.predictable()
    if not isinstance(doc, dict) or doc.get("algorithm") not in known:
        raise DataError(f"{f}: not a model file (algorithm must be one of {', '.join(known)})")
    if doc.get("role", role) != role:
        raise DataError(f"{f}: a {doc['role']} model, but this party is the {role}")
    steps = algorithms.get(doc["algorithm"]).predict
    assert steps is not None
    model, preprocess = algorithms.resolve(steps.load)(doc, f, role)
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


def _setup(session: Session) -> PartyModel:
    """Round r1: exchange what the models are, check they belong together, commit to the own model
    (a guest of several hosts: with each host)."""
    ctx = session.ctx
    pm = ctx.state.get("predict_model")
    if not isinstance(pm, PartyModel):
        raise NodeError("predict: no model loaded (vflchain node --model DIR)")
    if ctx.data is None:
        raise DataError(f"predict: the {ctx.role} has no rows to score")
    check_columns(pm, ctx.data)
    mine = {"algorithm": pm.algorithm, "training_job": pm.training_job, "n_rows": ctx.data.n_rows}
    with session.round(PHASE, "refused to score") as r:
        if ctx.role == "guest":
            for peer in session.peers:
                r.send(peer, "models", mine)
            for peer in session.peers:
                problem = _models_problem(mine, r.recv(peer, "models"), "guest", peer)
                if problem:
                    raise DataError(problem)  # closing the link tells the host
        else:
            (peer,) = session.peers
            theirs = r.recv(peer, "models")
            r.peer_waits(peer, "models")  # a problem is sent as the reply the guest waits for
            problem = _models_problem(mine, theirs, ctx.role, peer)
            if problem:
                raise DataError(problem)
            r.send(peer, "models", mine)
        atomic_write(ctx.rundir.file("model.json"), pm.raw)
        r.commit({"step": "models", "algorithm": pm.algorithm, "training_job": pm.training_job,
                  "model_commitment": pm.commitment, "rows": ctx.data.n_rows,
                  "model_opening": pm.opening.to_json() if pm.opening is not None else None})
    ctx.event("phase_step", phase=PHASE, step="models", training_job=pm.training_job or "?")
    return pm


def _steps(pm: PartyModel) -> algorithms.PredictSteps:
    steps = algorithms.get(pm.algorithm).predict
    if steps is None:
        raise DataError(f"{pm.path}: a {pm.algorithm} model cannot score new rows")
    return steps


def run_guest(party: PartyContext | Session) -> dict[str, Any]:
    """Score the aligned rows: predictions.csv, metrics.json (see the module docstring), plots.
    With several hosts every host's partial scores or log-densities are added up."""
    session = as_session(party)
    pm = _setup(session)
    return {"rows": algorithms.resolve(_steps(pm).guest)(session, pm)}


def run_host(party: PartyContext | Session) -> dict[str, Any]:
    """A host's side: its partial scores (LR) or its block's log-densities (GMM) of the aligned rows."""
    session = as_session(party)
    ctx = session.ctx
    pm = _setup(session)
    algorithms.resolve(_steps(pm).host)(session, pm)
    assert ctx.data is not None
    console().print(table("predict: host", ["item", "value"],
                          [["rows scored", ctx.data.n_rows], ["own model columns", len(pm.features)],
                           ["model", str(pm.path)]]))
    return {"rows": ctx.data.n_rows}
