"""Every data validation error names the file, line and column, in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nodes.datafiles import load_party_csv, write_party_csv
from vfl.data import check_binary_labels
from vfl.errors import DataError


def write(tmp_path: Path, text: str, name: str = "party.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def load_error(tmp_path: Path, text: str, role: str = "guest") -> str:
    with pytest.raises(DataError) as exc:
        load_party_csv(write(tmp_path, text), role)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_valid_guest_file_loads_ids_labels_and_features(tmp_path):
    data = load_party_csv(write(tmp_path, "id,y,a,b\n7,1,0.5,-1\nx9,0,2,3e-2\n"), "guest")
    assert data.ids.tolist() == ["7", "x9"]
    assert data.y.tolist() == [1, 0]
    assert data.features == ["a", "b"]
    np.testing.assert_array_equal(data.X, [[0.5, -1.0], [2.0, 0.03]])


def test_valid_host_file_has_no_labels(tmp_path):
    data = load_party_csv(write(tmp_path, "id,a\n1,0.5\n2,1.5\n"), "host")
    assert data.y is None and data.features == ["a"]


def test_missing_id_names_line_and_column(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,0.1\n,1,0.2\n")
    assert "line 3" in msg and "'id'" in msg and "missing ID" in msg


def test_duplicate_id_names_both_lines(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,0.1\n2,1,0.2\n1,1,0.3\n")
    assert "line 4" in msg and "duplicate ID '1'" in msg and "first on line 2" in msg


def test_nan_feature_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a,b\n1,0,0.1,nan\n")
    assert "line 2" in msg and "'b'" in msg and "NaN" in msg


def test_empty_feature_cell_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,\n")
    assert "line 2" in msg and "'a'" in msg and "empty value" in msg


def test_non_numeric_feature_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,abc\n")
    assert "'abc' is not a number" in msg and "'a'" in msg


def test_infinite_feature_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,inf\n")
    assert "infinite" in msg


@pytest.mark.parametrize("label", ["2", "-1", "0.5", "yes", ""])
def test_labels_outside_zero_one_are_refused(tmp_path, label):
    msg = load_error(tmp_path, f"id,y,a\n1,{label},0.1\n")
    assert "line 2" in msg and "'y'" in msg and "not 0 or 1" in msg


def test_label_column_in_host_file_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,0.1\n", role="host")
    assert "host file has a label column" in msg


def test_guest_file_without_label_column_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,a\n1,0.1\n")
    assert "no label column 'y'" in msg


def test_file_without_id_column_is_refused(tmp_path):
    msg = load_error(tmp_path, "key,y,a\n1,0,0.1\n")
    assert "no 'id' column" in msg


def test_completely_empty_file_is_refused(tmp_path):
    msg = load_error(tmp_path, "")
    assert "empty file" in msg


def test_header_only_file_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n")
    assert "no data rows" in msg


def test_row_with_wrong_field_count_is_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a\n1,0,0.1,9\n")
    assert "line 2" in msg and "4 fields" in msg


def test_duplicate_column_names_are_refused(tmp_path):
    msg = load_error(tmp_path, "id,y,a,a\n1,0,0.1,0.2\n")
    assert "column 'a' appears twice" in msg


def test_host_without_features_is_refused(tmp_path):
    msg = load_error(tmp_path, "id\n1\n", role="host")
    assert "no feature columns" in msg


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_party_csv(tmp_path / "nope.csv", "guest")


def test_single_class_labels_are_refused():
    with pytest.raises(DataError, match="all labels are 1"):
        check_binary_labels(np.ones(10, dtype=np.int8))


def test_write_then_load_round_trips_exactly(tmp_path, breast):
    guest, host = breast
    write_party_csv(guest, tmp_path / "g.csv")
    write_party_csv(host, tmp_path / "h.csv")
    g2 = load_party_csv(tmp_path / "g.csv", "guest")
    h2 = load_party_csv(tmp_path / "h.csv", "host")
    np.testing.assert_array_equal(g2.X, guest.X)
    np.testing.assert_array_equal(h2.X, host.X)
    np.testing.assert_array_equal(g2.y, guest.y)
    assert g2.ids.tolist() == guest.ids.tolist() and g2.features == guest.features


def test_a_guest_file_without_labels_is_accepted_only_when_labels_are_not_required(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("id,a\n1,0.5\n2,1.5\n")
    with pytest.raises(DataError, match="guest file has no label column 'y'"):
        load_party_csv(path, "guest")
    data = load_party_csv(path, "guest", require_labels=False)
    assert data.y is None and data.features == ["a"] and data.n_rows == 2
    labelled = tmp_path / "l.csv"
    labelled.write_text("id,y,a\n1,1,0.5\n2,0,1.5\n")
    assert load_party_csv(labelled, "guest", require_labels=False).y.tolist() == [1, 0]


def test_a_missing_data_path_names_the_config_key():
    with pytest.raises(DataError, match=r"no data file: set \[host\] data in the config"):
        load_party_csv("", "host")


def test_a_table_written_in_blocks_reads_back_exactly(tmp_path, monkeypatch) -> None:
    from nodes import datafiles
    from vfl.datasets import synth_split

    guest, host = synth_split(50, 3, 4, seed=1)
    one = datafiles.write_party_csv(guest, tmp_path / "one.csv").read_text()
    monkeypatch.setattr(datafiles, "WRITE_BLOCK", 7)
    blocks = datafiles.write_party_csv(guest, tmp_path / "blocks.csv")
    assert blocks.read_text() == one
    back = datafiles.load_party_csv(blocks, "guest")
    assert back.ids.tolist() == guest.ids.tolist()
    np.testing.assert_array_equal(back.X, guest.X)
    np.testing.assert_array_equal(back.y, guest.y)
    host_back = datafiles.load_party_csv(datafiles.write_party_csv(host, tmp_path / "h.csv"), "host")
    np.testing.assert_array_equal(host_back.X, host.X)
