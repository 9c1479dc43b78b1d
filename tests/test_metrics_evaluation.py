"""The evaluation FATE users expect (vfl.metrics): confusion matrix, precision-recall, average precision,
lift and gain, checked against scikit-learn and against counts by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_curve as sk_precision_recall_curve

from vfl.errors import DataError
from vfl.metrics import (
    PR_CURVE_POINTS,
    average_precision,
    confusion_matrix,
    evaluation,
    lift_gain,
    precision_recall_curve,
)


def _scores(n: int = 400, seed: int = 3, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    p = rng.random(n) * 0.6 + 0.35 * y
    return y, (np.round(p, 2) if ties else p)


@pytest.mark.parametrize("ties", [True, False])
def test_precision_recall_curve_and_average_precision_equal_scikit_learn(ties):
    y, p = _scores(ties=ties)
    precision, recall, thresholds = precision_recall_curve(y, p)
    sk_p, sk_r, sk_t = sk_precision_recall_curve(y, p)
    np.testing.assert_allclose(precision, sk_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall, sk_r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(thresholds, sk_t, rtol=0, atol=0)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.0, 1.0])
def test_confusion_matrix_equals_scikit_learn_at_the_threshold(threshold):
    y, p = _scores()
    m = confusion_matrix(y, p, threshold)
    expected = sk_confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    assert m["matrix"] == expected.tolist()
    assert [[m["tn"], m["fp"]], [m["fn"], m["tp"]]] == expected.tolist() and m["threshold"] == threshold


def test_lift_and_gain_by_decile_count_positives_in_score_order():
    y = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([.9, .8, .85, .1, .2, .3, .4, .7, .05, .6, .5, .15])
    rows = lift_gain(y, p, groups=4)  # 12 rows: 3 per group; order .9 .85 .8 | .7 .6 .5 | .4 .3 .2 | .15 .1 .05
    assert [r["rows"] for r in rows] == [3, 3, 3, 3]
    assert [r["positives"] for r in rows] == [2, 1, 0, 1]
    assert [r["cumulative_positives"] for r in rows] == [2, 3, 3, 4]
    assert [r["gain"] for r in rows] == pytest.approx([0.5, 0.75, 0.75, 1.0])
    overall = 4 / 12
    assert [r["lift"] for r in rows] == pytest.approx([(2 / 3) / overall, (1 / 3) / overall, 0.0, (1 / 3) / overall])
    assert rows[1]["cumulative_lift"] == pytest.approx((3 / 6) / overall)
    assert rows[0]["score_max"] == .9 and rows[0]["score_min"] == .8


def test_deciles_cover_every_row_and_end_at_full_gain_and_lift_one():
    y, p = _scores(n=403)
    rows = lift_gain(y, p)
    assert len(rows) == 10 and sum(r["rows"] for r in rows) == 403
    assert max(r["rows"] for r in rows) - min(r["rows"] for r in rows) <= 1
    assert rows[-1]["gain"] == pytest.approx(1.0) and rows[-1]["cumulative_lift"] == pytest.approx(1.0)
    assert all(a["score_min"] >= b["score_max"] for a, b in zip(rows, rows[1:], strict=False))
    assert rows[0]["lift"] > 1.5  # the scores are informative


def test_evaluation_thins_the_stored_curve_but_not_the_average_precision():
    y, p = _scores(n=3000, ties=False)
    out = evaluation(y, p)
    curve = out["pr_curve"]
    assert curve["points"] == len(curve["recall"]) <= PR_CURVE_POINTS and curve["of"] == 3001
    assert curve["recall"][0] == 0.0 and curve["recall"][-1] == 1.0
    assert out["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert out["confusion_matrix"]["threshold"] == 0.5


def test_one_class_labels_give_no_average_precision_and_bad_input_is_refused():
    assert np.isnan(average_precision(np.zeros(5, int), np.linspace(0, 1, 5)))
    assert "pr_curve" not in evaluation(np.zeros(5, int), np.linspace(0, 1, 5))
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        confusion_matrix(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(DataError, match="at least 1 group"):
        lift_gain(np.array([0, 1]), np.array([0.1, 0.2]), groups=0)
