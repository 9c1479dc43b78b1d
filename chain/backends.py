"""Reaching a chain: a JSON-RPC URL, or an embedded chain's state directory.

Every path gives a `web3.Web3`, and the client code above it is the same:
- `connect(url)`: any JSON-RPC node (the embedded chain's server, anvil, geth, Besu);
  with `retry_seconds`, a refused, reset or cut connection or a timeout is retried with
  backoff for that long (a chain restarting), then raises ChainUnavailable.
- `connect_state(state_dir)`: an embedded chain loaded in-process, read-only (an
  auditor when no server is running).
- `memory_chain()`: a fresh embedded chain in memory (tests and benchmarks).
- `open_chain(url, state_dir)`: what a `[chain]` config section means.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from eth_utils import keccak
from web3 import HTTPProvider, Web3
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from chain.embedded import EmbeddedChain, running_server
from chain.errors import ChainUnavailable


class EmbeddedProvider(JSONBaseProvider):
    """A web3 provider answering from an in-process `EmbeddedChain`.

    Requests and answers go through JSON text, so the in-process path sees exactly
    what a client of the HTTP server sees.
    """

    def __init__(self, chain: EmbeddedChain) -> None:
        super().__init__()
        self.chain = chain
        self._next_id = 0

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        self._next_id += 1
        request = json.loads(json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                                         "params": list(params or [])}, default=_jsonable))
        return json.loads(json.dumps(self.chain.handle(request)))

    def make_batch_request(self, requests: list[tuple[RPCEndpoint, Any]]) -> list[RPCResponse] | RPCResponse:
        """A JSON-RPC batch, answered in order (`Web3.batch_requests`)."""
        batch = []
        for method, params in requests:
            self._next_id += 1
            batch.append({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params or [])})
        return json.loads(json.dumps(self.chain.handle(json.loads(json.dumps(batch, default=_jsonable)))))

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if hasattr(value, "hex") and callable(value.hex):
        h = value.hex()
        return h if h.startswith("0x") else "0x" + h
    raise TypeError(f"cannot send {type(value).__name__} over JSON-RPC")


log = logging.getLogger("chain")
# refused, reset, dropped (also mid-answer), timed out
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0


class RetryingHTTPProvider(HTTPProvider):
    """An HTTP JSON-RPC provider that rides out a chain restarting: a refused or reset
    connection or a timeout is retried with exponential backoff for `retry_seconds`, then
    raises ChainUnavailable (one line, not a raw requests error).

    A raw transaction resent after a lost answer may already be in the chain: "already
    known" (or, after a retry, "nonce too low") then answers with its hash, so the caller
    waits for its receipt instead of failing."""

    def __init__(self, url: str, timeout: float = 60.0, retry_seconds: float = 0.0) -> None:
        super().__init__(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.retry_seconds = float(retry_seconds)

    def _retrying(self, what: str, call: Callable[[], Any]) -> tuple[Any, bool]:
        """call()'s answer, and whether it took more than one attempt."""
        deadline = time.monotonic() + self.retry_seconds
        delay, attempt = BACKOFF_FIRST_S, 0
        while True:
            attempt += 1
            try:
                return call(), attempt > 1
            except TRANSIENT as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    waited = f" for {self.retry_seconds:g} s" if self.retry_seconds else ""
                    raise ChainUnavailable(f"the chain at {self.endpoint_uri} did not answer {what}{waited} "
                                           f"({type(exc).__name__})") from exc
                if attempt == 1:
                    log.warning("chain at %s: %s on %s; retrying for up to %g s", self.endpoint_uri,
                                type(exc).__name__, what, self.retry_seconds)
                time.sleep(min(delay, left))
                delay = min(2 * delay, BACKOFF_MAX_S)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer, retried = self._retrying(str(method), lambda: super(RetryingHTTPProvider, self).make_request(
            method, params))
        if method == "eth_sendRawTransaction" and isinstance(answer, dict) and answer.get("error"):
            msg = str(answer["error"].get("message", "")).lower()
            if "already known" in msg or (retried and "nonce too low" in msg):
                raw = params[0]
                raw = bytes.fromhex(raw.removeprefix("0x")) if isinstance(raw, str) else bytes(raw)
                return {"jsonrpc": "2.0", "id": answer.get("id"), "result": "0x" + keccak(raw).hex()}  # type: ignore[typeddict-item]
        return answer

    def make_batch_request(self, requests: Any) -> Any:  # noqa: A002 - web3's name
        answer, _ = self._retrying("a batch", lambda: super(RetryingHTTPProvider, self).make_batch_request(
            requests))
        return answer


def connect(url: str, timeout: float = 60.0, retry_seconds: float = 0.0) -> Web3:
    """A Web3 on the JSON-RPC node at `url`; ChainUnavailable if it does not answer (within
    `retry_seconds`, for this first request and every later one: `RetryingHTTPProvider`)."""
    if not url.startswith(("http://", "https://")):
        raise ChainUnavailable(f"chain URL must start with http:// or https://, got {url!r}")
    w3 = Web3(RetryingHTTPProvider(url, timeout, retry_seconds))
    try:
        w3.eth.chain_id  # noqa: B018 - one round trip proves the node answers
    except Exception as exc:  # requests/web3 raise many types for "nothing there"
        raise ChainUnavailable(f"no JSON-RPC node answers at {url} ({type(exc).__name__})") from exc
    return w3


def connect_state(state_dir: str | Path) -> Web3:
    """The embedded chain of `state_dir`, loaded in-process read-only (no server needed)."""
    return Web3(EmbeddedProvider(EmbeddedChain(Path(state_dir), read_only=True)))


def memory_chain() -> Web3:
    """A fresh, writable embedded chain that lives in this process only."""
    return Web3(EmbeddedProvider(EmbeddedChain(None)))


def open_chain(url: str = "", state_dir: str | Path = "", write: bool = False,
               retry_seconds: float = 0.0) -> Web3:
    """What a `[chain]` section means: `url` if given; else the server of `state_dir` if one
    runs; else `state_dir` in-process (read-only, or with `write` locked for writing
    until `close(w3)`, e.g. to deploy without a server). `retry_seconds`: see `connect`."""
    if url:
        return connect(url, retry_seconds=retry_seconds)
    if not state_dir:
        raise ChainUnavailable("no chain: give a JSON-RPC URL or an embedded chain state directory")
    info = running_server(state_dir)
    if info is not None:
        return connect(info["url"], retry_seconds=retry_seconds)
    if write:
        return Web3(EmbeddedProvider(EmbeddedChain(Path(state_dir))))
    return connect_state(state_dir)


def close(w3: Web3) -> None:
    """Release an in-process embedded chain (writes its snapshot, frees its lock)."""
    provider = w3.provider
    if isinstance(provider, EmbeddedProvider):
        provider.chain.close()
