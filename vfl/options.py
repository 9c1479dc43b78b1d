"""Declarative option tables (after scikit-learn's `_parameter_constraints`).

An algorithm's options are one frozen dataclass whose fields are declared with
`option(default, constraint, help)`; the same declaration gives

- the defaults and types (the dataclass itself),
- validation: `check_options(obj)` tests every field's constraint and raises
  `OptionError` with a one-line message naming the section and key,
  e.g. `[lr] epochs must be >= 1, got 0`,
- the config section (nodes.config builds `[lr]`, `[gmm]`, `[hfl]` from it) and so the
  config commitment, and
- the documentation (`markdown_table`, docs/configuration.md).

Fields with `config=False` (e.g. `seed`, which comes from `[job]`) are options but not keys
of the section.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vfl.errors import VflError

SECTION_ATTR = "SECTION"  # the class attribute naming an options class's config section


class OptionError(VflError):
    """An option's value is outside its constraint (the message names section and key)."""


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Interval:
    """low <= value <= high (None: unbounded); `open_low` / `open_high` exclude the ends;
    `finite` also refuses inf and nan."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    finite: bool = False

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.finite and not math.isfinite(value):
            return False
        if self.low is not None and not (value > self.low if self.open_low else value >= self.low):
            return False
        if self.high is not None and not (value < self.high if self.open_high else value <= self.high):
            return False
        return not (isinstance(value, float) and math.isnan(value))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.open_low else '['}{_show(self.low)}, "
                    f"{_show(self.high)}{')' if self.open_high else ']'}")
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {_show(self.low)}"
        if self.high is not None:
            return f"{'<' if self.open_high else '<='} {_show(self.high)}"
        return "a number"


@dataclass(frozen=True)
class OneOf:
    """One of the listed values."""

    values: tuple[Any, ...]

    def holds(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        quoted = [f'"{v}"' if isinstance(v, str) else str(v) for v in self.values]
        return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


@dataclass(frozen=True)
class DistinctEach:
    """A sequence of distinct values, each within `each`."""

    each: Interval

    def holds(self, value: Any) -> bool:
        items = list(value)
        return all(self.each.holds(v) for v in items) and len(set(items)) == len(items)

    def describe(self) -> str:
        return f"distinct values {self.each.describe()}"


Constraint = Interval | OneOf | DistinctEach


@dataclass(frozen=True)
class Option:
    """One row of an options table."""

    name: str
    type: Any
    default: Any
    constraint: Constraint | None
    help: str
    config: bool = True  # a key of the config section

    def message(self, section: str, value: Any) -> str:
        """The one-line refusal of `value`."""
        assert self.constraint is not None
        verb = "list" if isinstance(self.constraint, DistinctEach) else "be"
        shown = list(value) if isinstance(value, tuple) else value
        return f"[{section}] {self.name} must {verb} {self.constraint.describe()}, got {shown!r}"


def option(default: Any, constraint: Constraint | None = None, help: str = "", *,  # noqa: A002 - the column's name
           config: bool = True) -> Any:
    """A dataclass field that is also a row of its class's options table."""
    meta = {"constraint": constraint, "help": help, "config": config}
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def options_table(cls: type) -> list[Option]:
    """The rows of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    rows: list[Option] = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append(Option(f.name, hints[f.name], default, f.metadata.get("constraint"), f.metadata.get("help", ""),
                           f.metadata.get("config", True)))
    return rows


def section_of(cls: type) -> str:
    return str(getattr(cls, SECTION_ATTR))


def check_values(section: str, rows: Iterable[Option], values: Any, error: type[VflError] = OptionError) -> None:
    """Every row's constraint on `values` (attributes); `error` naming the first violation."""
    for row in rows:
        if row.constraint is None:
            continue
        value = getattr(values, row.name)
        if not row.constraint.holds(value):
            raise error(row.message(section, value))


def check_options(obj: Any, error: type[VflError] = OptionError) -> None:
    """The table's constraints on an options object (its class names the section)."""
    check_values(section_of(type(obj)), options_table(type(obj)), obj, error)


def markdown_table(section: str, rows: Sequence[Option]) -> str:
    """The section's keys as a Markdown table: key, type, default, allowed values, meaning."""
    out = [f"### `[{section}]`", "", "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for row in rows:
        if not row.config:
            continue
        default = list(row.default) if isinstance(row.default, tuple) else row.default
        shown = f'"{default}"' if isinstance(default, str) else str(default).lower() if isinstance(default, bool) \
            else str(default)
        allowed = row.constraint.describe() if row.constraint is not None else ""
        kind = getattr(row.type, "__name__", str(row.type)).replace("typing.", "")
        out.append(f"| `{row.name}` | {kind} | `{shown}` | {allowed} | {row.help} |")
    return "\n".join(out) + "\n"
