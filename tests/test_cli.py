"""The command line: help everywhere, a version, fixed subcommand names, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodes.cli import main

SUBCOMMANDS = ["run", "node", "audit", "chain", "predict", "data", "demo"]


def test_version_prints_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("vflchain ")


@pytest.mark.parametrize("command", SUBCOMMANDS + ["chain serve", "data breast", "data synth"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    assert exc.value.code == 0
    assert "usage: vflchain" in capsys.readouterr().out


def test_data_breast_writes_both_party_files(tmp_path, capsys):
    assert main(["data", "breast", "--out", str(tmp_path), "--overlap", "0.9"]) == 0
    guest = (tmp_path / "guest.csv").read_text().splitlines()
    host = (tmp_path / "host.csv").read_text().splitlines()
    assert guest[0] == "id,y," + ",".join(f"x{i}" for i in range(10))
    assert host[0] == "id," + ",".join(f"x{i}" for i in range(20))
    assert "IDs in both: 512" in capsys.readouterr().out


def test_data_synth_writes_requested_columns(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path), "--rows", "50",
                 "--guest-features", "2", "--host-features", "3"]) == 0
    assert (tmp_path / "host.csv").read_text().splitlines()[0] == "id,x0,x1,x2"
    assert len((tmp_path / "guest.csv").read_text().splitlines()) == 51


def test_bad_overlap_is_a_one_line_error_with_exit_1(tmp_path, capsys):
    assert main(["data", "breast", "--out", str(tmp_path), "--overlap", "1.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "vflchain: error: overlap must be in (0, 1], got 1.5"


def test_console_script_runs_as_a_separate_process():
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "audit" in out.stdout


def test_run_reaches_its_launcher_without_importing_web3():
    # `vflchain run` starts the chain and the nodes before its own heavy imports (web3, eth-account)
    code = ("import sys; from nodes.cli import build_parser, _command_in; "
            "build_parser(_command_in(['run', '--config', 'x'])); import nodes.launch; "
            "print(sorted(m for m in ('web3', 'eth_account', 'chain.audit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
