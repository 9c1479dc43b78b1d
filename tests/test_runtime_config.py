"""Config keys of the runtime and the node command's argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.cli import main
from nodes.config import load_config
from nodes.errors import ConfigError
from nodes.launch import _check_bindable
from nodes.transport.tls import is_loopback, split_host_port


def test_set_keeps_hex_addresses_as_text() -> None:
    cfg = load_config(None, ["chain.contract=0x5FbDB2315678afecb367f032d93F642f64180aa3", "job.id=123",
                             "lr.epochs=3"])
    assert cfg.chain.contract == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert cfg.job.id == "123" and cfg.lr.epochs == 3


def test_per_party_tls_files_resolve_against_the_config(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text('[host]\ncert = "certs/h.crt"\nkey = "certs/h.key"\nca = "certs/ca.crt"\n')
    cfg = load_config(tmp_path / "job.toml")
    assert cfg.host.cert == str(tmp_path / "certs" / "h.crt") and cfg.host.ca == str(tmp_path / "certs" / "ca.crt")


def test_job_definition_leaves_out_each_partys_own_settings() -> None:
    d = load_config(None).job_definition()
    assert not {"guest", "host", "chain", "transport", "compute"} & set(d)
    assert "id" not in d["job"] and "warm_start" not in d["lr"]
    assert d["job"]["algorithm"] == "lr" and d["paillier"]["key_bits"] == 2048


def test_addresses_parse_and_loopback_is_recognised() -> None:
    assert split_host_port("[::1]:50051") == ("::1", 50051)
    assert is_loopback("localhost:1") and is_loopback("127.0.0.2:1") and not is_loopback("10.0.0.1:1")
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        split_host_port("nohost")


def test_a_port_in_use_is_refused_before_anything_starts() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"\[guest\] address 127.0.0.1:{port} cannot be used"):
            _check_bindable("guest", f"127.0.0.1:{port}")


def test_node_without_a_run_directory_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "job.toml").write_text("[job]\nalgorithm = \"psi\"\n")
    assert main(["node", "--config", str(tmp_path / "job.toml"), "--role", "host"]) == 1
    assert capsys.readouterr().err.strip() == \
        "vflchain: error: no run directory: pass --out or set [host] out in the config"


def test_paths_given_with_set_are_relative_to_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "job.toml").write_text('[guest]\ndata = "g.csv"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "cfg" / "job.toml", ["host.data=data/h.csv"])
    assert cfg.guest.data == str(tmp_path / "cfg" / "g.csv")
    assert cfg.host.data == str(tmp_path / "data" / "h.csv")
