"""Each party's consent policy ([policy], nodes.policy): a job outside it is refused in the handshake,
before anything is on chain and before PSI, with a one-line reason both sides see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nodes.config import load_config
from nodes.errors import ConfigError
from nodes.policy import PolicyRefusal, PredictionQuota
from nodes.testing import shared_memory_chain
from tests.test_job_runner import _config, _link, run_both

OTHER = "0x" + "ab" * 20


@pytest.fixture(scope="module")
def chain_env(tmp_path_factory):
    """An in-process chain with the contract and the dev guest and host registered."""
    return shared_memory_chain(tmp_path_factory.mktemp("state"))


def _refused_by_host(tmp: Path, res: dict[str, Any], reason: str) -> None:
    """The host refused with `reason`, the guest says so, and neither has a session or an intersection."""
    assert reason in str(res["host"]), res
    assert str(res["guest"]).startswith("the host refused the job: ") and reason in str(res["guest"]), res
    for role in ("guest", "host"):
        job = json.loads((tmp / "out" / role / "job.json").read_text())
        assert job["status"] == "failed" and job["session_id"] is None
        assert not (tmp / "out" / role / "intersection.json").exists()


def _host_policy(tmp: Path, chain_env, **policy: Any) -> dict[str, Any]:
    path = _config(tmp)
    return run_both(tmp, chain_env, load_config(path), load_config(_config(tmp, policy=policy)))


def test_a_guest_account_not_among_the_hosts_partners_is_refused(tmp_path, chain_env) -> None:
    from chain.accounts import dev_account

    res = _host_policy(tmp_path, chain_env, partners=[OTHER])
    _refused_by_host(tmp_path, res, f"the guest's account {dev_account(1).address} is not among this party's "
                                    "[policy] partners (1 listed)")


def test_the_guest_refuses_a_host_not_among_its_partners_and_the_host_hears_why(tmp_path, chain_env) -> None:
    path = _config(tmp_path)
    res = run_both(tmp_path, chain_env, load_config(path, ["policy.partners=[\"" + OTHER + "\"]"]), load_config(path))
    assert "the host's account" in str(res["guest"]) and "[policy] partners" in str(res["guest"])
    assert str(res["host"]).startswith("the guest refused the job: the host's account")
    assert json.loads((tmp_path / "out" / "host" / "job.json").read_text())["session_id"] is None


def test_any_registered_partner_is_accepted_when_the_policy_says_so(tmp_path, chain_env) -> None:
    res = _host_policy(tmp_path, chain_env, partners=["*"])
    assert res["host"]["status"] == res["guest"]["status"] == "complete", res


def test_an_algorithm_the_policy_does_not_allow_is_refused(tmp_path, chain_env) -> None:
    res = _host_policy(tmp_path, chain_env, algorithms=["lr", "gmm"])
    _refused_by_host(tmp_path, res, "algorithm 'psi' is not allowed by this party's [policy] algorithms (lr, gmm)")


def test_keys_smaller_than_the_policy_minimum_are_refused(tmp_path, chain_env) -> None:
    res = _host_policy(tmp_path, chain_env, min_key_bits=2048)
    _refused_by_host(tmp_path, res, "the job's Paillier keys are 1024 bits, this party's [policy] min_key_bits "
                                    "is 2048")


def test_a_column_the_policy_does_not_allow_is_refused(tmp_path, chain_env) -> None:
    res = _host_policy(tmp_path, chain_env, columns=["x0", "x1"])
    _refused_by_host(tmp_path, res, "the job would use column 'x2'")


def _gmm_model(path: Path, role: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.json").write_text(json.dumps({
        "algorithm": "gmm", "role": role, "features": ["x0"], "covariance": "diag", "weights": [0.5, 0.5],
        "means": [[0.0], [1.0]], "covariances": [[1.0], [1.0]]}))
    return path / "model.json"


def test_prediction_jobs_beyond_the_daily_quota_are_refused(tmp_path, chain_env) -> None:
    models = {"guest": _gmm_model(tmp_path / "mg", "guest"), "host": _gmm_model(tmp_path / "mh", "host")}
    state = str(tmp_path / "counts")
    guest = load_config(_config(tmp_path, policy={"state": state}))
    host = load_config(_config(tmp_path, policy={"predictions_per_day": 1, "state": state}))
    first = run_both(tmp_path / "a", chain_env, guest, host, models=models)
    for role in ("guest", "host"):  # the first job passed the handshake (whatever its phases did)
        assert json.loads((tmp_path / "a" / "out" / role / "job.json").read_text())["predictions_today"] == 1, first
    res = run_both(tmp_path, chain_env, guest, host, models=models)
    _refused_by_host(tmp_path, res, "has used its 1 prediction jobs for")
    counts = json.loads((tmp_path / "counts" / "predictions-host.json").read_text())
    assert list(counts.values()) == [{_link(chain_env, "guest").address.lower(): 1}]


def test_the_prediction_count_survives_a_restart_and_is_per_partner_and_day(tmp_path) -> None:
    PredictionQuota(tmp_path, "host", 2).take("0xA", today="2026-01-01")
    assert PredictionQuota(tmp_path, "host", 2).take("0xa", today="2026-01-01") == 2  # a new node process
    with pytest.raises(PolicyRefusal, match="has used its 2 prediction jobs for 2026-01-01"):
        PredictionQuota(tmp_path, "host", 2).take("0xA", today="2026-01-01")
    assert PredictionQuota(tmp_path, "host", 2).take("0xB", today="2026-01-01") == 1
    assert PredictionQuota(tmp_path, "host", 2).take("0xA", today="2026-01-02") == 1
    with pytest.raises(PolicyRefusal):
        PredictionQuota(tmp_path, "guest", 0).take("0xA")


def test_a_policy_file_gives_the_keys_the_config_does_not_set(tmp_path) -> None:
    (tmp_path / "policy.toml").write_text(f'[policy]\npartners = ["{OTHER}"]\nmin_key_bits = 3072\n'
                                          'state = "counts"\n')
    (tmp_path / "job.toml").write_text('[policy]\nfile = "policy.toml"\nmin_key_bits = 2048\n')
    pol = load_config(tmp_path / "job.toml").policy
    assert pol.partners == [OTHER] and pol.min_key_bits == 2048 and pol.state == str(tmp_path / "counts")
    assert "policy" not in load_config(tmp_path / "job.toml").job_definition()
    with pytest.raises(ConfigError, match=r"\[policy\] partners: 'bob' is not an account address"):
        load_config(None, ["policy.partners=[\"bob\"]"])
