"""`vflchain predict` end to end: a trained job's two saved models score rows as two node processes.

One small LR job (WoE-transformed columns at the guest, bin indicators at the host, so the
saved preprocessing is exercised) and
one small GMM job are trained once per module with `vflchain run`; every test then runs
`vflchain predict` (or `vflchain node`) as real processes against the same embedded chain.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.cli import main as cli
from nodes.transcript import Transcript

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
LR_CONFIG = REPO / "examples" / "breast_lr.toml"
GMM_CONFIG = REPO / "examples" / "breast_gmm.toml"


def _sets(guest: Path, host: Path, state: Path, *extra: str) -> list[str]:
    return [f"guest.data={guest}", f"host.data={host}", "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0",
            f"chain.state={state}", "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0",
            "transport.connect_timeout=15.0", *extra]


def _cmd(args: list[str], sets: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nodes.cli", *args]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def _predict(model: Path, out: Path, sets: list[str], config: Path = LR_CONFIG) -> subprocess.CompletedProcess:
    return _cmd(["predict", "--config", str(config), "--model", str(model), "--out", str(out)], sets)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def _job(out: Path, role: str) -> dict:
    return json.loads((out / role / "job.json").read_text())


@pytest.fixture(scope="module")
def lr_job(tmp_path_factory, chain_server, breast_dir) -> Path:
    out = tmp_path_factory.mktemp("lr") / "run"
    res = _cmd(["run", "--config", str(LR_CONFIG), "--out", str(out)],
               _sets(breast_dir / "guest.csv", breast_dir / "host.csv", chain_server[0],
                     "lr.epochs=2", "selection.woe_transform=true"))
    assert res.returncode == 0, res.stderr + res.stdout
    return out


@pytest.fixture(scope="module")
def gmm_job(tmp_path_factory, chain_server, breast_dir) -> Path:
    out = tmp_path_factory.mktemp("gmm") / "run"
    res = _cmd(["run", "--config", str(GMM_CONFIG), "--out", str(out)],
               _sets(breast_dir / "guest.csv", breast_dir / "host.csv", chain_server[0], "gmm.max_iter=2",
                     "gmm.init=random_from_data"))
    assert res.returncode == 0, res.stderr + res.stdout
    return out


def test_lr_model_files_carry_their_own_preprocessing_only(lr_job) -> None:
    guest = json.loads((lr_job / "guest" / "model.json").read_text())
    host = json.loads((lr_job / "host" / "model.json").read_text())
    assert guest["job_id"] == host["job_id"] == _job(lr_job, "guest")["job_id"]
    assert guest["preprocess"]["kind"] == "woe+standardize" and guest["preprocess"]["features"] == guest["features"]
    # the host's columns are one indicator per bin of its own split points (it never gets a WoE)
    assert host["preprocess"]["kind"] == "bin-indicators" and host["preprocess"]["columns"] == host["features"]
    assert "woe" not in host["preprocess"]
    assert len(host["features"]) == sum(len(p) for p in host["preprocess"]["split_points"])
    assert "intercept" in guest and "intercept" not in host
    assert not any(f.startswith("host.") for f in guest["features"])  # nothing of the host's in the guest's model
    # the host's split points are in the host's model only
    host_points = json.dumps(host["preprocess"]["split_points"])
    assert host_points not in (lr_job / "guest" / "model.json").read_text()


def test_lr_predict_scores_as_training_did_and_is_a_closed_session(tmp_path, chain_server, breast_dir,
                                                                    lr_job) -> None:
    from chain.backends import connect
    from chain.client import AuditClient

    state, url = chain_server
    out = tmp_path / "pred"
    res = _predict(lr_job, out, _sets(breast_dir / "guest.csv", breast_dir / "host.csv", state))
    assert res.returncode == 0, res.stderr + res.stdout
    assert "job complete" in res.stdout and "predict AUC" in res.stdout

    trained = _rows(lr_job / "guest" / "predictions.csv")
    scored = _rows(out / "guest" / "predictions.csv")
    assert set(scored) == set(trained)  # PSI aligned the same 512 rows
    for rid, row in scored.items():
        assert row["type"] == "predict" and row["label"] == trained[rid]["label"]
        assert abs(float(row["predict_score"]) - float(trained[rid]["predict_score"])) < 1e-12
        detail = json.loads(row["predict_detail"])
        assert set(detail) == {"0", "1"} and abs(detail["0"] + detail["1"] - 1) < 1e-12
    metrics = json.loads((out / "guest" / "metrics.json").read_text())["predict"]
    assert set(metrics) >= {"auc", "ks", "accuracy", "precision", "recall", "f1"} and metrics["auc"] > 0.9
    assert (out / "guest" / "plots" / "lr_predict_roc.png").exists()
    assert metrics["confusion_matrix"]["tp"] + metrics["confusion_matrix"]["fn"] == metrics["positives"]
    assert (out / "guest" / "plots" / "lr_predict_lift_gain.png").exists()
    assert all((out / role / "communication.json").exists() for role in ("guest", "host"))
    assert not (out / "host" / "predictions.csv").exists() and not (out / "host" / "metrics.json").exists()

    for role in ("guest", "host"):
        job, trained_job = _job(out, role), _job(lr_job, role)
        assert job["status"] == "complete" and job["algorithm"] == "lr-predict"
        assert job["phases_run"] == ["intersection", "predict"]
        # each party used its own model and named the training session's commitment to it; it closed
        # with its own commitment to the same file, bound to this session
        assert job["model"]["path"] == str(lr_job / role / "model.json")
        assert job["model"]["training_job"] == trained_job["job_id"]
        assert job["model"]["model_commitment"] == trained_job["model_commitment"]
        assert job["model_commitment"] != trained_job["model_commitment"]
        assert (out / role / "model.json").read_bytes() == (lr_job / role / "model.json").read_bytes()
    g = _job(out, "guest")
    client = AuditClient(connect(url), g["contract"])
    sid = bytes.fromhex(g["session_id"][2:])
    assert client.session(sid)["status"] == "closed" and client.session(sid)["algorithm"] == "lr-predict"
    rounds = [json.loads(x)["round"] for x in (out / "guest" / "rounds.jsonl").read_text().splitlines()]
    assert all(client.round_state(sid, r) == "attested" for r in rounds)

    # what crossed: the guest received the host's partial scores; the host received no per-row value
    host_got = [(e["phase"], e["tag"]) for e in Transcript.load(out / "host" / "transcript.jsonl")
                if e["direction"] == "received" and e["phase"] in ("predict", "lr")]
    guest_got = [(e["phase"], e["tag"]) for e in Transcript.load(out / "guest" / "transcript.jsonl")
                 if e["direction"] == "received" and e["phase"] in ("predict", "lr")]
    assert host_got == [("predict", "models")]
    assert guest_got == [("predict", "models"), ("lr", "predict_scores")]


def test_lr_predict_new_unlabelled_rows_in_another_column_order(tmp_path, chain_server, breast_dir,
                                                               lr_job) -> None:
    state, _ = chain_server
    with (breast_dir / "guest.csv").open(newline="") as fh:
        g = list(csv.reader(fh))
    with (breast_dir / "host.csv").open(newline="") as fh:
        h = list(csv.reader(fh))
    y = g[0].index("y")
    new_guest = tmp_path / "guest_new.csv"
    new_guest.write_text("\n".join(",".join(c for j, c in enumerate(r) if j != y) for r in g[:121]) + "\n")
    order = [0] + list(range(len(h[0]) - 1, 0, -1))  # id, then the host's columns reversed
    new_host = tmp_path / "host_new.csv"
    new_host.write_text("\n".join(",".join(r[j] for j in order) for r in h[:301]) + "\n")
    out = tmp_path / "pred"
    res = _predict(lr_job, out, _sets(new_guest, new_host, state))
    assert res.returncode == 0, res.stderr + res.stdout
    trained = _rows(lr_job / "guest" / "predictions.csv")
    scored = _rows(out / "guest" / "predictions.csv")
    expected = {r[0] for r in g[1:121]} & {r[0] for r in h[1:301]}
    assert set(scored) == expected and len(expected) > 20
    for rid, row in scored.items():
        assert row["label"] == ""
        if rid in trained:
            assert abs(float(row["predict_score"]) - float(trained[rid]["predict_score"])) < 1e-12
    assert not (out / "guest" / "metrics.json").exists()  # no labels, no metrics


def test_gmm_predict_assigns_rows_as_training_did(tmp_path, chain_server, breast_dir, gmm_job) -> None:
    state, _ = chain_server
    out = tmp_path / "pred"
    # the config says "lr": a prediction job takes its algorithm from the saved models
    res = _predict(gmm_job, out, _sets(breast_dir / "guest.csv", breast_dir / "host.csv", state))
    assert res.returncode == 0, res.stderr + res.stdout
    trained = _rows(gmm_job / "guest" / "predictions.csv")
    scored = _rows(out / "guest" / "predictions.csv")
    assert set(scored) == set(trained)
    for rid, row in scored.items():
        assert row["predict_result"] == trained[rid]["predict_result"] and row["type"] == "predict"
        a, b = json.loads(row["predict_detail"]), json.loads(trained[rid]["predict_detail"])
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-12 for k in a)
    m = json.loads((out / "guest" / "metrics.json").read_text())
    tm = json.loads((gmm_job / "guest" / "metrics.json").read_text())
    assert m["algorithm"] == "gmm" and m["k"] == tm["k"]
    assert abs(m["adjusted_rand_index"] - tm["adjusted_rand_index"]) < 1e-12
    assert abs(m["log_likelihood"] - tm["log_likelihood"]) < 1e-9
    assert _job(out, "guest")["algorithm"] == _job(out, "host")["algorithm"] == "gmm-predict"
    # the audit links it to the GMM training session and checks predictions.csv against its committed hash
    assert cli(["audit", str(out), "--rpc", chain_server[1], "-v"]) == 0
    audited = json.loads((out / "audit" / "audit.json").read_text())
    assert [x["algorithm"] for x in audited["links"]] == ["gmm"]
    assert any(c["check"] == "predictions hash" and c["ok"] for c in audited["checks"])


def test_models_of_different_jobs_are_refused_by_the_host(tmp_path, chain_server, breast_dir, lr_job) -> None:
    state, url = chain_server
    mixed = tmp_path / "mixed"
    shutil.copytree(lr_job / "guest", mixed / "guest")
    (mixed / "host").mkdir()
    host = json.loads((lr_job / "host" / "model.json").read_text())
    host["job_id"] = "lr-someotherjob"
    (mixed / "host" / "model.json").write_text(json.dumps(host))
    out = tmp_path / "pred"
    res = _predict(mixed, out, _sets(breast_dir / "guest.csv", breast_dir / "host.csv", state))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("vflchain: error: ") and "lr-someotherjob" in last and "one trained job" in last
    for role in ("guest", "host"):
        assert _job(out, role)["status"] == "failed"
        assert not (out / role / "predictions.csv").exists()


def test_predict_with_a_missing_model_fails_before_starting_anything(tmp_path, breast_dir, lr_job) -> None:
    half = tmp_path / "half"
    shutil.copytree(lr_job / "guest", half / "guest")
    out = tmp_path / "pred"
    res = _predict(half, out, _sets(breast_dir / "guest.csv", breast_dir / "host.csv", tmp_path / "chain"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"vflchain: error: model {half.resolve()}: no host model there (looked for "
        f"{half.resolve() / 'host' / 'model.json'} and {half.resolve() / 'model.json'})"]
    assert not out.exists() and not (tmp_path / "chain").exists()


def test_a_node_with_a_missing_data_file_fails_at_once(tmp_path, breast_dir) -> None:
    """Before the chain, the keys or the peer: one line, a failed job.json, no session."""
    out = tmp_path / "guest"
    res = _cmd(["node", "--config", str(LR_CONFIG), "--role", "guest", "--out", str(out)],
               _sets(tmp_path / "nope.csv", breast_dir / "host.csv", tmp_path / "chain",
                     "chain.url=http://127.0.0.1:9", "transport.connect_timeout=600"), timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == f"vflchain: error: {tmp_path / 'nope.csv'}: no such file"
    job = _job(tmp_path, "guest")
    assert job["status"] == "failed" and job["session_id"] is None and job["chain_id"] is None


def test_run_with_an_invalid_data_file_fails_before_starting_anything(tmp_path, breast_dir) -> None:
    bad = tmp_path / "host.csv"
    bad.write_text("id,a\n1,0.5\n2,oops\n")
    out = tmp_path / "run"
    res = _cmd(["run", "--config", str(LR_CONFIG), "--out", str(out)],
               _sets(breast_dir / "guest.csv", bad, tmp_path / "chain"), timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"vflchain: error: {bad}, line 3, column 'a': 'oops' is not a number"]
    assert not out.exists() and not (tmp_path / "chain").exists()


def test_a_model_whose_training_job_did_not_complete_is_refused(tmp_path, lr_job) -> None:
    from nodes.phases.predict import load_party_model
    from vfl.errors import DataError

    shutil.copytree(lr_job / "host", tmp_path / "host")
    job = _job(tmp_path, "host")
    assert load_party_model(tmp_path, "host").training_job == job["job_id"]
    job.update(status="failed", error="guest failed: interrupted")
    (tmp_path / "host" / "job.json").write_text(json.dumps(job))
    with pytest.raises(DataError, match=r"its training job did not complete \(status 'failed': guest failed"):
        load_party_model(tmp_path, "host")
    with pytest.raises(DataError, match="a host model, but this party is the guest"):
        load_party_model(tmp_path / "host" / "model.json", "guest")


def test_new_rows_missing_a_model_column_fail_before_starting_anything(tmp_path, breast_dir, lr_job) -> None:
    # the raw columns behind the host model's bin indicators
    host_cols = json.loads((lr_job / "host" / "model.json").read_text())["preprocess"]["features"]
    with (breast_dir / "host.csv").open(newline="") as fh:
        h = list(csv.reader(fh))
    drop = h[0].index(host_cols[0])
    new_host = tmp_path / "host_new.csv"
    new_host.write_text("\n".join(",".join(c for j, c in enumerate(r) if j != drop) for r in h) + "\n")
    out = tmp_path / "pred"
    res = _predict(lr_job, out, _sets(breast_dir / "guest.csv", new_host, tmp_path / "chain"))
    assert res.returncode == 1
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"vflchain: error: {new_host}: the host's model needs column {host_cols[0]!r}")
    assert not out.exists() and not (tmp_path / "chain").exists()
