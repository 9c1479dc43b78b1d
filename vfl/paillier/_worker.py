"""A Paillier worker process: `python -m vfl.paillier._worker`.

Reads frames (kernel name, arguments) from stdin, runs the kernel, writes the
result frame to stdout; exits at end of input, i.e. when its party's process
goes away. Messages use the raw byte format of `_ipc` (no pickle). The worker
keeps per-key tables between requests (`_kernels` caches).
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    # Replies go to a private copy of fd 1; anything else printed goes to stderr.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    from vfl.paillier import _ipc, _kernels

    stdin = sys.stdin.buffer
    while True:
        frame = _ipc.read_frame(stdin)
        if frame is None:
            return 0
        try:
            kernel, args = _ipc.decode(frame)
            reply = ("ok", _kernels.run_kernel(kernel, args))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which raises it
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _ipc.write_frame(stdout, _ipc.encode(reply))


if __name__ == "__main__":
    sys.exit(main())
