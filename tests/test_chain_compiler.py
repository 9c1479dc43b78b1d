"""The contract is compiled by real solc 0.8.37 (npm wasm behind contracts/solc), and the
committed artifact is what that compiler makes of the committed source."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from chain.artifact import ARTIFACT_PATH, SOURCE_PATH, load_artifact
from chain.compiler import SOLC_WRAPPER, compile_source, stale_fields
from chain.errors import CompileError


def test_the_committed_artifact_is_current():
    assert stale_fields() == [], "run `python -m chain.compiler` and commit contracts/VflAudit.json"


def test_the_artifact_records_compiler_settings_and_source():
    art = load_artifact()
    assert art["compiler"]["version"].startswith("0.8.37+commit.")
    assert art["settings"]["evmVersion"] == "cancun"
    assert art["sourceSha256"] == hashlib.sha256(SOURCE_PATH.read_bytes()).hexdigest()
    assert art["bytecode"].startswith("0x60") and len(art["deployedBytecode"]) > 1000
    names = {e["name"] for e in art["abi"] if e["type"] == "event"}
    assert {"RoundSubmitted", "RoundAttested", "RoundDisputed", "SessionClosed"} <= names
    assert json.loads(ARTIFACT_PATH.read_text()) == art


def test_the_solc_wrapper_answers_like_native_solc():
    out = subprocess.run([str(SOLC_WRAPPER), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1].startswith("Version: 0.8.37+commit.")
    bad = subprocess.run([str(SOLC_WRAPPER), "--bin"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unrecognised option '--bin'" in bad.stderr


def test_a_compile_error_names_file_line_and_column():
    source = "pragma solidity 0.8.37;\ncontract VflAudit {\n    function f() public { uint x = ; }\n}\n"
    with pytest.raises(CompileError) as info:
        compile_source(source)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("VflAudit.sol:3:36: ParserError:"), message
