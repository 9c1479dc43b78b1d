"""Options tables (vfl.options): one declaration per key drives parsing, checks, commitment and docs."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from chain.commitment import canonical_bytes
from nodes.config import ALGORITHM_SECTIONS, REFERENCE, load_config, options_of, options_reference
from nodes.errors import ConfigError
from vfl.errors import TrainingError
from vfl.gmm.options import GmmOptions, GmmOptionsError
from vfl.hfl.options import HflOptions
from vfl.lr.options import LrOptions
from vfl.options import DistinctEach, Interval, OneOf, options_table


def test_the_docs_table_is_the_options_tables() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    assert options_reference() in text, ("docs/configuration.md is out of date: run .venv/bin/python -c "
                                         "\"from nodes.config import update_reference; update_reference()\"")


@pytest.mark.parametrize("options", [LrOptions, GmmOptions, HflOptions])
def test_a_section_has_its_options_keys_and_defaults(options: type) -> None:
    section = ALGORITHM_SECTIONS[options.SECTION]
    defaults = {r.name: r.default for r in options_table(section)}
    for row in options_table(options):
        if row.config:
            assert defaults[row.name] == (list(row.default) if isinstance(row.default, tuple) else row.default)
    seeded = {"seed": 7} if "seed" in {f.name for f in dataclasses.fields(options)} else {}
    assert options_of(load_config(None, ["job.seed=7"]), options) == dataclasses.replace(options(), **seeded)


def test_the_job_definition_and_so_the_config_commitment_is_unchanged() -> None:
    """The defaults of every section, as the hand-written sections committed them (sha256 of canonical_bytes)."""
    digest = hashlib.sha256(canonical_bytes(load_config(None).job_definition())).hexdigest()
    assert digest == "cddf39049c3c6a7688d138e7f0318203d1b800834bfdab5b6fd57942eab6c5b3"


@pytest.mark.parametrize("override, message", [
    ("lr.epochs=0", "[lr] epochs must be >= 1, got 0"),
    ("lr.learning_rate=0", "[lr] learning_rate must be > 0, got 0.0"),
    ("lr.validation=1", "[lr] validation must be in [0, 1), got 1.0"),
    ('lr.penalty="l3"', "[lr] penalty must be \"l2\", \"l1\" or \"none\", got 'l3'"),
    ("lr.step_timeout=0", "[lr] step_timeout must be > 0, got 0.0"),
    ("lr.early_stopping=2", None),
    ("gmm.k_range=[3, 0]", "[gmm] k_range must list distinct values >= 1, got [3, 0]"),
    ("binning.bins=1", "[binning] bins must be >= 2, got 1"),
    ("selection.top_k=-1", "[selection] top_k must be >= 0, got -1"),
    ("hfl.clients=40", "[hfl] clients must be in [2, 31], got 40"),
    ('hfl.dp="laplace"', None),
])
def test_a_value_outside_its_constraint_is_one_config_error_naming_section_and_key(override, message) -> None:
    if message is None:  # allowed on its own
        load_config(None, [override])
        return
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert str(exc.value) == message


def test_combinations_are_checked_after_the_table() -> None:
    with pytest.raises(ConfigError, match=r"^\[lr\] early_stopping needs a validation split"):
        load_config(None, ["lr.early_stopping=2", "lr.validation=0"])
    with pytest.raises(ConfigError, match=r"^\[hfl\] differential privacy needs clip > 0"):
        load_config(None, ['hfl.dp="gaussian"', "hfl.clip=0"])


def test_options_objects_refuse_with_their_own_error_types() -> None:
    with pytest.raises(TrainingError, match=r"^\[lr\] epochs must be >= 1"):
        LrOptions(epochs=0).check()
    with pytest.raises(GmmOptionsError, match=r"^\[gmm\] init must be"):
        GmmOptions(init="bogus").validate()  # type: ignore[arg-type]


def test_constraints_describe_themselves() -> None:
    assert Interval(0, 1, open_high=True).holds(0.0) and not Interval(0, 1, open_high=True).holds(1.0)
    assert not Interval(0, finite=True).holds(float("inf")) and not Interval(0).holds(float("nan"))
    assert not Interval(1).holds(True) and Interval(1).describe() == ">= 1"
    assert OneOf(("a", "b", "c")).describe() == '"a", "b" or "c"'
    assert DistinctEach(Interval(1)).holds((2, 3)) and not DistinctEach(Interval(1)).holds((2, 2))
