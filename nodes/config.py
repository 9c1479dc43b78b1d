"""Job configuration: TOML file + `--set section.key=value` overrides.

Each section is a dataclass with defaults; unknown sections or keys are errors
(a typo must not silently fall back to a default). Relative paths are resolved
against the config file's directory (paths given with `--set`: against the current
directory). Later issues add fields to their section.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nodes import algorithms
from nodes.errors import ConfigError
from vfl.errors import VflError
from vfl.gmm.options import GmmOptions
from vfl.hfl.options import HflOptions
from vfl.lr.options import LrOptions
from vfl.options import Interval, OneOf, check_values, option, options_table

MAX_CLIENTS = 31  # horizontal clients at most: the audit contract takes at most 32 participants
MAX_HOSTS = 31  # hosts of a vertical job at most (the guest is the 32nd participant)
HOST_SECTION = re.compile(r"^host([1-9][0-9]*)$")  # [host1]..[hostN]: the parties of a job with N >= 2 hosts


@dataclass
class JobSection:
    algorithm: str = "lr"  # "lr" | "gmm" | "psi" (alignment only)
    seed: int = 42
    id: str = ""  # job id; empty: derived from the config and start time
    hosts: int = 1  # hosts of a vertical job: 1 ([host]) or N >= 2 ([host1]..[hostN])


@dataclass
class PartySection:
    data: str = ""
    address: str = "127.0.0.1:50051"  # where the peer reaches this party's node
    listen: str = ""  # where this node binds; empty: `address` (e.g. "0.0.0.0:50051" behind NAT)
    name: str = ""  # organisation name registered on chain
    keystore: str = ""  # eth-account keystore; empty: a dev key on dev chains
    out: str = ""  # this party's run directory (vflchain node)
    cert: str = ""  # this party's TLS files; each empty one: [transport] cert/key/ca
    key: str = ""
    ca: str = ""


@dataclass
class ChainSection:
    url: str = ""  # empty: the embedded chain
    state: str = ".vflchain/chain"
    contract: str = ""  # audit contract address; empty: deploy (dev chains) / from state
    retry_seconds: float = 60.0  # how long a node retries a chain that refuses, resets or times out
    session_timeout: int = 3600  # s a session may sit idle before any participant may expire it


@dataclass
class PaillierSection:
    key_bits: int = 2048
    precision: int = 48
    insecure_test_keys: bool = False  # allow keys of 1024..2047 bits (tests only)


@dataclass
class TransportSection:
    cert: str = ""  # PEM certificate of this node (mutual TLS; all three or none)
    key: str = ""  # its PEM private key
    ca: str = ""  # PEM CA certificate(s) the peer's certificate must chain to
    timeout: float = 120.0  # seconds to wait for one message (and per delivery attempt)
    retries: int = 5  # re-deliveries of a message when the peer is unavailable
    connect_timeout: float = 60.0  # seconds to wait for the peer's node to come up
    liveness_grace: float = 5.0  # seconds a waited-on peer may be unreachable before it counts as gone
    capture: str = ""  # if set: write every received message's raw bytes to DIR/<role>/ (docs/transport.md)
    max_message_bytes: int = 512 * 2**20  # largest message sent or accepted (docs/transport.md: what fits)
    max_pending: int = 1024  # received messages not yet read; one more fails both sides
    max_pending_bytes: int = 2 * 2**30  # their total size


@dataclass
class ComputeSection:
    backend: str = "local"  # "local" | "ray"
    address: str = ""
    workers: int = 0  # 0: all cores


@dataclass
class BinningSection:
    """Feature binning of an LR job (FATE 1.x conventions)."""

    SECTION: ClassVar[str] = "binning"

    method: str = option("quantile", OneOf(("quantile", "bucket")), "\"bucket\": equal width")
    bins: int = option(10, Interval(2), "at most; repeated split points are merged")
    anonymous: bool = option(False, help="host: show the guest \"host.f0\".. instead of \"host.<column>\"")


@dataclass
class SelectionSection:
    """Feature selection by information value, before LR."""

    SECTION: ClassVar[str] = "selection"

    iv_threshold: float = option(0.02, Interval(0), "keep features with IV >= this")
    top_k: int = option(0, Interval(0), "then keep at most the k best by IV; 0: no limit")
    woe_transform: bool = option(False, help="guest: standardized WoE of its columns; host: one 0/1 column per bin")


def _config_type(typ: Any) -> Any:
    """The TOML-facing type of an option: a Literal is a str, a tuple a list."""
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        return type(typing.get_args(typ)[0])
    if origin is tuple:
        return list[typing.get_args(typ)[0]]  # type: ignore[misc]
    return typ


def section_class(name: str, options: type, extra: list[tuple[str, Any, Any]] | None = None) -> type:
    """The config section of an options dataclass (vfl.options): its `config` rows, then `extra`
    runtime keys (name, type, `option(...)`), each row's constraint and help kept."""
    fields: list[tuple[str, Any, Any]] = []
    for row in options_table(options):
        if not row.config:
            continue
        meta = {"constraint": row.constraint, "help": row.help, "config": True}
        if isinstance(row.default, tuple):
            default = list(row.default)
            f = field(default_factory=lambda d=default: list(d), metadata=meta)  # type: ignore[misc]
        else:
            f = field(default=row.default, metadata=meta)
        fields.append((row.name, _config_type(row.type), f))
    fields += extra or []
    cls = dataclasses.make_dataclass(f"{name.capitalize()}Section", fields, namespace={"SECTION": name, "OPTIONS": options})
    cls.__doc__ = f"The [{name}] section: {options.__module__}.{options.__name__}'s table plus runtime keys."
    return cls


LrSection = section_class("lr", LrOptions, [
    ("round_every", int, option(1, Interval(1), "commit a round every N epochs")),
    ("warm_start", str, option("", help="a run directory (or model.json) to start from (local)")),
    ("step_timeout", float, option(3600.0, Interval(0, open_low=True),
                                   "seconds to wait for the peer's next protocol message")),
])
GmmSection = section_class("gmm", GmmOptions)
HflSection = section_class("hfl", HflOptions, [
    ("clients", int, option(3, Interval(2, MAX_CLIENTS), "clients of the horizontal job")),
])
ALGORITHM_SECTIONS: dict[str, type] = {c.SECTION: c for c in (BinningSection, SelectionSection, LrSection,  # type: ignore[attr-defined]
                                                              GmmSection, HflSection)}


@dataclass
class FederationSection:
    """Where the parties of a horizontal job are (local: not part of the job definition)."""

    data: list[str] = field(default_factory=list)  # client i's CSV (id, y, features)
    clients: list[str] = field(default_factory=list)  # client i's node address
    coordinator: list[str] = field(default_factory=list)  # the coordinator's endpoint for client i
    out: str = ""  # run directory of `vflchain node` (a subdirectory per role)


LOCAL_SECTIONS = ("guest", "host", "chain", "transport", "compute", "federation", "policy")  # not part of the job definition


@dataclass
class PolicySection:
    """This party's consent policy (local, never part of the job definition): docs/deployment.md."""

    file: str = ""  # a TOML file with these keys (top level or a [policy] table); keys set here win
    partners: list[str] = field(default_factory=list)  # accepted peer accounts; ["*"]: any registered
    algorithms: list[str] = field(default_factory=list)  # accepted algorithms ("lr", "gmm", "psi"); empty: all
    min_key_bits: int = 1024  # the smallest Paillier key accepted from the peer
    columns: list[str] = field(default_factory=list)  # own columns a job may use; empty: all
    predictions_per_day: int = 100  # prediction jobs per partner per UTC day; 0: none
    state: str = ""  # where the prediction counts are kept; empty: "policy" beside [chain] state


@dataclass
class JobConfig:
    job: JobSection = field(default_factory=JobSection)
    guest: PartySection = field(default_factory=PartySection)
    host: PartySection = field(default_factory=lambda: PartySection(address="127.0.0.1:50052"))
    chain: ChainSection = field(default_factory=ChainSection)
    paillier: PaillierSection = field(default_factory=PaillierSection)
    transport: TransportSection = field(default_factory=TransportSection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    binning: BinningSection = field(default_factory=BinningSection)
    selection: SelectionSection = field(default_factory=SelectionSection)
    lr: Any = field(default_factory=LrSection)  # LrSection (built from vfl.lr.options.LrOptions)
    gmm: Any = field(default_factory=GmmSection)  # GmmSection (vfl.gmm.options.GmmOptions)
    hfl: Any = field(default_factory=HflSection)  # HflSection (vfl.hfl.options.HflOptions)
    federation: FederationSection = field(default_factory=FederationSection)
    policy: PolicySection = field(default_factory=PolicySection)
    path: Path | None = None  # the config file, if any
    raw: dict[str, Any] = field(default_factory=dict)  # the merged TOML as run
    # [host1]..[hostN] of a job with N >= 2 hosts (`[job] hosts`), by role name
    hosts: dict[str, PartySection] = field(default_factory=dict)

    def host_roles(self) -> list[str]:
        """The hosts of a vertical job by role name: ["host"], or ["host1", .., "hostN"]."""
        n = self.job.hosts
        return ["host"] if n == 1 else [f"host{k}" for k in range(1, n + 1)]

    def party(self, role: str) -> PartySection:
        if role == "guest":
            return self.guest
        if role == "host" and self.job.hosts == 1:
            return self.host
        if role in self.hosts:
            return self.hosts[role]
        m = HOST_SECTION.match(role)
        if m and 1 <= int(m.group(1)) <= self.job.hosts and self.job.hosts > 1:
            raise ConfigError(f"no [{role}] section: a job with [job] hosts = {self.job.hosts} needs "
                              f"[host1]..[host{self.job.hosts}] (address, data, ...)")
        raise ConfigError(f"unknown role {role!r}")

    def job_definition(self) -> dict[str, Any]:
        """What both parties must agree on: the job's algorithm and parameters.

        Left out (each party's own business): data paths, addresses, TLS files,
        keystores, output directories, the chain URL and state, compute settings,
        the job id (the guest may choose it) and a warm-start model path.
        """
        return definition_of(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The configuration as run (all sections, defaults included)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("path", "raw", "hosts"):
                continue
            out[f.name] = dataclasses.asdict(getattr(self, f.name))
        if self.job.hosts == 1:  # a two-party job's config as run is what it always was
            del out["job"]["hosts"]
        for role, section in self.hosts.items():
            out[role] = dataclasses.asdict(section)
        return out


def definition_of(config: dict[str, Any]) -> dict[str, Any]:
    """The job definition within a config as run (`job.json`'s "config"); see `job_definition`."""
    out = {name: values for name, values in config.items()
           if name not in LOCAL_SECTIONS and not HOST_SECTION.match(name)}
    out["job"] = {k: v for k, v in (out.get("job") or {}).items() if k != "id"}
    out["lr"] = {k: v for k, v in (out.get("lr") or {}).items() if k != "warm_start"}
    return out


PATH_KEYS = {("guest", "data"), ("host", "data"), ("guest", "keystore"), ("host", "keystore"),
             ("guest", "out"), ("host", "out"), ("guest", "cert"), ("guest", "key"), ("guest", "ca"),
             ("host", "cert"), ("host", "key"), ("host", "ca"), ("chain", "state"), ("transport", "cert"),
             ("transport", "key"), ("transport", "ca"), ("transport", "capture"), ("lr", "warm_start"),
             ("federation", "out"), ("policy", "file"), ("policy", "state")}


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); values parse as TOML, else string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: key must be section.key, e.g. lr.epochs")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return parts, parsed


def is_path_key(section: str, key: str) -> bool:
    """Whether `[section] key` is a file path (resolved against the config's directory)."""
    return (("host" if HOST_SECTION.match(section) else section), key) in PATH_KEYS


def _string_if_wanted(section: str, key: str, parsed: Any, raw: str) -> Any:
    """A --set value for a string key stays the text given (0x... addresses are not numbers)."""
    if HOST_SECTION.match(section):
        section = "host"
    cls = {f.name: f.type for f in dataclasses.fields(JobConfig) if f.name not in ("path", "raw", "hosts")}.get(section)
    if cls is None or isinstance(parsed, str):
        return parsed
    hints = typing.get_type_hints(type(getattr(JobConfig(), section)))
    return raw.strip() if hints.get(key) is str else parsed


def _coerce(section: str, name: str, typ: Any, value: Any) -> Any:
    where = f"[{section}] {name}"
    origin = typing.get_origin(typ)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        (inner,) = typing.get_args(typ)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(section, name, inner, v) for v in value]
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def _build_section(name: str, cls: type, values: dict[str, Any], base: Path | None) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"[{name}] has no key {key!r} (known: {', '.join(sorted(known))})")
        v = _coerce(name, key, hints[key], value)
        if is_path_key(name, key) and v and base is not None and not Path(v).is_absolute():
            v = str((base / v).resolve())
        if (name, key) == ("federation", "data") and base is not None:
            v = [p if Path(p).is_absolute() else str((base / p).resolve()) for p in v]
        kwargs[key] = v
    m = HOST_SECTION.match(name)  # host k's default address: the port after host k - 1's
    default = PartySection(address=f"127.0.0.1:{50051 + int(m.group(1))}") if m else getattr(JobConfig(), name)
    return dataclasses.replace(default, **kwargs)


def read_toml(path: Path, name: str, what: str) -> dict[str, Any]:
    """A TOML file's table; a one-line ConfigError naming `name` when it is missing or invalid."""
    if not path.is_file():
        raise ConfigError(f"{name}: no such {what}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: invalid TOML: {exc}") from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> JobConfig:
    """Read a TOML job config, apply `--set` overrides, validate, resolve paths."""
    raw: dict[str, Any] = {}
    base: Path | None = None
    cfg_path: Path | None = None
    if path is not None:
        cfg_path = Path(path).resolve()
        raw = read_toml(cfg_path, f"{path}", "config file")
        base = cfg_path.parent
    for text in overrides or []:
        (section, key), value = parse_override(text)
        value = _string_if_wanted(section, key, value, text.split("=", 1)[1])
        if is_path_key(section, key) and isinstance(value, str) and value and not Path(value).is_absolute():
            value = str(Path(value).resolve())  # a path typed on the command line is relative to the cwd
        if (section, key) == ("federation", "data") and isinstance(value, list):
            value = [str(Path(v).resolve()) if isinstance(v, str) else v for v in value]
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"--set {text!r}: {section} is not a section")
        raw[section][key] = value
    sections = {f.name for f in dataclasses.fields(JobConfig)} - {"path", "raw", "hosts"}
    built: dict[str, Any] = {}
    hosts: dict[str, PartySection] = {}
    for name, values in raw.items():
        if name not in sections and not HOST_SECTION.match(name):
            raise ConfigError(f"unknown config section [{name}] (known: {', '.join(sorted(sections))}, "
                              "host1..hostN)")
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        cls = PartySection if HOST_SECTION.match(name) else type(getattr(JobConfig(), name))
        section = _build_section(name, cls, values, base if base is not None else Path.cwd())
        if HOST_SECTION.match(name):
            hosts[name] = section
        else:
            built[name] = section
    cfg = JobConfig(**built, path=cfg_path, raw=raw, hosts=dict(sorted(hosts.items(), key=lambda kv: int(kv[0][4:]))))
    if cfg.policy.file:
        cfg.policy = _policy_from_file(cfg.policy, raw.get("policy") or {})
    _validate(cfg)
    return cfg


def _policy_from_file(mine: PolicySection, given: dict[str, Any]) -> PolicySection:
    """`[policy] file`: its keys (top level or a [policy] table), under those the config itself sets."""
    path = mine.file
    p = Path(path)
    data = read_toml(p, f"[policy] file {path}", "file")
    table = data.get("policy", data)
    if not isinstance(table, dict):
        raise ConfigError(f"[policy] file {path}: [policy] must be a table")
    table = {k: v for k, v in table.items() if k != "file"}
    policy = _build_section("policy", PolicySection, table, p.resolve().parent)
    return dataclasses.replace(policy, **{k: getattr(mine, k) for k in given if k != "file"}, file=path)


def _validate_policy(cfg: JobConfig) -> None:
    pol = cfg.policy
    for who in pol.partners:
        if who != "*" and not (who.startswith("0x") and len(who) == 42):
            raise ConfigError(f"[policy] partners: {who!r} is not an account address (0x + 40 hex digits) or \"*\"")
    if pol.min_key_bits < 0:
        raise ConfigError(f"[policy] min_key_bits must be >= 0, got {pol.min_key_bits}")
    if pol.predictions_per_day < 0:
        raise ConfigError(f"[policy] predictions_per_day must be >= 0, got {pol.predictions_per_day}")


def _one_of(values: list[str]) -> str:
    """'"a", "b" or "c"' for a message."""
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _validate_hosts(cfg: JobConfig) -> None:
    """`[job] hosts` and the host sections agree: [host] for one host, [host1]..[hostN] for N >= 2."""
    n = cfg.job.hosts
    if not 1 <= n <= MAX_HOSTS:
        raise ConfigError(f"[job] hosts must be between 1 and {MAX_HOSTS}, got {n}")
    if n > 1 and algorithms.get(cfg.job.algorithm).topology != "vertical":
        raise ConfigError(f"[job] hosts = {n}: only a vertical job has hosts ({cfg.job.algorithm} is horizontal)")
    extra = [r for r in cfg.hosts if int(r[4:]) > n or n == 1]
    if extra:
        raise ConfigError(f"[{extra[0]}]: the job has " + ("one host: use [host]" if n == 1 else
                          f"{n} hosts (host1..host{n})") + " or set [job] hosts")
    if n > 1 and "host" in cfg.raw:
        raise ConfigError(f"[host] is the host of a two-party job; with [job] hosts = {n} configure "
                          f"[host1]..[host{n}]")
    for k, role in enumerate(cfg.host_roles(), start=1):  # a host not configured: its defaults (no data yet)
        if n > 1 and role not in cfg.hosts:
            cfg.hosts[role] = PartySection(address=f"127.0.0.1:{50051 + k}")


def _validate(cfg: JobConfig) -> None:
    _validate_policy(cfg)
    known = algorithms.names()
    if cfg.job.algorithm not in known:
        raise ConfigError(f"[job] algorithm must be {_one_of(known)}, got {cfg.job.algorithm!r}")
    _validate_hosts(cfg)
    if cfg.job.algorithm == "hfl-lr":
        validate_hfl(cfg)
    if cfg.paillier.key_bits < 1024:
        raise ConfigError(f"[paillier] key_bits must be >= 1024, got {cfg.paillier.key_bits}")
    if cfg.paillier.key_bits < 2048 and not cfg.paillier.insecure_test_keys:
        raise ConfigError(f"[paillier] key_bits = {cfg.paillier.key_bits} is insecure: use >= 2048 "
                          "(or set [paillier] insecure_test_keys = true, for tests only)")
    _validate_sections(cfg)
    if not cfg.chain.retry_seconds >= 0:
        raise ConfigError(f"[chain] retry_seconds must be >= 0, got {cfg.chain.retry_seconds}")
    if not 0 < cfg.chain.session_timeout < 2**64:
        raise ConfigError(f"[chain] session_timeout must be > 0 seconds, got {cfg.chain.session_timeout}")
    if cfg.compute.backend not in ("local", "ray"):
        raise ConfigError(f"[compute] backend must be \"local\" or \"ray\", got {cfg.compute.backend!r}")


def options_of(cfg: JobConfig, options: type) -> Any:
    """An algorithm's options object (vfl.options) from its config section and [job] seed; not checked."""
    section = getattr(cfg, options.SECTION)  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for row in options_table(options):
        if row.name == "seed" and not row.config:
            values["seed"] = cfg.job.seed
        elif row.config:
            value = getattr(section, row.name)
            values[row.name] = tuple(value) if isinstance(row.default, tuple) else value
    return options(**values)


def _validate_sections(cfg: JobConfig) -> None:
    """Every algorithm section against its options table, then the options' own combined checks
    (e.g. [lr] early_stopping needs a validation split); one ConfigError naming section and key."""
    for name, cls in ALGORITHM_SECTIONS.items():
        try:
            check_values(name, options_table(cls), getattr(cfg, name))
            options = getattr(cls, "OPTIONS", None)
            if options is not None:
                options_of(cfg, options).validate()
        except VflError as exc:
            raise ConfigError(str(exc)) from None


def validate_hfl(cfg: JobConfig) -> None:
    """One-line ConfigError for a horizontal config whose [federation] does not fit [hfl]."""
    n = cfg.hfl.clients  # [hfl] itself is checked with the other algorithm sections
    fed = cfg.federation
    for key in ("data", "clients", "coordinator"):
        value = getattr(fed, key)
        if value and len(value) != n:
            raise ConfigError(f"[federation] {key} lists {len(value)} entries, [hfl] clients is {n}")
    if cfg.paillier.key_bits < 1024:
        raise ConfigError(f"[paillier] key_bits must be >= 1024, got {cfg.paillier.key_bits}")


REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REFERENCE_BEGIN, REFERENCE_END = "<!-- options tables: begin (generated) -->", "<!-- options tables: end -->"


def options_reference() -> str:
    """The algorithm sections' keys as Markdown tables (docs/configuration.md), from their options tables."""
    from vfl.options import markdown_table

    return "\n".join(markdown_table(name, options_table(cls)) for name, cls in ALGORITHM_SECTIONS.items())


def update_reference(path: Path = REFERENCE) -> bool:
    """Rewrite the generated block of docs/configuration.md; whether it changed."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(REFERENCE_BEGIN)
    _, _, tail = rest.partition(REFERENCE_END)
    new = f"{head}{REFERENCE_BEGIN}\n\n{options_reference()}\n{REFERENCE_END}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text
