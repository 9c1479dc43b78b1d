"""Start a local anvil node (npm `@foundry-rs/anvil`) on 127.0.0.1: a real JSON-RPC node
for tests and benchmarks. Stopped by its process id.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chain.errors import ChainUnavailable
from chain.processes import stop_process

ANVIL = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "anvil"
_LISTENING = re.compile(r"Listening on (\d+\.\d+\.\d+\.\d+:\d+)")


@dataclass
class AnvilHandle:
    url: str
    pid: int
    process: subprocess.Popen

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the node by its pid (the npm wrapper forwards it), then wait."""
        stop_process(self.process, timeout)

    def __enter__(self) -> AnvilHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def available(binary: Path = ANVIL) -> bool:
    return binary.exists()


def start_anvil(binary: Path = ANVIL, timeout: float = 60.0, extra: list[str] | None = None) -> AnvilHandle:
    """Run anvil on a free port of 127.0.0.1 and return once it listens."""
    if not binary.exists():
        raise ChainUnavailable(f"{binary} is missing; run `make setup` (npm @foundry-rs/anvil)")
    proc = subprocess.Popen([str(binary), "--host", "127.0.0.1", "--port", "0", *(extra or [])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True)
    found: list[str] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keep draining, so anvil never blocks on a full pipe
            if not found:
                lines.append(line)
                m = _LISTENING.search(line)
                if m:
                    found.append(m.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not found:
        if proc.poll() is not None:
            raise ChainUnavailable(f"anvil exited ({proc.returncode}): {''.join(lines[-3:]).strip()}")
        time.sleep(0.05)
    if not found:
        proc.kill()
        proc.wait(5)
        raise ChainUnavailable(f"anvil did not start listening within {timeout:.0f} s")
    return AnvilHandle(f"http://{found[0]}", proc.pid, proc)
