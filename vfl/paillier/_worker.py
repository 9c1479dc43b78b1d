"""A Paillier worker process: `python -m vfl.paillier._worker`.

Reads frames (kernel name, arguments) from stdin, runs the kernel, writes the
result frame to stdout; exits at end of input, i.e. when its party's process
goes away. Messages use the raw byte format of `_ipc` (no pickle). The worker
keeps per-key tables between requests (`_kernels` caches).

A worker whose party is gone (killed: its pipes closed) exits silently: it shares
the party's error output, where a traceback of its own would read as the cause of
the party's death.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the party's to handle; the worker ends with its input
    # Replies go to a private copy of fd 1; anything else printed goes to stderr.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    from vfl.paillier import _ipc, _kernels

    stdin = sys.stdin.buffer
    while True:
        try:
            frame = _ipc.read_frame(stdin)
        except (OSError, EOFError):  # the party died in the middle of a request
            frame = None
        if frame is None:
            return 0
        try:
            kernel, args = _ipc.decode(frame)
            reply = ("ok", _kernels.run_kernel(kernel, args))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which raises it
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            _ipc.write_frame(stdout, _ipc.encode(reply))
        except OSError:  # BrokenPipeError: the party is gone, nobody wants the answer
            os._exit(0)  # not sys.exit: flushing the dead pipe at exit would print a traceback


if __name__ == "__main__":
    sys.exit(main())
