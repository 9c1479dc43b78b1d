"""Starting, finding and stopping a chain node process (the embedded server, anvil).

Standard library only, so that a launcher can start the embedded chain's server
before its own heavy imports (web3, eth-account) and let the two run side by side:
`spawn_server` starts the process, `wait_server` waits until it answers
(`start_server` does both). The server itself is `chain.embedded`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from chain.errors import ChainUnavailable

SERVER_FILE = "server.json"
LOG_FILE = "server.log"


class ServerInfo(TypedDict):
    url: str
    pid: int
    chain_id: int
    state: str


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the node and wait up to `timeout` s for it to save its state and exit; SIGKILL after."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _read_server_file(state_dir: Path) -> ServerInfo | None:
    try:
        return json.loads((Path(state_dir) / SERVER_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(url: str, timeout: float = 2.0) -> int | None:
    """The chain id a JSON-RPC URL answers with, or None."""
    import urllib.error
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(json.loads(resp.read())["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return None


def running_server(state_dir: str | Path) -> ServerInfo | None:
    """The server currently serving `state_dir`, if one is alive and answering."""
    info = _read_server_file(Path(state_dir))
    if info is None or not _pid_alive(int(info.get("pid", 0))):
        return None
    return info if _answers(info["url"]) is not None else None


@dataclass
class ServerHandle:
    """A running embedded chain server; `stop()` ends it if this handle started it."""

    url: str
    pid: int
    state_dir: Path
    process: subprocess.Popen | None = None

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class StartingServer:
    """An embedded chain server process just started by `spawn_server`, maybe not answering yet."""

    process: subprocess.Popen
    state_dir: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def wait(self, timeout: float = 120.0, poll: float = 0.02) -> ServerHandle:
        """Return once the server answers; ChainUnavailable (and the process stopped) if it exits
        or does not answer within `timeout` s."""
        proc, state = self.process, self.state_dir
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise ChainUnavailable(f"the embedded chain server for {state} exited ({proc.returncode}): "
                                       f"{tail[0]}")
            info = _read_server_file(state)
            if info and info.get("pid") == proc.pid and _answers(info["url"]) is not None:
                return ServerHandle(info["url"], proc.pid, state, proc)
            time.sleep(poll)
        stop_process(proc, 10)
        raise ChainUnavailable(f"the embedded chain server for {state} did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.process, timeout)


def spawn_server(state_dir: str | Path, port: int = 0, log_file: str | Path | None = None) -> StartingServer:
    """Start `python -m chain.embedded --state DIR` and return at once (`.wait()` until it answers).

    The server runs in its own session, so a Ctrl-C meant for the caller does not reach it: the
    caller stops it (and the server saves its state) through the handle. Its output goes to
    `log_file` (default: server.log in the state directory)."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_file) if log_file is not None else state / LOG_FILE
    src_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = src_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "chain.embedded", "--state", str(state),
                                 "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    return StartingServer(proc, state, log_path)


def start_server(state_dir: str | Path, port: int = 0, timeout: float = 120.0,
                 log_file: str | Path | None = None) -> ServerHandle:
    """Start `python -m chain.embedded --state DIR` and return once it answers (see `spawn_server`)."""
    return spawn_server(state_dir, port, log_file).wait(timeout)


def ensure_server(state_dir: str | Path) -> ServerHandle:
    """The running server of `state_dir` (not owned: stop() leaves it), else a new one."""
    info = running_server(state_dir)
    if info is None:
        try:
            return start_server(state_dir)
        except ChainUnavailable:
            # another process may have started it at the same moment: use that one
            deadline = time.monotonic() + 60
            while (info := running_server(state_dir)) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if info is None:
                raise
    return ServerHandle(info["url"], int(info["pid"]), Path(state_dir).resolve(), None)
