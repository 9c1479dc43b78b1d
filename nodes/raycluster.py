"""A real multi-node Ray cluster on this machine, for tests and `make bench`.

`LocalRayCluster` starts a head node (`ray start --head --block`) and, on demand,
more nodes (`ray start --address=... --block`), each with its own ports and its
own temp dir, and stops them by the PIDs it started (the `ray start --block`
process and every process under it), never with `ray stop`, which would stop
every Ray of the same user on the machine. A hospital's production cluster is
its own business (docs/deployment.md#compute); the node only connects to it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nodes.errors import NodeError
from nodes.testing import free_port

_ROOT = str(Path(__file__).resolve().parents[1])


def _ray_executable() -> str:
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return str(exe)
    found = shutil.which("ray")
    if not found:
        raise NodeError("the ray command is not installed (pip install 'vflchain[ray]')")
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc: children of each of its threads), recursively."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _session(sid: int) -> list[int]:
    """Processes whose session is `sid` (what a `ray start` started in its own session,
    even after they were re-parented)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            out.append(int(stat.parent.name))
    return out


def _reload_ray_auth() -> None:
    """Make an already imported Ray re-read its token variables (it reads them once)."""
    if "ray" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - reused by another user's process
        return False
    return True


class LocalRayCluster:
    """Ray nodes started and stopped by this object (a context manager)."""

    def __init__(self, cpus_per_node: int = 1, object_store_mb: int = 100) -> None:
        self.cpus_per_node = cpus_per_node
        self.object_store_mb = object_store_mb
        self.port = 0
        self.ip = "127.0.0.1"
        # Ray's token authentication, with a token of this cluster's own (not ~/.ray/auth_token,
        # which other Rays of the same user may share): the driver needs it too (`driver_env`).
        self.token = secrets.token_hex(32)
        self._saved_env: dict[str, str | None] = {}
        self._procs: list[subprocess.Popen] = []
        self._dirs: list[str] = []
        self._seen: dict[int, set[int]] = {}  # ray start PID -> processes seen under it

    @property
    def address(self) -> str:
        """What `vfl.paillier.configure(backend="ray", address=...)` and `[compute] address` take."""
        return f"{self.ip}:{self.port}"

    def __enter__(self) -> LocalRayCluster:
        self.start_head()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _common(self) -> list[str]:
        # Short temp dir: Ray puts Unix sockets in it (108-byte path limit).
        tmp = tempfile.mkdtemp(prefix="vr", dir="/tmp")
        self._dirs.append(tmp)
        ports = [free_port() for _ in range(7)]
        # Worker ports below the kernel's ephemeral range, where free_port's ports come from.
        lo = 10000 + 200 * secrets.randbelow(100)
        return ["--block", "--temp-dir", tmp, "--num-cpus", str(self.cpus_per_node),
                "--object-store-memory", str(self.object_store_mb * 2**20),
                "--node-ip-address", self.ip, "--disable-usage-stats",
                "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
                "--metrics-export-port", str(ports[2]), "--dashboard-agent-listen-port", str(ports[3]),
                "--dashboard-agent-grpc-port", str(ports[4]), "--runtime-env-agent-port", str(ports[5]),
                "--min-worker-port", str(lo), "--max-worker-port", str(lo + 199)]

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token})
        env["VFLCHAIN_WORKERS"] = "1"  # a Ray task runs one kernel call in its own thread
        log = open(Path(self._dirs[-1]) / "ray-start.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([_ray_executable(), "start", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        log.close()
        self._procs.append(proc)
        self._seen[proc.pid] = set()
        return proc

    def driver_env(self) -> None:
        """Set this process's Ray token variables so that `ray.init(address=...)` is admitted
        (restored by `stop`)."""
        for k, v in (("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN", self.token), ("RAY_AUTH_TOKEN_PATH", None)):
            self._saved_env.setdefault(k, os.environ.get(k))
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_ray_auth()

    def start_head(self, timeout: float = 120) -> None:
        """Start the head node and wait until its GCS accepts connections."""
        import ray.util

        # Ray replaces 127.0.0.1 in a cluster address by this machine's address: use that one.
        self.ip = ray.util.get_node_ip_address()
        self.port = free_port()
        proc = self._spawn(["--head", "--port", str(self.port), "--include-dashboard", "false",
                            "--ray-client-server-port", str(free_port()), *self._common()])
        self._wait_started(proc, "ray start --head", timeout)

    def _wait_started(self, proc: subprocess.Popen, what: str, timeout: float) -> None:
        """Wait for `ray start` to say the node is up (it then blocks)."""
        log = Path(self._dirs[-1]) / "ray-start.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeError(f"{what} exited with code {proc.returncode}: {self._last_log_line()}")
            try:
                if "Ray runtime started" in log.read_text(errors="replace"):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise NodeError(f"{what} did not start within {timeout:.0f} s: {self._last_log_line()}")

    def _last_log_line(self) -> str:
        try:
            lines = (Path(self._dirs[-1]) / "ray-start.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no output)"
        errors = [ln for ln in lines if "rror" in ln] or lines or ["(no output)"]
        return errors[-1].strip()

    def add_node(self, timeout: float = 120) -> None:
        """Start one more node joined to the head and wait until it is up."""
        proc = self._spawn(["--address", self.address, *self._common()])
        self._wait_started(proc, "ray start --address", timeout)

    def wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        """Wait until the connected driver (`ray.init(address=...)`) sees `count` live nodes."""
        import ray

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= count:
                return
            for proc in self._procs:
                if proc.poll() is not None:
                    raise NodeError(f"a ray start process exited with code {proc.returncode}")
            time.sleep(0.5)
        raise NodeError(f"the Ray cluster did not reach {count} live nodes within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM each `ray start --block` process (it stops its node), then SIGKILL whatever
        it had started that is still running; only PIDs this object started or saw under them."""
        for proc in reversed(self._procs):
            self._seen[proc.pid].update(descendants(proc.pid), _session(proc.pid))
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for sid, pids in self._seen.items():
            for pid in pids | set(_session(sid)):
                if _alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self._procs.clear()
        self._seen.clear()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._saved_env:
            _reload_ray_auth()
        self._saved_env.clear()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._dirs.clear()
