"""Horizontal jobs from the command line: `vflchain data breast --horizontal`, a 3-client `vflchain run`
(five processes: chain, coordinator, three clients, gRPC on loopback) and a small `vflchain sweep`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nodes.cli import main as cli
from nodes.datafiles import load_party_csv
from vfl.hfl.dp import epsilon_after
from vfl.hfl.options import HflOptions
from vfl.hfl.simulate import run_federation

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "examples" / "breast_hfl.toml"


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("breast_hfl")
    assert cli(["data", "breast", "--horizontal", "3", "--skew", "0.3", "--out", str(d)]) == 0
    return d


def _data_sets(d: Path) -> list[str]:
    return ["federation.data=[" + ", ".join(json.dumps(str(d / f"client{k}.csv")) for k in (1, 2, 3)) + "]"]


def test_horizontal_split_writes_one_labelled_file_per_client_covering_every_row(shard_dir) -> None:
    parts = [load_party_csv(shard_dir / f"client{k}.csv", "guest") for k in (1, 2, 3)]
    ids = np.concatenate([p.ids for p in parts])
    assert len(ids) == len(set(ids)) == 569 and all(len(p.features) == 30 for p in parts)
    shares = [float(p.y.mean()) for p in parts]
    assert shares == sorted(shares) and shares[-1] - shares[0] > 0.2  # label-skewed


@pytest.mark.slow
def test_run_with_three_client_processes_completes_attested_and_matches_the_reference(tmp_path, shard_dir) -> None:
    out = tmp_path / "run"
    sets = [*_data_sets(shard_dir), f"chain.state={tmp_path / 'chain'}", "paillier.key_bits=1024", "paillier.insecure_test_keys=true",
            "hfl.rounds=3", "transport.connect_timeout=30.0"]
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(CONFIG), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "6 of 6" in res.stdout  # rounds attested on chain (the launcher reads the contract)
    roles = ["coordinator", "client1", "client2", "client3"]
    jobs = {r: json.loads((out / r / "job.json").read_text()) for r in roles}
    assert all(j["status"] == "complete" for j in jobs.values())
    assert len({j["job_id"] for j in jobs.values()}) == 1
    assert len({j["account"] for j in jobs.values()}) == 4  # four separate chain accounts
    pids = json.loads((out / "logs" / "processes.json").read_text())
    assert len({pids[r] for r in roles}) == 4  # four separate processes
    # every party posted the same transcript digest each round (checked on chain by the contract)
    digests = {r: [json.loads(x)["transcript_digest"] for x in (out / r / "rounds.jsonl").read_text().splitlines()]
               for r in roles}
    assert len({tuple(d) for d in digests.values()}) == 1 and len(digests["coordinator"]) == 6
    # the clients' DP noise is secret: replaying the job (seed included) in the reproducible simulation mode
    # does not give their model (equality with the reference without DP: test_hfl_protocol)
    shards = []
    for k in (1, 2, 3):
        d = load_party_csv(shard_dir / f"client{k}.csv", "guest")
        shards.append((d.X, d.y))
    opts = HflOptions(rounds=3, batch_size=64, clip=0.5, dp="gaussian", epsilon=0.5)
    replay = run_federation(shards, opts, seed=42, reproducible=True)
    model = json.loads((out / "client3" / "model.json").read_text())
    assert np.abs(np.array(model["weights"] + [model["intercept"]]) - replay.models[-1]).max() > 1e-3
    privacy = [json.loads(x) for x in (out / "client1" / "privacy.jsonl").read_text().splitlines()]
    assert [p["global_round"] for p in privacy] == [1, 2, 3]
    assert privacy[-1]["epsilon_spent"] == pytest.approx(0.5)
    assert [p["epsilon_spent"] for p in privacy] == [epsilon_after("gaussian", p["sampling_rate"], p["noise_multiplier"],
                                                                   p["steps"], 1e-5) for p in privacy]
    summary = json.loads((out / "client1" / "privacy.json").read_text())
    assert summary["randomness"].startswith("secret") and summary["accountant"] == "dp_accounting RDP"
    assert (out / "coordinator" / "plots" / "accuracy_vs_round.png").is_file()
    assert not (out / "coordinator" / "model.json").exists()  # the coordinator never holds the model


def test_sweep_over_rounds_and_epsilon_writes_one_csv_and_plots(tmp_path, shard_dir) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--config", str(CONFIG), "--out", str(out), "--grid", "rounds=2,4",
            "--grid", "epsilon=0.5,inf", "--grid", "aggregation=fedavg,fedprox", "--seeds", "2"]
    for s in _data_sets(shard_dir):
        args += ["--set", s]
    assert cli(args) == 0
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    points = {(r["rounds"], r["epsilon"], r["aggregation"]) for r in rows}
    assert len(points) == 8 and {r["seed"] for r in rows} == {"42", "43"}
    assert len(rows) == 2 * 2 * 2 * (3 + 5)  # (aggregation x epsilon x seeds) x (rounds + 1) rows
    assert {r["dp"] for r in rows if r["epsilon"] == "inf"} == {"off"}
    final = [r for r in rows if r["rounds"] == "4" and r["round"] == "4" and r["epsilon"] == "0.5"]
    assert all(float(r["epsilon_spent"]) == pytest.approx(0.5) for r in final)
    assert (out / "summary.csv").read_text().count("\n") == 8 + 2  # header, 8 points, centralized
    assert {p.name for p in (out / "plots").iterdir()} == {"accuracy_vs_round_fedavg.png",
                                                            "accuracy_vs_round_fedprox.png"}
    assert {r["dp_randomness"] for r in rows} == {"secret", "no DP"}


def test_reproducible_sweep_repeats_and_labels_itself_not_private(tmp_path, shard_dir, capsys) -> None:
    results = []
    for run in ("a", "b"):
        args = ["sweep", "--config", str(CONFIG), "--out", str(tmp_path / run), "--grid", "rounds=2",
                "--seeds", "1", "--reproducible"]
        for s in _data_sets(shard_dir):
            args += ["--set", s]
        assert cli(args) == 0
        results.append((tmp_path / run / "results.csv").read_text())
    assert results[0] == results[1]  # same seed, same DP noise: only in this mode
    rows = list(csv.DictReader(io.StringIO(results[0])))
    assert {r["dp_randomness"] for r in rows} == {"reproducible from the job seed: NOT private"}
    assert "NOT private" in (tmp_path / "a" / "summary.csv").read_text()
    assert "NOT private" in capsys.readouterr().out


def test_sweep_names_a_bad_grid_key(tmp_path, shard_dir, capsys) -> None:
    args = ["sweep", "--config", str(CONFIG), "--out", str(tmp_path), "--grid", "epochs=1,2"]
    for s in _data_sets(shard_dir):
        args += ["--set", s]
    assert cli(args) == 1
    assert "--grid 'epochs=1,2'" in capsys.readouterr().err


def test_a_federation_list_of_the_wrong_length_is_a_one_line_config_error(capsys) -> None:
    assert cli(["sweep", "--config", str(CONFIG), "--out", "/nonexistent", "--set", 'federation.data=["a.csv"]']) == 1
    assert "[federation] data lists 1 entries, [hfl] clients is 3" in capsys.readouterr().err


def test_node_refuses_a_role_the_horizontal_job_does_not_have(tmp_path, shard_dir, capsys) -> None:
    args = ["node", "--config", str(CONFIG), "--role", "client4", "--out", str(tmp_path / "n")]
    for s in _data_sets(shard_dir):
        args += ["--set", s]
    assert cli(args) == 1
    assert "unknown role 'client4' for a horizontal job with 3 clients" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()


def test_run_with_a_missing_client_shard_fails_in_one_line_before_anything_starts(tmp_path, shard_dir, capsys) -> None:
    data = [json.dumps(str(shard_dir / "client1.csv")), json.dumps(str(tmp_path / "gone.csv")),
            json.dumps(str(shard_dir / "client3.csv"))]
    out = tmp_path / "run"
    args = ["run", "--config", str(CONFIG), "--out", str(out), "--set", f"federation.data=[{', '.join(data)}]",
            "--set", f"chain.state={tmp_path / 'chain'}"]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "client2:" in err and "gone.csv: no such file" in err
    assert not out.exists() and not (tmp_path / "chain").exists()  # no run directory, no chain started
