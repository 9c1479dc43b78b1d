"""The committed compiled contract: `contracts/VflAudit.json`.

Using the system needs no compiler: the client and the deploy helper read the
ABI and bytecode from this artifact. `chain.compiler` regenerates it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

from chain.errors import ChainError

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
CONTRACT_NAME = "VflAudit"
SOURCE_PATH = CONTRACTS_DIR / f"{CONTRACT_NAME}.sol"
ARTIFACT_PATH = CONTRACTS_DIR / f"{CONTRACT_NAME}.json"


class Compiler(TypedDict):
    name: str
    version: str


class Artifact(TypedDict):
    contractName: str
    sourceName: str
    sourceSha256: str
    compiler: Compiler
    settings: dict[str, Any]
    abi: list[dict[str, Any]]
    bytecode: str
    deployedBytecode: str


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Artifact:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ChainError(f"{path}: the compiled contract is missing; run `python -m chain.compiler`") from exc
    except json.JSONDecodeError as exc:
        raise ChainError(f"{path}: not valid JSON (line {exc.lineno}); run `python -m chain.compiler`") from exc
    for key in ("abi", "bytecode", "deployedBytecode", "compiler"):
        if key not in data:
            raise ChainError(f"{path}: the artifact has no {key!r}; run `python -m chain.compiler`")
    return data


def load_artifact(path: Path = ARTIFACT_PATH) -> Artifact:
    """The compiled contract (cached until the file changes)."""
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        mtime = 0
    return _load(str(path), mtime)


def abi() -> list[dict[str, Any]]:
    return load_artifact()["abi"]
