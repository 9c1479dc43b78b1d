"""Starting, finding and stopping a chain node process (the embedded server, anvil).

Standard library only, so that a launcher can start the embedded chain's server
before its own heavy imports (web3, eth-account) and let the two run side by side:
`spawn_server` starts the process, `wait_server` waits until it answers
(`start_server` does both). The server itself is `chain.embedded`.

Sharing one state directory between jobs (`share_server`): each user holds a lease
file in `users/` (its PID and the process's start time, so a SIGKILLed user's lease
is recognised as stale), and starting, attaching to and stopping the server happen
under the flock of `users.lock`. A server started this way is recorded in
`shared.json`; the last user to release its lease stops it. A server started by
hand (`vflchain chain serve`) is only attached to, never stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypedDict

from chain.errors import ChainUnavailable

SERVER_FILE = "server.json"
LOG_FILE = "server.log"
USERS_DIR = "users"  # one lease file per process using the chain (share_server)
USERS_LOCK = "users.lock"  # held while starting, attaching to or stopping a shared server
SHARED_FILE = "shared.json"  # {"pid"}: the server share_server started; its last user stops it
_SPAWNED: dict[int, subprocess.Popen] = {}  # shared servers this process started: it reaps them


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


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None (no /proc, no process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused PID apart), or None."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")  # a zombie has exited: only its parent has not reaped it


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


# -- one server shared by several jobs -----------------------------------------------


@contextlib.contextmanager
def _users_lock(state: Path, timeout: float = 180.0) -> Any:
    """Hold `users.lock` (blocking up to `timeout` s: someone may be starting the server)."""
    fh = _open_users_lock(state)
    try:
        _flock(fh, state, timeout)
        yield
    finally:
        fh.close()


def _open_users_lock(state: Path) -> IO[str]:
    state.mkdir(parents=True, exist_ok=True)
    return (state / USERS_LOCK).open("a+")


def _flock(fh: IO[str], state: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                fh.close()
                raise ChainUnavailable(f"{state}: another process held {USERS_LOCK} for {timeout:.0f} s "
                                       "(starting or stopping the chain)") from None
            time.sleep(0.05)


def live_leases(state_dir: str | Path) -> list[int]:
    """PIDs of the processes holding a lease on the shared server of `state_dir`; stale leases
    (their process is gone, or its PID now belongs to another process) are deleted."""
    users = Path(state_dir) / USERS_DIR
    pids = []
    for path in sorted(users.glob("*.json")) if users.is_dir() else []:
        try:
            lease = json.loads(path.read_text())
            pid, started = int(lease["pid"]), lease.get("start")
        except (OSError, ValueError, KeyError, TypeError):
            lease, pid, started = None, 0, None
        if lease is not None and _pid_alive(pid) and (started is None or started == _start_time(pid)):
            pids.append(pid)
        else:
            path.unlink(missing_ok=True)
    return pids


class ChainLease:
    """This process's use of the embedded chain of a state directory (see the module docstring).

    Written before the server is looked for, so a user stopping the server under the lock
    either sees this lease or has stopped the server before this process looks for it."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        users = self.state_dir / USERS_DIR
        users.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        self.path = users / f"{pid}-{secrets.token_hex(4)}.json"
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "start": _start_time(pid)}) + "\n")
        tmp.replace(self.path)
        self.released = False

    def release(self, timeout: float = 20.0) -> bool:
        """Drop the lease; if no live lease is left, stop the server `share_server` started
        (SIGTERM: it saves its state; SIGKILL after `timeout` s). True if it stopped it."""
        if self.released:
            return False
        self.released = True
        with _users_lock(self.state_dir):
            self.path.unlink(missing_ok=True)
            stopped = False if live_leases(self.state_dir) else _stop_shared(self.state_dir, timeout)
        for proc in _SPAWNED.values():  # reap a server of ours another user stopped (no zombie left)
            proc.poll()
        return stopped


def _stop_shared(state: Path, timeout: float) -> bool:
    """Stop the server recorded in shared.json if it still runs (caller holds users.lock)."""
    try:
        pid = int(json.loads((state / SHARED_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    (state / SHARED_FILE).unlink(missing_ok=True)
    if not _pid_alive(pid):
        return False
    if pid in _SPAWNED:  # our own child: stop it and reap it
        stop_process(_SPAWNED[pid], timeout)
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    return True


class SharedStart:
    """The server of a state directory, being started or attached to by `share_server`:
    `wait()` gives its handle once it answers (starting it if no one else has)."""

    def __init__(self, state: Path, log_file: Path | None, lock: IO[str] | None = None,
                 starting: StartingServer | None = None) -> None:
        self.state, self.log_file = state, log_file
        self._lock, self._starting = lock, starting

    @property
    def pid(self) -> int | None:
        return self._starting.pid if self._starting is not None else None

    def wait(self, timeout: float = 120.0) -> ServerHandle:
        try:
            if self._lock is None:  # another process is starting (or stopping) it: wait for it
                self._lock = _open_users_lock(self.state)
                _flock(self._lock, self.state, timeout + 60)
                info = running_server(self.state)
                if info is not None:
                    return ServerHandle(info["url"], int(info["pid"]), self.state, None)
                self._starting = _spawn_shared(self.state, self.log_file)
            assert self._starting is not None
            return self._starting.wait(timeout)
        finally:
            self._unlock()

    def stop(self) -> None:
        """Stop a server this process was starting (it failed to answer, or we were interrupted)."""
        if self._starting is not None:
            self._starting.stop()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _spawn_shared(state: Path, log_file: Path | None) -> StartingServer:
    starting = spawn_server(state, log_file=log_file)
    _SPAWNED[starting.pid] = starting.process
    tmp = state / (SHARED_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": starting.pid}) + "\n")
    tmp.replace(state / SHARED_FILE)
    return starting


def share_server(state_dir: str | Path, log_file: str | Path | None = None
                 ) -> tuple[ChainLease, str, SharedStart | None]:
    """Use the embedded chain of `state_dir` together with any other job: (this process's lease,
    the server's URL if one answers now, else a `SharedStart` to `wait()` for). Returns at once:
    if no server runs and no one is starting one, this process starts it (holding users.lock until
    it answers). Call `lease.release()` when done: the last user stops a server started this way."""
    state = Path(state_dir).resolve()
    lease = ChainLease(state)
    log = Path(log_file) if log_file is not None else None
    fh = _open_users_lock(state)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return lease, "", SharedStart(state, log)
    try:
        info = running_server(state)
        if info is not None:
            fh.close()
            return lease, info["url"], None
        return lease, "", SharedStart(state, log, fh, _spawn_shared(state, log))
    except BaseException:
        fh.close()
        lease.release()
        raise
