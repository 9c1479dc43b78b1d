"""The explorer's chart data, read from a run directory's files: ROC/KS, WoE/IV, GMM clusters, bytes per round."""

from __future__ import annotations

import csv
import json

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from nodes.explorer import runs


def write_predictions(path, rows) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "predict_result", "predict_score", "predict_detail", "type"])
        w.writerows(rows)


def test_roc_and_ks_match_scikit_learn_per_split(tmp_path) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    score = np.clip(0.3 * y + rng.normal(0.4, 0.2, 400), 0, 1).round(3)  # ties included
    split = np.where(np.arange(400) < 300, "train", "validate")
    write_predictions(tmp_path / "predictions.csv",
                      [[i, y[i], int(score[i] > 0.5), score[i], "{}", split[i]] for i in range(400)])
    curves = {c["split"]: c for c in runs.roc_ks(runs._csv(tmp_path / "predictions.csv"))}
    assert set(curves) == {"train", "validate"}
    for name, mask in (("train", split == "train"), ("validate", split == "validate")):
        c = curves[name]
        assert c["n"] == mask.sum() and abs(c["auc"] - roc_auc_score(y[mask], score[mask])) < 1e-4
        fpr, tpr, _ = roc_curve(y[mask], score[mask])
        assert abs(c["ks"] - float(np.max(tpr - fpr))) < 1e-4
        assert len(c["roc"]) <= runs.MAX_POINTS and c["roc"][0] == [0.0, 0.0] and c["roc"][-1] == [1.0, 1.0]


def test_a_split_with_one_class_has_no_curve(tmp_path) -> None:
    write_predictions(tmp_path / "predictions.csv", [[i, 1, 1, 0.9, "{}", "train"] for i in range(5)])
    assert runs.roc_ks(runs._csv(tmp_path / "predictions.csv")) == []


def test_binning_gives_iv_per_feature_ranked_and_woe_per_bin(tmp_path) -> None:
    head = "feature,bin,interval,event_count,event_ratio,non_event_count,non_event_ratio,woe,iv_bin,iv_total\n"
    body = ('a,0,"(-inf, 1.5]",3,0.3,7,0.7,-0.8,0.1,0.2\na,1,"(1.5, inf]",7,0.7,3,0.3,0.8,0.1,0.2\n'
            'host.b,0,"(-inf, inf]",5,0.5,5,0.5,0.0,0.0,0.9\n')
    (tmp_path / "binning.csv").write_text(head + body)
    b = runs.binning(tmp_path)
    assert [f["feature"] for f in b["features"]] == ["host.b", "a"]
    assert [x["woe"] for x in b["features"][1]["bins"]] == [-0.8, 0.8]


def test_communication_sums_bytes_per_round_and_direction(tmp_path) -> None:
    lines = [{"round": 1, "direction": "sent", "size": 10, "phase": "handshake"},
             {"round": 1, "direction": "received", "size": 4, "phase": "handshake"},
             {"round": 2, "direction": "sent", "size": 7, "phase": "lr"}, {"bad": "line"}]
    (tmp_path / "transcript.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    assert runs.communication(tmp_path) == [
        {"round": 1, "sent": 10, "received": 4, "messages": 2, "phase": "handshake"},
        {"round": 2, "sent": 7, "received": 0, "messages": 1, "phase": "lr"}]


def test_gmm_components_and_cluster_sizes(tmp_path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({
        "algorithm": "gmm", "features": ["x0", "x1", "x2"], "covariance": "diag", "weights": [0.25, 0.75],
        "means": [[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]], "covariances": [[1, 1, 1], [1, 1, 1]]}))
    (tmp_path / "job.json").write_text(json.dumps({"algorithm": "gmm"}))
    write_predictions(tmp_path / "predictions.csv", [[i, "", i % 2, 0.5, "{}", "train"] for i in range(5)])
    data = runs.charts([tmp_path])
    assert data["gmm"]["features"] == ["x0", "x1"] and data["roc"] == []
    assert data["gmm"]["components"][1] == {"k": 1, "weight": 0.75, "x": -1.0, "y": -2.0}
    assert data["gmm"]["sizes"] == [{"cluster": "0", "count": 3}, {"cluster": "1", "count": 2}]


def test_a_directory_without_result_files_plots_nothing(tmp_path) -> None:
    data = runs.charts([tmp_path])
    assert data["loss"] == [] and data["roc"] == [] and data["gmm"] is None
    assert data["binning"] == {"features": []} and data["metrics"] == {}
