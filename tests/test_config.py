"""Job configs: TOML plus --set overrides; typos and bad values are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.config import load_config
from nodes.errors import ConfigError


def test_overrides_apply_and_parse_as_toml_values(tmp_path):
    cfg_file = tmp_path / "job.toml"
    cfg_file.write_text('[job]\nalgorithm = "gmm"\n[lr]\nepochs = 3\n')
    cfg = load_config(cfg_file, ["lr.epochs=20", "chain.url=http://127.0.0.1:8545", "gmm.k=4"])
    assert cfg.job.algorithm == "gmm"
    assert cfg.lr.epochs == 20 and cfg.gmm.k == 4
    assert cfg.chain.url == "http://127.0.0.1:8545"


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    cfg_file = tmp_path / "cfg" / "job.toml"
    cfg_file.write_text('[guest]\ndata = "../data/guest.csv"\n')
    cfg = load_config(cfg_file)
    assert Path(cfg.guest.data) == (tmp_path / "data" / "guest.csv").resolve()


def test_transport_capture_is_a_local_path_setting(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    cfg_file = tmp_path / "cfg" / "job.toml"
    cfg_file.write_text('[transport]\ncapture = "../cap"\n')
    cfg = load_config(cfg_file)
    assert Path(cfg.transport.capture) == (tmp_path / "cap").resolve()
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(None, ["transport.capture=wire"]).transport.capture) == (tmp_path / "wire").resolve()
    assert "transport" not in cfg.job_definition() and load_config(None).transport.capture == ""


def test_integer_is_accepted_where_a_float_is_expected():
    assert load_config(None, ["lr.learning_rate=1"]).lr.learning_rate == 1.0


@pytest.mark.parametrize("override, message", [
    ("lr.epoch=3", "[lr] has no key 'epoch'"),
    ("nosuch.k=1", "unknown config section [nosuch]"),
    ("lr.epochs=\"many\"", "[lr] epochs: expected an integer"),
    ("job.algorithm=\"svm\"", "[job] algorithm must be"),
    ("paillier.key_bits=512", "key_bits must be >= 1024"),
    ("lr.epochs", "expected KEY=VALUE"),
    ("chain.retry_seconds=-1", "[chain] retry_seconds must be >= 0"),
    ("chain.session_timeout=0", "[chain] session_timeout must be > 0"),
])
def test_bad_keys_and_values_are_refused(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert message in str(exc.value)


def test_keys_under_2048_bits_are_refused_unless_marked_as_test_keys():
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["paillier.key_bits=1024"])
    assert "[paillier] insecure_test_keys" in str(exc.value) and "\n" not in str(exc.value)
    assert load_config(None, ["paillier.key_bits=1024", "paillier.insecure_test_keys=true"]).paillier.key_bits == 1024
    assert load_config(None, []).paillier.key_bits == 2048
    with pytest.raises(ConfigError, match="key_bits must be >= 1024"):
        load_config(None, ["paillier.key_bits=512", "paillier.insecure_test_keys=true"])


def test_invalid_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[job\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(bad)
