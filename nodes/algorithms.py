"""The registry of algorithms: everything the runtime needs to know about one, in one entry.

An `Algorithm` names its roles, the phases it runs (modules `nodes/phases/<phase>.py`,
imported when the job reaches them), which roles encrypt under their own Paillier key,
whether the guest's data needs labels, the config sections its options live in (with
their options tables, `nodes.options`) and, if its models can score new rows, its
predict steps. Adding a model is one phase module, its outputs module (nodes/plots/<name>.py),
tests, and one `register(...)` line below (docs/architecture.md).

This module imports no phase: it is read by the config parser (sections, algorithm
names) as well as by the job runner, so phases and predict steps are named by
"module:function" strings and loaded with `resolve` when they run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from nodes.errors import ConfigError

Topology = Literal["vertical", "horizontal"]
INTERSECTION = "intersection"
PREDICT = "predict"
PREDICT_SUFFIX = "-predict"


def vertical_roles(hosts: int = 1) -> tuple[str, ...]:
    """`guest` + its hosts: `host` in a two-party job, `host1`..`hostN` with N > 1 hosts."""
    if hosts < 1:
        raise ConfigError(f"a vertical job needs at least one host, got {hosts}")
    return ("guest", "host") if hosts == 1 else ("guest", *(f"host{i}" for i in range(1, hosts + 1)))


def horizontal_roles(clients: int) -> tuple[str, ...]:
    """`coordinator` + `client1`..`clientN`."""
    return ("coordinator", *(f"client{i}" for i in range(1, clients + 1)))


@dataclass(frozen=True)
class PredictSteps:
    """How a saved model scores new rows (phase `predict`), as "module:function" references.

    - `load(doc, path, role) -> (model, preprocess)`: this party's model from its model.json
      (`doc` parsed, `path` for messages); raises DataError naming the file.
    - `guest(ctx, party_model) -> int` / `host(ctx, party_model) -> int`: score the aligned
      rows (the guest writes predictions.csv and metrics.json); returns the rows scored.
    """

    load: str
    guest: str
    host: str


@dataclass(frozen=True)
class Algorithm:
    """One algorithm as the runtime sees it (the `[job] algorithm` value is `name`)."""

    name: str
    topology: Topology
    phases: tuple[str, ...]  # in order; vertical jobs always start with the intersection
    encrypts_own: frozenset[str] = frozenset()  # roles that encrypt under their own key in some phase
    needs_labels: bool = False  # the guest's file must have the `y` column
    sections: tuple[str, ...] = ()  # the config sections of its options (nodes.options tables)
    predict: PredictSteps | None = None  # None: its models do not score new rows
    base: str = ""  # a prediction job's trained algorithm ("lr" for "lr-predict")

    def roles(self, parties: int = 1) -> tuple[str, ...]:
        """The job's role names: guest + `parties` hosts, or coordinator + `parties` clients."""
        return vertical_roles(parties) if self.topology == "vertical" else horizontal_roles(parties)

    def role_encrypts_own(self, role: str) -> bool:
        """Whether `role` (`hostK` counts as `host`, `clientK` as `client`) encrypts under its own key."""
        return generic_role(role) in self.encrypts_own


def generic_role(role: str) -> str:
    """`host3` -> `host`, `client2` -> `client`; other roles unchanged."""
    for prefix in ("host", "client"):
        if role.startswith(prefix) and role[len(prefix):].isdigit():
            return prefix
    return role


REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm (its name must be new); returns it."""
    if algorithm.name in REGISTRY or algorithm.name.endswith(PREDICT_SUFFIX):
        raise ValueError(f"algorithm {algorithm.name!r} is already registered or reserved")
    REGISTRY[algorithm.name] = algorithm
    return algorithm


def names() -> list[str]:
    """The `[job] algorithm` values, in registration order."""
    return list(REGISTRY)


def get(name: str) -> Algorithm:
    """The entry of `name`; "<name>-predict" is the prediction job of a model that scores
    (phases intersection, predict; no labels needed; nobody encrypts under their own key)."""
    if name.endswith(PREDICT_SUFFIX):
        base = REGISTRY.get(name.removesuffix(PREDICT_SUFFIX))
        if base is not None and base.predict is not None:
            return replace(base, name=name, phases=(INTERSECTION, PREDICT), encrypts_own=frozenset(),
                           needs_labels=False, base=base.name)
    elif name in REGISTRY:
        return REGISTRY[name]
    raise ConfigError(f"[job] algorithm {name!r} has no pipeline (known: {', '.join(names())})")


def predictable() -> list[str]:
    """The algorithms whose saved models score new rows (`vflchain predict`)."""
    return [a.name for a in REGISTRY.values() if a.predict is not None]


def resolve(ref: str) -> Callable[..., Any]:
    """The function a "module:function" reference names (imported now)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


# -- the algorithms --------------------------------------------------------------------------

register(Algorithm("lr", "vertical", (INTERSECTION, "binning", "lr"), frozenset({"guest", "host"}),
                   needs_labels=True, sections=("binning", "selection", "lr"),
                   predict=PredictSteps("nodes.phases.lr:load_predict_model", "nodes.phases.lr:predict_step_guest",
                                        "nodes.phases.lr:predict_step_host")))
register(Algorithm("gmm", "vertical", (INTERSECTION, "gmm"), frozenset({"guest"}), sections=("gmm",),
                   predict=PredictSteps("nodes.phases.gmm:load_predict_model", "nodes.phases.gmm:predict_step_guest",
                                        "nodes.phases.gmm:predict_step_host")))
register(Algorithm("psi", "vertical", (INTERSECTION,)))
register(Algorithm("hfl-lr", "horizontal", ("hfl",), needs_labels=True,
                   sections=("hfl", "federation")))
