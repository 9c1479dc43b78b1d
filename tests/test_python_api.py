"""The Python API (vflchain.run_job and the estimators): a whole job in one process, every party a thread
over the in-memory transport, the same protocol code and real Paillier as `vflchain run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vflchain
from chain.audit import AuditUnavailable
from nodes.datafiles import write_party_csv
from nodes.errors import ConfigError
from vfl.data import PartyData
from vfl.datasets import breast_split
from vfl.errors import DataError

REPO = Path(__file__).resolve().parent.parent
TEST_KEYS = ["paillier.key_bits=1024", "paillier.insecure_test_keys=true"]
# label_noise: the guest's protective noise comes from `secrets`, so only a job without it can be compared run to run
# (and without it the host may have only a few columns for the rows: vfl.lr.privacy.check_label_bits)
LR_SETS = [*TEST_KEYS, "lr.epochs=3", "lr.label_noise=0.0", "lr.batch_size=400"]
GMM_SETS = [*TEST_KEYS, "gmm.max_iter=3", "gmm.kmeans_max_iter=3"]


def _small(rows: int = 160, host_columns: int = 20) -> tuple[PartyData, PartyData]:
    """The breast split's first rows (and host columns): quick jobs with both classes and some rows the
    other party lacks."""
    g, h = breast_split(overlap=0.9)
    g = g.take(range(rows))
    known = set(g.ids.tolist())
    shared = [i for i, rid in enumerate(h.ids.tolist()) if rid in known]
    own = [i for i, rid in enumerate(h.ids.tolist()) if rid not in known][:rows // 20]
    return g, h.take(shared + own).select(h.features[:host_columns])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    g, h = _small(250, 2)
    write_party_csv(g, d / "guest.csv")
    write_party_csv(h, d / "host.csv")
    return d


def _cli_run(config: Path, out: Path, data: Path, state: Path, sets: list[str]) -> None:
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(config), "--out", str(out)]
    for s in [f"guest.data={data / 'guest.csv'}", f"host.data={data / 'host.csv'}", "guest.address=127.0.0.1:0",
              "host.address=127.0.0.1:0", f"chain.state={state}", *sets]:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "NO_COLOR": "1"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def _model(out: Path, role: str) -> dict:
    return json.loads((out / role / "model.json").read_text())


def _assert_same_numbers(a, b, path: str = "") -> None:
    """Equal structure; floats equal to 1e-9 (relative), everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            _assert_same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


MODEL_KEYS_IGNORED = ("job_id",)  # each job has its own id


def _comparable(model: dict) -> dict:
    return {k: v for k, v in model.items() if k not in MODEL_KEYS_IGNORED}


@pytest.mark.slow
@pytest.mark.parametrize("example, sets", [("breast_lr.toml", LR_SETS), ("breast_gmm.toml", GMM_SETS)])
def test_a_job_run_from_python_gives_the_models_of_the_same_job_under_vflchain_run(
        tmp_path, data_dir, example, sets) -> None:
    config = REPO / "examples" / example
    _cli_run(config, tmp_path / "cli", data_dir, tmp_path / "state", sets)
    g, h = _small(250, 2)  # in memory this time: the API writes them as the parties' CSV files itself
    result = vflchain.run_job(config, {"guest": g, "host": h}, overrides=sets, out=tmp_path / "api")
    assert result.chain == "none" and result.session_id.startswith("0x")
    for role in ("guest", "host"):
        cli_model = _model(tmp_path / "cli", role)
        assert result.models[role] == _model(tmp_path / "api", role)
        _assert_same_numbers(_comparable(cli_model), _comparable(result.models[role]), role)
    cli_metrics = json.loads((tmp_path / "cli" / "guest" / "metrics.json").read_text())
    assert result.metrics is not None and set(result.metrics) == set(cli_metrics)


@pytest.mark.slow
def test_a_job_on_the_embedded_chain_in_process_is_anchored_and_passes_the_audit(tmp_path) -> None:
    g, h = _small(100)
    result = vflchain.run_job({"job": {"algorithm": "lr"}, "lr": {"epochs": 1}}, {"guest": g, "host": h},
                              chain="embedded", overrides=TEST_KEYS, out=tmp_path / "run")
    assert result.chain == "embedded"
    guest, host = result.parties["guest"], result.parties["host"]
    assert guest.job["status"] == host.job["status"] == "complete"
    assert all(r["tx_hash"].startswith("0x") for r in guest.rounds + host.rounds)
    assert set(result.commitments["rounds"]["guest"]) == {r["round"] for r in guest.rounds}
    assert result.commitments["final"]["host"] == host.job["model_commitment"]
    report = result.audit(tmp_path / "report")
    assert report.ok, [c.line() for c in report.failures]
    assert report.summary_line().startswith("audit passed") and (tmp_path / "report" / "report.html").exists()
    # a weight of a checkpoint changed by one part in a billion: the audit names the file and round
    cp_path = tmp_path / "run" / "host" / "checkpoints" / f"round-{host.rounds[-2]['round']:04d}.json"
    cp = json.loads(cp_path.read_text())
    cp["params"]["weights"][0] *= 1 + 1e-9
    cp_path.write_text(json.dumps(cp))
    bad = result.audit().failures
    assert [(c.check, c.party, c.file) for c in bad] == [
        ("checkpoint commitment", "host", f"checkpoints/{cp_path.name}")]


@pytest.mark.slow
def test_a_job_on_a_state_directory_is_audited_later_from_that_state(tmp_path) -> None:
    g, h = _small(120)
    state = tmp_path / "chain"
    result = vflchain.run_job({"job": {"algorithm": "psi"}}, {"guest": g, "host": h}, chain=state,
                              overrides=TEST_KEYS, out=tmp_path / "run")
    common = set(g.ids.tolist()) & set(h.ids.tolist())
    assert result.parties["guest"].intersection["intersection_size"] == len(common)
    assert vflchain.audit(tmp_path / "run").ok  # the state recorded in job.json, loaded read-only
    assert vflchain.audit(tmp_path / "run", chain=state).session_id == result.session_id


def test_a_job_without_a_chain_commits_every_round_but_cannot_be_audited(tmp_path) -> None:
    g, h = _small(80)
    seen: list[dict] = []
    result = vflchain.run_job({"job": {"algorithm": "psi"}}, {"guest": g, "host": h}, overrides=TEST_KEYS,
                              events=seen.append)
    assert {(e["role"], e["event"]) for e in seen} >= {("guest", "complete"), ("host", "complete")}
    guest = result.parties["guest"]
    assert [r["phase"] for r in guest.rounds] == ["handshake", "intersection", "close"]
    assert all(r["tx_hash"] == "" and r["commitment"].startswith("0x") for r in guest.rounds)
    assert guest.transcript and result.transcripts["host"]
    with pytest.raises(AuditUnavailable, match="without a chain"):
        result.audit()
    out = result.out
    assert out.is_dir()
    result.close()  # the temporary work directory goes with it
    assert not out.exists()


def test_arrays_and_dataframe_like_tables_are_matched_by_row_position(tmp_path) -> None:
    g, h = _small(60)
    result = vflchain.run_job({"job": {"algorithm": "psi"}}, {"guest": g.X, "host": {"X": h.X[:50]}},
                              labels=g.y, overrides=TEST_KEYS, out=tmp_path)
    assert result.parties["host"].intersection == {"intersection_size": 50, "own_size": 50, "other_size": 60}
    assert (tmp_path / "data" / "guest.csv").read_text().splitlines()[0] == "id,y," + ",".join(
        f"x{j}" for j in range(g.X.shape[1]))


@pytest.mark.parametrize("data, labels, message", [
    ({"guest": "nowhere.csv"}, None, "guest data nowhere.csv: no such file"),
    ({"gest": np.zeros((3, 2))}, None, "data for an unknown party 'gest' (this lr job's parties: guest, host)"),
    ({"guest": np.zeros(3), "host": np.zeros((3, 2))}, [0, 1, 0], "guest data: feature array must be 2-D"),
    ({"guest": np.zeros((3, 2)), "host": np.zeros((3, 2))}, None, "guest data, line 1: guest file has no label column"),
    ({"guest": np.zeros((3, 2)), "host": np.zeros((3, 2))}, [0, 2, 1], "guest data, line 3, column 'y': label '2'"),
    ({"guest": {"X": [[1.0], [float("nan")]], "y": [0, 1]}, "host": np.zeros((2, 1))}, None,
     "guest data, line 3, column 'x0': NaN"),
    ({"guest": {"X": np.zeros((2, 1)), "y": [0, 1]}, "host": {"X": np.zeros((2, 1)), "ids": ["a", "a"]}}, None,
     "host data, line 3, column 'id': duplicate ID 'a'"),
    ({"guest": {"X": np.zeros((2, 1)), "labels": [0, 1]}}, None, "unknown key 'labels'"),
])
def test_bad_input_is_refused_with_one_line_naming_the_party_and_the_problem(tmp_path, data, labels,
                                                                             message) -> None:
    with pytest.raises((ConfigError, DataError)) as err:
        vflchain.run_job(None, data, labels=labels, overrides=TEST_KEYS, out=tmp_path / "out")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_config_is_refused_with_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config section \[lrr\]"):
        vflchain.run_job({"lrr": {"epochs": 2}}, {}, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="key_bits = 1024 is insecure"):
        vflchain.run_job({"paillier": {"key_bits": 1024}}, {}, out=tmp_path / "b")
    with pytest.raises(ConfigError, match="chain must be None, \"embedded\" or"):
        vflchain.run_job({"job": {"algorithm": "psi"}}, {"guest": np.zeros((2, 1)), "host": np.zeros((2, 1))},
                         chain="http://127.0.0.1:1", overrides=TEST_KEYS, out=tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    with pytest.raises(ConfigError, match="is not empty; choose another out= or pass force=True"):
        vflchain.run_job(None, {}, out=tmp_path / "d")


@pytest.mark.slow
def test_the_estimator_scores_its_training_rows_as_the_training_job_did(tmp_path) -> None:
    g, h = _small(120)
    est = vflchain.VerticalLogisticRegression(epochs=2, key_bits=1024, insecure_test_keys=True, validation=0.0)
    parties = {"guest": {"X": g.X, "ids": g.ids, "features": g.features}, "host": h}
    est.fit(parties, g.y)
    assert set(est.models_) == {"guest", "host"} and est.metrics_["train"]["auc"] > 0.9
    proba = est.predict_proba(parties)  # a prediction job over the same rows: the same scores
    trained = {r["id"]: float(r["predict_score"]) for r in est.result_.opener.predictions}
    partner = set(h.ids.tolist())
    for i, rid in enumerate(g.ids.tolist()):
        if rid in partner:
            assert proba[i, 1] == pytest.approx(trained[rid], abs=1e-9)
        else:
            assert np.isnan(proba[i]).all()
    assert est.get_params()["epochs"] == 2


@pytest.mark.slow
def test_a_horizontal_job_run_from_python_gives_the_models_of_the_same_job_under_vflchain_run(tmp_path) -> None:
    from vfl.hfl.shards import breast_horizontal

    shards = breast_horizontal(2, skew=0.3, seed=1)
    for k, shard in enumerate(shards, 1):
        write_party_csv(shard, tmp_path / "data" / f"client{k}.csv")
    config = tmp_path / "hfl.toml"  # DP off: its noise comes from `secrets`, so only a noise-free job repeats
    config.write_text('[job]\nalgorithm = "hfl-lr"\nseed = 5\n[hfl]\nclients = 2\nrounds = 2\nbatch_size = 64\n'
                      'dp = "off"\n[paillier]\nkey_bits = 1024\ninsecure_test_keys = true\n[federation]\n'
                      'data = ["data/client1.csv", "data/client2.csv"]\nclients = ["127.0.0.1:0", "127.0.0.1:0"]\n'
                      'coordinator = ["127.0.0.1:0", "127.0.0.1:0"]\n')
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(config), "--out", str(tmp_path / "cli"),
           "--set", f"chain.state={tmp_path / 'state'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "NO_COLOR": "1"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    result = vflchain.run_job(config, {"client1": shards[0], "client2": {"X": shards[1].X, "y": shards[1].y,
                                                                         "ids": shards[1].ids,
                                                                         "features": shards[1].features}})
    assert list(result.parties) == ["coordinator", "client1", "client2"]
    for role in ("client1", "client2"):
        _assert_same_numbers(_model(tmp_path / "cli", role), result.models[role], role)
    cli_metrics = json.loads((tmp_path / "cli" / "coordinator" / "metrics.json").read_text())
    _assert_same_numbers(cli_metrics, result.metrics, "metrics")


class _Frame:
    """The part of a pandas DataFrame the API reads (pandas is not a dependency): columns, column access,
    index, to_numpy."""

    def __init__(self, columns: dict, index: list) -> None:
        self._cols, self.index = {k: np.asarray(v) for k, v in columns.items()}, index
        self.columns = list(columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def to_numpy(self) -> np.ndarray:
        return np.column_stack(list(self._cols.values()))


def test_a_dataframe_gives_its_id_column_or_else_its_index_and_its_label_column(tmp_path) -> None:
    g, h = _small(60)
    guest = _Frame({"y": g.y, **{f: g.X[:, j] for j, f in enumerate(g.features)}}, index=g.ids.tolist())
    host = _Frame({"id": h.ids, **{f: h.X[:, j] for j, f in enumerate(h.features)}}, index=list(range(60)))
    result = vflchain.run_job({"job": {"algorithm": "psi"}}, {"guest": guest, "host": host}, overrides=TEST_KEYS,
                              out=tmp_path)
    common = set(g.ids.tolist()) & set(h.ids.tolist())
    assert result.parties["guest"].intersection["intersection_size"] == len(common) > 0
    from nodes.datafiles import load_party_csv

    written = load_party_csv(tmp_path / "data" / "guest.csv", "guest")
    assert written.features == g.features and np.array_equal(written.X, g.X) and np.array_equal(written.y, g.y)
    with pytest.raises(DataError, match="host data: a 'y' column; labels belong to the guest only"):
        vflchain.run_job(None, {"guest": guest, "host": _Frame({"y": g.y}, index=[])}, out=tmp_path / "x")


def test_a_party_that_fails_fails_the_job_with_the_error_that_started_it_in_one_line(tmp_path) -> None:
    g, h = _small(80)
    with pytest.raises(vflchain.JobFailed) as err:  # batches of 10 rows, 20 host columns: the guest refuses to train
        vflchain.run_job({"lr": {"batch_size": 10}}, {"guest": g, "host": h}, overrides=TEST_KEYS, out=tmp_path)
    message = str(err.value)
    assert message.startswith("guest: batch_size 10 is too small for privacy") and "\n" not in message
    assert set(err.value.errors) == {"guest", "host"}
    assert json.loads((tmp_path / "guest" / "job.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_the_mixture_estimator_assigns_its_training_rows_to_the_clusters_the_training_job_found(tmp_path) -> None:
    g, h = _small(100)
    est = vflchain.VerticalGaussianMixture(n_components=2, max_iter=3, key_bits=1024, insecure_test_keys=True)
    parties = {"guest": g, "host": h}
    labels = est.fit(parties).labels_
    partner = np.isin(g.ids, h.ids)
    assert labels.shape == (g.n_rows,) and set(labels[partner]) == {0, 1} and (labels[~partner] == -1).all()
    assert est.weights_.shape == (2,) and set(est.models_) == {"guest", "host"}
    assert np.array_equal(est.predict(parties), labels)
    proba = est.predict_proba(parties)
    assert np.allclose(proba[partner].sum(axis=1), 1.0) and np.isnan(proba[~partner]).all()
