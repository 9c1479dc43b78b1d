"""Feature selection by Information Value: a threshold and/or the top k.

The guest decides (it alone knows every feature's IV, the host's included); each party then
keeps its own columns among the selected ones. Features with a single bin (a constant column,
or one value filling every quantile) carry no information (IV 0) and are always dropped.

With several hosts the guest knows host k's columns as "host<k>.<column>" (`public_name`);
`selection_for_hosts` splits one decision into what each host is told, and
`hosts_without_features` names the hosts the decision would leave with no column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vfl.errors import DataError


@dataclass(frozen=True)
class SelectionRule:
    """Keep features with IV >= `iv_threshold`, then at most the `top_k` best (0: no limit)."""

    iv_threshold: float = 0.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not self.iv_threshold >= 0:
            raise DataError(f"[selection] iv_threshold must be >= 0, got {self.iv_threshold}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise DataError(f"[selection] top_k must be an integer >= 0, got {self.top_k!r}")

    def describe(self) -> str:
        parts = ["single-bin features dropped", f"IV >= {self.iv_threshold:g}"]
        if self.top_k:
            parts.append(f"top {self.top_k} by IV")
        return ", then ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"iv_threshold": self.iv_threshold, "top_k": self.top_k, "description": self.describe()}


@dataclass(frozen=True)
class Decision:
    feature: str
    iv: float
    kept: bool
    reason: str  # why it was dropped ("" when kept)
    rank: int  # 1 = highest IV


@dataclass(frozen=True)
class Selection:
    rule: SelectionRule
    decisions: list[Decision] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        return [d.feature for d in self.decisions if d.kept]

    @property
    def dropped(self) -> list[str]:
        return [d.feature for d in self.decisions if not d.kept]

    def to_json(self) -> dict[str, Any]:
        """selection.json: kept and dropped features with their IV, and the rule applied."""
        return {
            "rule": self.rule.to_json(),
            "kept": [{"feature": d.feature, "iv": d.iv, "rank": d.rank} for d in self.decisions if d.kept],
            "dropped": [{"feature": d.feature, "iv": d.iv, "rank": d.rank, "reason": d.reason}
                        for d in self.decisions if not d.kept],
        }


def select_by_iv(iv: Mapping[str, float], rule: SelectionRule,
                 uninformative: Mapping[str, str] | None = None) -> Selection:
    """Decide which features to keep; decisions come in the order of `iv` (ties: first wins).

    `uninformative` maps features that must be dropped whatever their IV (single-bin ones)
    to the reason reported.
    """
    names = list(iv)
    if not names:
        raise DataError("feature selection got no features")
    ranked = sorted(range(len(names)), key=lambda i: -iv[names[i]])  # stable: ties keep input order
    rank = {names[i]: r + 1 for r, i in enumerate(ranked)}
    no_info = dict(uninformative or {})
    passing = [names[i] for i in ranked if names[i] not in no_info and iv[names[i]] >= rule.iv_threshold]
    top = set(passing[: rule.top_k] if rule.top_k else passing)
    decisions = []
    for name in names:
        value = float(iv[name])
        if name in no_info:
            reason = no_info[name]
        elif value < rule.iv_threshold:
            reason = f"IV below {rule.iv_threshold:g}"
        elif name not in top:
            reason = f"not in the top {rule.top_k}"
        else:
            reason = ""
        decisions.append(Decision(name, value, reason == "", reason, rank[name]))
    return Selection(rule, decisions)


def own_columns(selected: Sequence[str], public_names: Mapping[str, str]) -> list[str]:
    """This party's own columns among the `selected` names, in the party's column order.

    `public_names` maps each own column to the name the guest knows it by (the guest's own
    columns map to themselves; the host's to "host.x3" or an anonymous "host.f3"). The
    selection decided by the guest may name the other party's columns too; those are skipped.
    """
    chosen = set(selected)
    return [own for own, public in public_names.items() if public in chosen]


def public_name(party: str, column: str, position: int, anonymous: bool) -> str:
    """The name the guest knows a host column by: "<party>.<column>", or "<party>.f<position>" when anonymous.

    `party` is "host" in a two-party job (today's "host.x3") and "host1".."hostN" with N hosts.
    """
    return f"{party}.f{position}" if anonymous else f"{party}.{column}"


def public_names(party: str, features: Sequence[str], anonymous: bool) -> dict[str, str]:
    """Own column -> its public name, for every column of one host."""
    return {f: public_name(party, f, j, anonymous) for j, f in enumerate(features)}


def selection_for_hosts(selection: Selection, host_features: Mapping[str, Sequence[str]]
                        ) -> dict[str, tuple[list[str], list[str]]]:
    """Per host, (kept, dropped) public names of its own columns, in the decision's order.

    Each host is told only about its own columns, never another host's names or IVs.
    """
    kept, dropped = set(selection.kept), set(selection.dropped)
    out: dict[str, tuple[list[str], list[str]]] = {}
    for host, names in host_features.items():
        mine = set(names)
        out[host] = ([d.feature for d in selection.decisions if d.feature in mine and d.feature in kept],
                     [d.feature for d in selection.decisions if d.feature in mine and d.feature in dropped])
    return out


def hosts_without_features(selection: Selection, host_features: Mapping[str, Sequence[str]]) -> list[str]:
    """The hosts none of whose columns the decision keeps (a vertical model needs each to keep one)."""
    kept = set(selection.kept)
    return [host for host, names in host_features.items() if not kept.intersection(names)]


__all__ = ["Decision", "Selection", "SelectionRule", "hosts_without_features", "own_columns", "public_name",
           "public_names", "select_by_iv", "selection_for_hosts"]
