"""A party's run directory (DESIGN.md, "Run directory").

Files are written atomically (temporary file + rename). `job.json` starts as
`"status": "running"` and only `finish()` marks it `"complete"`; `fail()`
marks it `"failed"` with the error, so a half-written directory never looks
complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def dumps_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n").encode()


class RunDir:
    """One party's output directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.file(name)
        atomic_write(p, dumps_json(obj))
        return p

    def write_text(self, name: str, text: str) -> Path:
        p = self.file(name)
        atomic_write(p, text.encode("utf-8"))
        return p

    def append_jsonl(self, name: str, obj: Any) -> None:
        p = self.file(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj, sort_keys=True) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text(encoding="utf-8"))

    def plot_path(self, name: str) -> Path:
        p = self.path / "plots" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p
