"""`run_job`: a whole federated job in one Python process, every party a thread.

The parties run the same code as under `vflchain run` (nodes.job.PartyNode for a
vertical job, nodes.hfl_node.HflNode for a horizontal one): handshake with identity
proofs, session, PSI, the algorithm's phases with real Paillier encryption, close.
Only the plumbing differs: the messages go through the in-memory transport
(nodes.transport.memory: the same wire encoding and transcripts as gRPC), and the
chain is none, a fresh embedded chain in this process, or an embedded chain state
directory (vflchain.chains). Each party writes its usual run directory
(`<out>/<party>/`: job.json, rounds.jsonl, checkpoints, transcript, model.json, ...),
from which `JobResult` is read.

Parties are named as in the config: `guest` and `host` for a vertical job (`host1`..`hostN`
once the runtime has several hosts), `coordinator` and `client1`..`clientN` for a
horizontal one; `data=` is keyed by those names.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodes import algorithms
from nodes.config import PATH_KEYS, JobConfig, load_config
from nodes.errors import ConfigError, NodeError
from nodes.job import one_line
from vfl.errors import VflError
from vflchain.chains import ChainSpec, JobChain, open_chain_for
from vflchain.inputs import PartyInput, party_table, write_table

ConfigInput = JobConfig | str | Path | Mapping[str, Mapping[str, Any]] | None
Events = Callable[[dict[str, Any]], None]
HORIZONTAL = tuple(a for a in algorithms.names() if algorithms.get(a).topology == "horizontal")


class JobFailed(NodeError):
    """The job did not complete. The message is one line: `<party>: <the error that started it>`.

    `errors` holds every party's own error line; `out` the work directory (its run
    directories say more; None when it was a temporary one, removed)."""

    def __init__(self, message: str, errors: dict[str, str], out: Path | None) -> None:
        super().__init__(message)
        self.errors: dict[str, str] = errors
        self.out: Path | None = out


@dataclass
class PartyResult:
    """What one party's run directory holds, read after the job."""

    party: str  # guest, host, coordinator, client1, ...
    job: dict[str, Any]  # job.json
    model: dict[str, Any] | None  # model.json: this party's own part of the model
    metrics: dict[str, Any] | None  # metrics.json (guest / coordinator)
    intersection: dict[str, Any] | None  # intersection.json (vertical jobs)
    rounds: list[dict[str, Any]]  # rounds.jsonl: round, phase, loss, commitment, transcript_digest, tx_hash
    transcript: list[dict[str, Any]]  # transcript.jsonl: every message's round, direction, tag, size, SHA-256
    run_dir: Path | None  # the directory itself (removed with a temporary work directory)
    predictions: list[dict[str, str]] = field(default_factory=list)  # predictions.csv rows (guest)

    @property
    def round_commitments(self) -> dict[int, str]:
        """{round: this party's commitment of that round} ("0x" hex)."""
        return {int(r["round"]): str(r["commitment"]) for r in self.rounds}

    @property
    def model_commitment(self) -> str | None:
        """The commitment to model.json finalized at close."""
        return self.job.get("model_commitment")


@dataclass
class JobResult:
    """A completed job: per-party models, metrics, transcripts and commitments.

    `parties` maps each party's name to its `PartyResult`. With `out=None` the run
    directories live in a temporary directory removed with this object (`out` and each
    `run_dir` are valid while it lives); with `out=DIR` they stay."""

    algorithm: str
    job_id: str
    session_id: str
    chain: str  # "none" | "embedded" | "state"
    parties: dict[str, PartyResult]
    out: Path
    config: JobConfig  # the opener's configuration as run
    _chain: JobChain | None = field(default=None, repr=False)
    _tmp: Any = field(default=None, repr=False)  # a TemporaryDirectory to keep alive

    @property
    def opener(self) -> PartyResult:
        """The party that opened the session (guest or coordinator): it holds the metrics."""
        return self.parties.get("guest") or self.parties["coordinator"]

    @property
    def models(self) -> dict[str, dict[str, Any] | None]:
        """{party: its model.json}; a party's model is only its own part."""
        return {p: r.model for p, r in self.parties.items()}

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The job's metrics.json (written by the guest or the coordinator)."""
        return self.opener.metrics

    @property
    def transcripts(self) -> dict[str, list[dict[str, Any]]]:
        return {p: r.transcript for p, r in self.parties.items()}

    @property
    def commitments(self) -> dict[str, Any]:
        """The config commitment, each party's round commitments and its final model commitment,
        and the metrics hash (all "0x" hex)."""
        return {"config": self.opener.job.get("config_commitment"),
                "rounds": {p: r.round_commitments for p, r in self.parties.items()},
                "final": {p: r.model_commitment for p, r in self.parties.items()},
                "metrics_hash": self.opener.job.get("metrics_hash")}

    @property
    def run_dirs(self) -> dict[str, Path | None]:
        return {p: r.run_dir for p, r in self.parties.items()}

    def audit(self, report: str | Path | None = None) -> Any:
        """Audit the run directories against the chain the job used (chain/audit.py, as `vflchain audit`).

        Args:
            report: a directory for report.html, report.md and audit.json; None: no report.
        Returns:
            a `vflchain.audit.AuditResult` (`ok`, `checks`, `failures`, `summary_line()`).
        Raises:
            AuditUnavailable: the job ran without a chain, or its chain is gone.
        """
        from vflchain.audit import audit_run_dirs

        return audit_run_dirs(self.out, self._chain, report)

    def close(self) -> None:
        """Release the job's chain and, with `out=None`, delete its temporary directory."""
        if self._chain is not None:
            self._chain.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def read_party(party: str, run_dir: Path) -> PartyResult:
    """A party's run directory as a `PartyResult`."""
    return PartyResult(party, _read_json(run_dir / "job.json") or {}, _read_json(run_dir / "model.json"),
                       _read_json(run_dir / "metrics.json"), _read_json(run_dir / "intersection.json"),
                       _read_jsonl(run_dir / "rounds.jsonl"), _read_jsonl(run_dir / "transcript.jsonl"), run_dir,
                       _read_csv(run_dir / "predictions.csv"))


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _resolve_paths(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A config mapping's path values made absolute (relative to the current directory)."""
    out: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"config [{section}] must be a mapping of keys to values")
        out[section] = dict(values)
        for key, value in values.items():
            if (section, key) in PATH_KEYS and isinstance(value, str) and value:
                out[section][key] = str(Path(value).resolve())
            if (section, key) == ("federation", "data") and isinstance(value, list):
                out[section][key] = [str(Path(v).resolve()) for v in value]
    return out


def load_job_config(config: ConfigInput, overrides: Sequence[str] = (), workdir: Path | None = None) -> JobConfig:
    """A validated JobConfig from a config file, a JobConfig, a mapping {section: {key: value}} or None
    (all defaults), with `section.key=value` overrides applied as `vflchain run --set` does.

    Raises:
        ConfigError: one line naming the file, section or key.
    """
    if isinstance(config, JobConfig):
        cfg = copy.deepcopy(config)
        if not overrides:
            return cfg
        raw = cfg.to_dict()
    elif config is None or isinstance(config, str | Path):
        return load_config(config, list(overrides))
    elif isinstance(config, Mapping):
        raw = _resolve_paths(config)
    else:
        raise ConfigError(f"config must be a file path, a JobConfig or a mapping of sections, got "
                          f"{type(config).__name__}")
    import tomli_w

    with tempfile.TemporaryDirectory(prefix="vflchain-config-", dir=workdir) as tmp:
        path = Path(tmp) / "job.toml"
        try:
            path.write_text(tomli_w.dumps(_plain(raw)), encoding="utf-8")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config: a value cannot be written as TOML ({exc})") from None
        cfg = load_config(path, list(overrides))
    cfg.path = config.path if isinstance(config, JobConfig) else None
    return cfg


def _plain(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values (TOML has no null) and turn tuples into lists."""
    def value(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [value(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, Mapping):
            return {str(k): value(x) for k, x in v.items() if x is not None}
        return v

    return {s: value(v) for s, v in raw.items()}


def parties_of(cfg: JobConfig) -> list[str]:
    """The job's party names, the opener first."""
    if cfg.job.algorithm in HORIZONTAL:
        from nodes.hfl_config import roles

        return roles(cfg)
    return ["guest", *cfg.host_roles()]  # host, or host1..hostN ([job] hosts = N)


def _dev_index(party: str) -> int:
    from chain.accounts import DEV_INDEX
    from nodes.hfl_config import dev_index

    return DEV_INDEX[party] if party in DEV_INDEX else dev_index(party)


def _place_data(cfg: JobConfig, parties: list[str], data: Mapping[str, PartyInput] | None, labels: Any,
                workdir: Path, require_labels: bool) -> None:
    """Validate the in-memory data, write it as the parties' CSV files and point the config at them."""
    data = dict(data or {})
    unknown = [p for p in data if p not in parties]
    if unknown:
        raise ConfigError(f"data for an unknown party {unknown[0]!r} (this {cfg.job.algorithm} job's parties: "
                          f"{', '.join(parties)})")
    if labels is not None and "guest" not in data:
        raise ConfigError("labels= go with the guest's in-memory data (data={\"guest\": ...})")
    horizontal = cfg.job.algorithm in HORIZONTAL
    fed = list(cfg.federation.data) if horizontal else []
    for party in parties:
        if party == "coordinator":
            if party in data:
                raise ConfigError("the coordinator holds no data")
            continue
        if party not in data:
            given = fed[int(party.removeprefix("client")) - 1] if horizontal and len(fed) == len(parties) - 1 \
                else ("" if horizontal else cfg.party(party).data)
            if not given:
                raise ConfigError(f"no data for the {party}: pass data={{{party!r}: ...}} or set its data file "
                                  "in the config")
            continue
        role = "guest" if horizontal or party == "guest" else "host"  # a horizontal client's rows carry labels
        table = party_table(data[party], party, role, labels if party == "guest" else None,
                            require_labels=require_labels or horizontal)
        path = str(write_table(table, workdir / "data" / f"{party}.csv"))
        if horizontal:
            fed = fed if len(fed) == len(parties) - 1 else [""] * (len(parties) - 1)
            fed[int(party.removeprefix("client")) - 1] = path
        else:
            cfg.party(party).data = path
    if horizontal:
        cfg.federation.data = fed


def _prepare_out(out: str | Path | None, force: bool) -> tuple[Path, Any]:
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="vflchain-job-")
        return Path(tmp.name), tmp
    path = Path(out).resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out {out} is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise ConfigError(f"run directory {out} is not empty; choose another out= or pass force=True")
        import shutil

        for child in path.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path, None


def _memory_transports(parties: list[str], horizontal: bool) -> Callable[..., Any]:
    """A transport factory handing each party its end of in-memory links (all parties of one job)."""
    from nodes.transport.memory import memory_pair

    if horizontal:
        from nodes.transport.star import StarTransport

        return _memory_star(parties, StarTransport)
    if len(parties) > 2:  # a guest and N >= 2 hosts: a star, as `vflchain run` links them
        from nodes.transport.star import HostLinks

        return _memory_star(parties, HostLinks)
    ends = dict(zip(("guest", "host"), memory_pair(), strict=True))

    def vertical(cfg: JobConfig, role: str, job_id: str | None, transcript: Any) -> Any:
        ends[role].transcript = transcript
        return ends[role]

    return vertical


def _memory_star(parties: list[str], hub_transport: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """The factory of a star of in-memory links: `parties[0]` (guest or coordinator) gets
    `hub_transport(links by peer)`, every other party its one link to it."""
    from nodes.transport.memory import memory_link

    center = parties[0]
    hub, spokes = {}, {}
    for p in parties[1:]:
        hub[p], spokes[p] = memory_link(center, p)

    def star(cfg: JobConfig, role: str, job_id: str | None, transcript: Any) -> Any:
        if role == center:
            for link in hub.values():
                link.transcript = transcript
            return hub_transport(hub)
        spokes[role].transcript = transcript
        return spokes[role]

    return star


def _root_error(errors: dict[str, str], parties: list[str]) -> str:
    """The failure that started it: the first party whose error is not about a peer failing or leaving
    (as `vflchain run` reports it)."""
    for party in parties:
        err = errors.get(party)
        if err is None:
            continue
        others = [p for p in parties if p != party] + ["peer", "clients"]
        if not any(f"{p} failed" in err or f"{p} disconnected" in err or f"the {p} aborted" in err
                   for p in others):
            return f"{party}: {err}"
    party = next(p for p in parties if p in errors)
    return f"{party}: {errors[party]}"


def run_job(config: ConfigInput = None, data: Mapping[str, PartyInput] | None = None, *,
            labels: Any = None, chain: ChainSpec = None, out: str | Path | None = None,
            overrides: Sequence[str] = (), force: bool = False, timeout: float = 3600.0,
            events: Events | None = None, model: str | Path | None = None, verbose: bool = False) -> JobResult:
    """Run a whole job in this process: every party in its own thread over in-memory links.

    Args:
        config: the job config: a TOML file (as `vflchain run --config` takes), a `JobConfig`, a
            mapping {section: {key: value}} (e.g. {"job": {"algorithm": "gmm"}, "gmm": {"k": 3}}), or
            None for the defaults (algorithm "lr").
        data: each party's rows keyed by party name ("guest", "host"; "client1".. for a horizontal
            job): a CSV path, a DataFrame, a 2-D array, a mapping {"X", "ids", "y", "features"} or a
            `vfl.data.PartyData` (vflchain.inputs). A party left out uses the data file of the config.
        labels: the guest's labels (0/1), when its data does not carry them.
        chain: None (no chain: nothing anchored, vflchain.ledger), "embedded" (a fresh embedded
            chain with the audit contract, in this process) or an embedded chain state directory
            (kept: `vflchain audit` can check the run later).
        out: the work directory: `<out>/<party>/` run directories and `<out>/data/` (the in-memory
            data as CSV files). None: a temporary directory, removed with the result.
        overrides: `section.key=value` strings, as `vflchain run --set`.
        force: replace what `out` holds.
        timeout: seconds to wait for the job before giving up on it.
        events: called with every progress event of every party (dicts with "event" and "role").
        model: a trained job's `out`: score `data` with its parties' models instead of training
            (a prediction job, as `vflchain predict`).
        verbose: print the tables the parties print under `vflchain run` (binning, summaries).
    Returns:
        a `JobResult` with every party's job.json, model, metrics, transcript and commitments.
    Raises:
        ConfigError: a bad config, party name or out directory (one line).
        vfl.errors.DataError: data a job cannot use (one line naming the party, row and column).
        ChainError: the chain cannot be opened or the contract deployed.
        JobFailed: a party failed; the message is the error that started it.
    """
    from nodes.ui import silenced

    workdir, tmp = _prepare_out(out, force)
    try:
        with contextlib.nullcontext() if verbose else silenced():
            result = _run(config, data, labels, chain, workdir, overrides, timeout, events, model)
    except BaseException as exc:
        if tmp is not None:
            tmp.cleanup()
            if isinstance(exc, JobFailed):
                exc.out = None  # the temporary run directories are gone: pass out= to keep a failed job's
        raise
    result._tmp = tmp
    return result


def _run(config: ConfigInput, data: Mapping[str, PartyInput] | None, labels: Any, chain: ChainSpec,
         workdir: Path, overrides: Sequence[str], timeout: float, events: Events | None,
         model: str | Path | None) -> JobResult:
    cfg = load_job_config(config, overrides, workdir)
    horizontal = cfg.job.algorithm in HORIZONTAL
    if model is not None and horizontal:
        raise ConfigError("prediction jobs (model=) are vertical only")
    parties = parties_of(cfg)
    from nodes.algorithms import get

    _place_data(cfg, parties, data, labels, workdir, get(cfg.job.algorithm).needs_labels and model is None)
    job_chain = open_chain_for(chain, {p: _dev_index(p) for p in parties}, workdir)
    cfg.chain.url, cfg.chain.contract = "", job_chain.contract
    cfg.chain.state = job_chain.state
    if job_chain.kind == "none":
        from chain.accounts import dev_account

        # no chain, so no development chain whose dev accounts a policy accepts by default: name them
        cfg.policy.partners = cfg.policy.partners or [dev_account(_dev_index(p)).address for p in parties]
    if not cfg.policy.state:
        cfg.policy.state = str(workdir / "policy")  # prediction quotas (a prediction job) stay in the work dir
    try:
        results = _run_parties(cfg, parties, horizontal, job_chain, workdir, timeout, events, model)
    except BaseException:
        job_chain.close()
        raise
    if job_chain.kind == "state":
        job_chain.close()  # the snapshot is written: `vflchain audit` reads the state from now on
    errors = {p: r for p, r in results.items() if isinstance(r, str)}
    if errors:
        job_chain.close()
        raise JobFailed(_root_error(errors, parties), errors, workdir)
    read = {p: read_party(p, workdir / p) for p in parties}
    opener = read[parties[0]].job
    return JobResult(cfg.job.algorithm if model is None else str(opener.get("algorithm")),
                     str(opener.get("job_id")), str(opener.get("session_id")), job_chain.kind, read, workdir,
                     cfg, job_chain)


def _import_pipeline(algorithm: str | None) -> None:
    """Import the phases and their plots before the parties' threads start: each node imports them in the
    background (nodes.job), and a node must not find a module another thread is still importing."""
    import importlib

    importlib.import_module("nodes.plots")
    names = algorithms.get(algorithm).phases if algorithm else ("intersection", "predict")
    for name in names:
        for module in (f"nodes.phases.{name}", f"nodes.plots.{name}"):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise


def _run_parties(cfg: JobConfig, parties: list[str], horizontal: bool, job_chain: JobChain, workdir: Path,
                 timeout: float, events: Events | None, model: str | Path | None) -> dict[str, Any]:
    """Each party's node in its own thread; {party: job.json, or its one-line error}."""
    from nodes.hfl_node import HflNode
    from nodes.job import PartyNode

    _import_pipeline(cfg.job.algorithm if model is None else None)
    transports = _memory_transports(parties, horizontal)
    results: dict[str, Any] = {}
    nodes: dict[str, Any] = {}
    for party in parties:  # each node gets its own copy: a node may adjust its config (e.g. a prediction job)
        own = copy.deepcopy(cfg)
        if horizontal:
            nodes[party] = HflNode(own, party, workdir / party, events=events, transport_factory=transports,
                                   chain_factory=job_chain.factory)
        else:
            nodes[party] = PartyNode(own, party, workdir / party, events=events, transport_factory=transports,
                                     chain_factory=job_chain.factory, model=model)

    def run(party: str) -> None:
        try:
            results[party] = nodes[party].run()
        except (NodeError, VflError) as exc:
            results[party] = one_line(exc)
        except BaseException as exc:  # noqa: BLE001 - reported as that party's failure
            results[party] = one_line(exc)

    threads = [threading.Thread(target=run, args=(p,), name=f"vflchain-{p}", daemon=True) for p in parties]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout)
    except BaseException:  # Ctrl-C in a notebook: stop the parties (each aborts its session), then re-raise
        _stop(nodes, "interrupted", threads)
        raise
    late = [p for p, t in zip(parties, threads, strict=True) if t.is_alive()]
    if late:
        _stop({p: nodes[p] for p in late}, f"the job did not finish within {timeout:g} s", threads)
        raise JobFailed(f"{late[0]}: the job did not finish within {timeout:g} s",
                        {p: "timed out" for p in late}, workdir)
    return results


def _stop(nodes: dict[str, Any], reason: str, threads: list[threading.Thread]) -> None:
    """Close the parties' links (their peers' waits fail at once, naming `reason`) and give them 10 s to
    record the failure."""
    for node in nodes.values():
        transport = getattr(node, "transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close(reason)
    for t in threads:
        t.join(10)

