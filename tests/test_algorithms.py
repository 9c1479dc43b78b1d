"""The algorithm registry (nodes.algorithms): one entry per algorithm drives the runtime."""

from __future__ import annotations

import importlib

import pytest

from nodes import algorithms
from nodes.config import load_config
from nodes.errors import ConfigError


def test_every_registered_phase_and_predict_step_exists() -> None:
    for name in algorithms.names():
        spec = algorithms.get(name)
        for phase in spec.phases:
            module = importlib.import_module(f"nodes.phases.{phase}")
            if spec.topology == "vertical":
                assert callable(module.run_guest) and callable(module.run_host), phase
        if spec.predict is not None:
            for ref in (spec.predict.load, spec.predict.guest, spec.predict.host):
                assert callable(algorithms.resolve(ref)), ref


def test_vertical_jobs_start_with_the_intersection() -> None:
    for name in algorithms.names():
        spec = algorithms.get(name)
        if spec.topology == "vertical":
            assert spec.phases[0] == algorithms.INTERSECTION


def test_a_prediction_job_is_derived_from_a_model_that_scores() -> None:
    spec = algorithms.get("lr-predict")
    assert spec.phases == ("intersection", "predict") and spec.base == "lr"
    assert not spec.needs_labels and not spec.encrypts_own
    assert algorithms.predictable() == ["lr", "gmm"]
    with pytest.raises(ConfigError, match="'psi-predict' has no pipeline"):
        algorithms.get("psi-predict")


def test_roles_are_named_per_topology() -> None:
    assert algorithms.get("lr").roles() == ("guest", "host")
    assert algorithms.get("lr").roles(3) == ("guest", "host1", "host2", "host3")
    assert algorithms.get("hfl-lr").roles(2) == ("coordinator", "client1", "client2")
    assert algorithms.generic_role("host2") == "host" and algorithms.generic_role("guest") == "guest"


def test_the_config_accepts_exactly_the_registered_algorithms() -> None:
    for name in algorithms.names():
        assert load_config(None, [f"job.algorithm={name!r}".replace("'", '"')]).job.algorithm == name
    with pytest.raises(ConfigError, match=r'^\[job\] algorithm must be "lr", "gmm", "psi" or "hfl-lr", got .nope.$'):
        load_config(None, ['job.algorithm="nope"'])


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register(algorithms.get("lr"))


def test_every_section_an_algorithm_names_is_a_config_section_with_an_options_table() -> None:
    from nodes.config import ALGORITHM_SECTIONS, JobConfig

    sections = {f for f in JobConfig.__dataclass_fields__}
    for name in algorithms.names():
        for section in algorithms.get(name).sections:
            assert section in sections, (name, section)
            assert section in ALGORITHM_SECTIONS or section == "federation", (name, section)  # local addresses
