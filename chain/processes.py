"""Stopping a chain node this process started (the embedded server, anvil)."""

from __future__ import annotations

import signal
import subprocess


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
