"""Compile the audit contract with solc 0.8.37 and write the committed artifact.

py-solc-x drives the compiler. It cannot download native solc here, so
`contracts/solc` (a node script around the npm `solc` wasm build, answering
`--version` and `--standard-json`) is passed as `solc_binary`.

    python -m chain.compiler           # recompile, write contracts/VflAudit.json
    python -m chain.compiler --check   # exit 1 if the committed artifact is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from chain.artifact import ARTIFACT_PATH, CONTRACT_NAME, CONTRACTS_DIR, SOURCE_PATH, Artifact
from chain.errors import CompileError

SOLC_WRAPPER = CONTRACTS_DIR / "solc"
SOLC_VERSION = "0.8.37"
EVM_VERSION = "cancun"
SETTINGS: dict[str, Any] = {
    "evmVersion": EVM_VERSION,
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "ipfs"},
}
_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]


def _check_toolchain(solc: Path) -> None:
    if shutil.which("node") is None:
        raise CompileError("node (Node.js) is not on PATH; the solc wrapper needs it (`make setup`)")
    if not solc.exists():
        raise CompileError(f"{solc}: the solc wrapper is missing")


def compiler_version(solc: Path = SOLC_WRAPPER) -> str:
    """The compiler's full version, e.g. 0.8.37+commit.f401782d."""
    from solcx.exceptions import SolcError
    from solcx.wrapper import get_solc_version

    _check_toolchain(solc)
    try:
        return str(get_solc_version(solc, with_commit_hash=True))
    except (SolcError, OSError, ValueError) as exc:
        raise CompileError(f"{solc} --version failed: {str(exc).splitlines()[0]}") from exc


def _position(text: str, offset: int) -> tuple[int, int]:
    head = text.encode("utf-8")[: max(offset, 0)].decode("utf-8", errors="replace")
    return head.count("\n") + 1, len(head) - (head.rfind("\n") + 1) + 1


def _describe(errors: list[dict[str, Any]], sources: dict[str, str]) -> str:
    """One line per solc error: file:line:column: Type: message."""
    lines = []
    for err in errors:
        if err.get("severity") != "error":
            continue
        loc = err.get("sourceLocation") or {}
        where = loc.get("file", "")
        if where in sources and "start" in loc:
            line, col = _position(sources[where], int(loc["start"]))
            where = f"{where}:{line}:{col}"
        prefix = f"{where}: " if where else ""
        lines.append(f"{prefix}{err.get('type', 'Error')}: {err.get('message', '').strip()}")
    return "; ".join(lines)


def compile_source(source: str, source_name: str = f"{CONTRACT_NAME}.sol",
                   contract_name: str = CONTRACT_NAME, solc: Path = SOLC_WRAPPER) -> Artifact:
    """Compile Solidity source text to an artifact; raises CompileError with readable messages."""
    import solcx
    from solcx.exceptions import SolcError

    version = compiler_version(solc)
    if not version.startswith(SOLC_VERSION + "+"):
        raise CompileError(f"{solc} is solc {version}; the contract is pinned to {SOLC_VERSION}")
    request = {
        "language": "Solidity",
        "sources": {source_name: {"content": source}},
        "settings": {**SETTINGS, "outputSelection": {"*": {"*": _OUTPUTS}}},
    }
    try:
        out = solcx.compile_standard(request, solc_binary=solc)
    except SolcError as exc:
        if exc.error_dict:
            raise CompileError(_describe(exc.error_dict, {source_name: source})) from exc
        raise CompileError(f"solc failed: {exc.message}; {(exc.stderr_data or '').strip()}") from exc
    except (json.JSONDecodeError, OSError) as exc:
        raise CompileError(f"solc wrapper gave no usable output: {exc}") from exc
    try:
        contract = out["contracts"][source_name][contract_name]
    except KeyError as exc:
        raise CompileError(f"{source_name} defines no contract {contract_name}") from exc
    return {
        "contractName": contract_name,
        "sourceName": source_name,
        "sourceSha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "compiler": {"name": "solc", "version": version},
        "settings": SETTINGS,
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def build(source_path: Path = SOURCE_PATH, solc: Path = SOLC_WRAPPER) -> Artifact:
    return compile_source(source_path.read_text(encoding="utf-8"), source_path.name, solc=solc)


def render(artifact: Artifact) -> str:
    """The artifact's file text (stable key order, so diffs stay readable)."""
    return json.dumps(artifact, indent=1, sort_keys=False) + "\n"


def write(artifact: Artifact, path: Path = ARTIFACT_PATH) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(render(artifact))
    tmp.replace(path)


def stale_fields(committed: Path = ARTIFACT_PATH, source_path: Path = SOURCE_PATH,
                 solc: Path = SOLC_WRAPPER) -> list[str]:
    """Recompile and list the artifact fields that differ from the committed file."""
    fresh = build(source_path, solc)
    try:
        old = json.loads(committed.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return ["<whole file>"]
    return [k for k in fresh if old.get(k) != fresh[k]]  # type: ignore[literal-required]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chain.compiler",
                                 description="Compile contracts/VflAudit.sol into contracts/VflAudit.json.")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the artifact is stale")
    args = ap.parse_args(argv)
    try:
        if args.check:
            stale = stale_fields()
            if stale:
                print(f"{ARTIFACT_PATH}: stale ({', '.join(stale)}); run `python -m chain.compiler`",
                      file=sys.stderr)
                return 1
            print(f"{ARTIFACT_PATH}: current")
            return 0
        artifact = build()
        write(artifact)
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {ARTIFACT_PATH} (solc {artifact['compiler']['version']}, "
          f"{(len(artifact['deployedBytecode']) - 2) // 2} bytes deployed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
