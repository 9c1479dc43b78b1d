"""The explorer's Starlette application: pages, JSON endpoints, static files, security headers.

Every endpoint reads; none writes to the chain. Handlers that touch the chain or files are
plain functions (Starlette runs them in its thread pool); the event index serializes its
own reads with a lock. Pages refresh the index first (incremental, throttled), so what
they show is at most `min_interval` seconds old.
"""

from __future__ import annotations

import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_utils import keccak
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chain.audit import (
    AuditUnavailable,
    abort_info,
    load_party_files,
    session_roles,
    summary,
    timeline,
)
from chain.errors import ChainError
from nodes.commands.audit import party_dirs
from nodes.explorer import pages, runs, uploads
from nodes.explorer.source import SESSION_END, ChainSource, EventIndex, ExplorerError

STATIC = Path(__file__).resolve().parent / "static"
REPO = Path(__file__).resolve().parents[2]
# the charting library, served from the npm package `make setup` installs (package.json)
VENDOR = {"chart.umd.min.js": REPO / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"}
SESSION_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
FEED_LIMIT = 100

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-resource-policy", b"same-origin"),
           (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]


class SecurityHeaders:
    """Adds the strict Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in names]
            await send(message)

        await self.app(scope, receive, with_headers)


class Explorer:
    """The state behind the pages: the event index and the run directories."""

    def __init__(self, index: EventIndex, run_dirs: runs.RunDirs, max_upload: int = uploads.MAX_UPLOAD_BYTES) -> None:
        self.index = index
        self.runs = run_dirs
        self.max_upload = max_upload
        self._audits: dict[str, tuple[Any, dict[str, Any] | None, str, dict[str, Any]]] = {}

    def status(self) -> dict[str, Any]:
        ix = self.index
        return {"chain_id": ix.chain_id or "?", "contract": ix.contract or "(none yet)", "head": ix.last_block,
                "mode": {"rpc": "JSON-RPC node", "server": "live: reading the running chain server",
                         "state": "reading the state directory"}.get(ix.source.mode(), ""),
                "error": ix.error}

    def orgs(self) -> dict[str, dict[str, Any]]:
        return self.index.registry()["participants"]

    # -- pages ------------------------------------------------------------------------------

    def sessions(self, q: str, status: str, algorithm: str) -> tuple[list[dict[str, Any]], int, list[str]]:
        self.index.refresh()
        rows = self.index.rows()
        algorithms = sorted({r["algorithm"] for r in rows})
        needle = q.strip().lower()
        out = []
        for r in rows:
            if status and r["status"] != status:
                continue
            if algorithm and r["algorithm"] != algorithm:
                continue
            if needle:
                hay = " ".join([r["session_id"], r["algorithm"], *(p["organisation"] for p in r["parties"]),
                                *(p["address"] for p in r["parties"])]).lower()
                if needle not in hay:
                    continue
            out.append(r)
        return out, len(rows), algorithms

    def organizations(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        self.index.refresh()
        ix = self.index
        with ix.lock:
            reg = ix.registry()
            evs = list(ix.registry_events)
            taking_part: dict[str, int] = {}
            for sid in ix.session_ids():
                opened = ix.sessions[sid].events[0]
                for a in opened["args"].get("participants", []):
                    taking_part[a] = taking_part.get(a, 0) + 1
        stamps = ix.stamps(e["block_number"] for e in evs)
        by_account: dict[str, dict[str, Any]] = {}
        history = []
        for ev in evs:
            a = ev["args"]
            account = a.get("account") or a.get("newAdmin") or a.get("proposedAdmin") or ""
            item = {"block": ev["block_number"], "time": stamps.get(ev["block_number"]), "tx": ev["tx_hash"]}
            history.append({**item, "event": ev["event"], "account": account, "detail": _registry_detail(ev)})
            if ev["event"] == "ParticipantRegistered":
                by_account.setdefault(account, {})["registered"] = item
            elif ev["event"] == "ParticipantRevoked":
                by_account.setdefault(account, {})["revoked_event"] = item
        people = []
        for addr, p in reg["participants"].items():
            people.append({**p, "registered": by_account.get(addr, {}).get("registered", {}),
                           "revoked_event": by_account.get(addr, {}).get("revoked_event"),
                           "sessions": taking_part.get(addr, 0)})
        return people, list(reversed(history)), reg["admin"]

    def session(self, sid: str) -> dict[str, Any]:
        """Everything the session page shows."""
        self.index.refresh()
        history = self.index.history(sid)
        s = summary(history)
        s["opened_time"] = history.timestamps.get(s["opened_block"])
        s["closed_time"] = history.timestamps.get(s["closed_block"]) if s["closed_block"] else None
        paths = self.runs.of(sid)
        phases: dict[int, str] = {}
        for p in paths[:1]:
            for line in runs._jsonl(p / "rounds.jsonl"):
                if isinstance(line.get("round"), int):
                    phases[line["round"]] = str(line.get("phase", ""))
        rounds = round_rows(history, phases)
        abort = abort_info(history)
        if abort:
            abort = dict(abort, **_abort_text(abort, paths))
        verdict, verdict_error, chart_data = self._audit(sid, paths, len(history.events))
        return {"summary": s, "rounds": rounds, "events": timeline(history), "abort": abort,
                "verdict": verdict, "verdict_error": verdict_error, "charts": chart_data}

    def _audit(self, sid: str, paths: list[Path], n_events: int) -> tuple[dict[str, Any] | None, str, dict[str, Any]]:
        if not paths:
            return None, "", {}
        key = (n_events, tuple((p, _mtime(p)) for p in paths))
        cached = self._audits.get(sid)
        if cached and cached[0] == key:
            return cached[1], cached[2], cached[3]
        verdict, err = None, ""
        try:
            verdict = runs.audit_paths(self.index, paths)
        except (AuditUnavailable, ChainError) as exc:
            err = f"cannot audit {', '.join(str(p) for p in paths)}: {exc}"
        data = runs.charts(paths)
        self._audits[sid] = (key, verdict, err, data)
        return verdict, err, data

    def live(self, after: int) -> dict[str, Any]:
        self.index.refresh()
        ix = self.index
        with ix.lock:
            orgs = self.orgs()
            new = [ev for ev in ix.events[-5000:] if ev["block_number"] > after and "sessionId" in ev["args"]]
            new = new[-FEED_LIMIT:]
            roles: dict[str, dict[str, str]] = {}
            for ev in new:
                sid = str(ev["args"]["sessionId"])
                if sid not in roles:
                    try:
                        roles[sid] = session_roles(ix.record(sid))
                    except ExplorerError:
                        roles[sid] = {}
            stamps = ix.stamps(ev["block_number"] for ev in new)
            items = []
            for ev in new:
                who = str(ev["args"].get("party") or ev["args"].get("guest") or "")
                role = roles.get(str(ev["args"]["sessionId"]), {}).get(who, "")
                label = (orgs.get(who, {}).get("organisation", "") + (f" ({role})" if role else "")) if who else ""
                items.append(pages.feed_item(ev, stamps.get(ev["block_number"]), label or who))
            all_rows = ix.rows()
            active = [r for r in all_rows if r["status"] in ("opened", "active")]
            active += [r for r in all_rows if r not in active][:5]
            return {"head": ix.last_block, "items": items, "active": active, "error": ix.error,
                    "mode": self.status()["mode"]}


def _registry_detail(ev: Any) -> str:
    """What a registry event says, in a few words."""
    a, name = ev["args"], ev["event"]
    if name == "ParticipantRegistered":
        return f"registered as {a.get('role')} for {a.get('organisation')}"
    if name == "ParticipantRevoked":
        return "revoked: it can write nothing more"
    if name == "AdminTransferred":
        deployed = str(a.get("previousAdmin", "")).lower() == "0x" + "00" * 20
        return "admin since the contract was deployed" if deployed else f"admin from {a.get('previousAdmin')}"
    if name == "AdminProposed":
        return f"proposed as admin by {a.get('admin')}"
    return ""


def _mtime(p: Path) -> tuple[float, int]:
    """When a party directory last changed, and how many files it has (a cached audit is redone then)."""
    best, count = 0.0, 0
    for f in p.rglob("*"):
        try:
            if f.is_file():
                best, count = max(best, f.stat().st_mtime), count + 1
        except OSError:
            continue
    return best, count


def _abort_text(abort: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """The abort reason's text, from the aborting party's job.json when its keccak256 is the hash on chain."""
    for p in paths:
        try:
            job = load_party_files(p).job
        except AuditUnavailable:
            continue
        if str(job.get("account", "")).lower() != str(abort["party"]).lower() or not job.get("error"):
            continue
        text = str(job["error"])
        match = "0x" + keccak(text.encode("utf-8")).hex() == str(abort["reason_hash"]).lower()
        return {"text": text, "text_source": f"{p.name}/job.json error; its keccak256 "
                + ("is the reason hash on chain" if match else "does NOT match the reason hash on chain")}
    return {}


def round_rows(history: Any, phases: dict[int, str]) -> list[dict[str, Any]]:
    """One row per round: each party's submission (commitment, transaction), time and state."""
    rows: dict[int, dict[str, Any]] = {}
    for ev in history.events:
        if ev["event"] != "RoundSubmitted":
            continue
        a = ev["args"]
        r = int(a["round"])
        row = rows.setdefault(r, {"round": r, "phase": phases.get(r, ""), "submissions": {}, "time": None})
        row["submissions"][a["party"]] = {"commitment": a["commitment"], "tx": ev["tx_hash"],
                                          "digest": a["transcriptDigest"], "block": ev["block_number"]}
        row["time"] = history.timestamps.get(ev["block_number"])
    states = history.record["round_states"]
    return [dict(rows[r], state=states.get(r, "pending")) for r in sorted(rows)]


# -- handlers ------------------------------------------------------------------------------

def _html(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code, headers={"cache-control": "no-store"})


def build_app(explorer: Explorer) -> Starlette:
    ex = explorer

    def home(request: Request) -> Response:
        return RedirectResponse("/sessions", 302)

    def sessions(request: Request) -> Response:
        q = request.query_params.get("q", "")[:200]
        st = request.query_params.get("status", "")[:20]
        alg = request.query_params.get("algorithm", "")[:128]
        rows, total, algs = ex.sessions(q, st, alg)
        return _html(pages.sessions_page(rows, total, q, st, alg, algs, ex.status()))

    def organizations(request: Request) -> Response:
        people, history, admin = ex.organizations()
        return _html(pages.organizations_page(people, history, admin, ex.status()))

    def session(request: Request) -> Response:
        sid = request.path_params["sid"]
        if not SESSION_ID.match(sid):
            return _html(pages.message_page("Not a session id", f"{sid!r} is not a session id (0x and 64 hex digits)",
                                            ex.status()), 400)
        try:
            d = ex.session(sid.lower())
        except ExplorerError as exc:
            return _html(pages.message_page("Unknown session", str(exc), ex.status()), 404)
        return _html(pages.session_page(d["summary"], d["rounds"], d["events"], d["abort"], d["verdict"],
                                        d["verdict_error"], d["charts"], ex.status()))

    def live(request: Request) -> Response:
        d = ex.live(-1)
        feed = list(reversed(d["items"]))[:50]
        return _html(pages.live_page(feed, d["active"], d["head"], ex.status()))

    def api_live(request: Request) -> Response:
        try:
            after = int(request.query_params.get("after", "-1"))
        except ValueError:
            return JSONResponse({"error": "after must be a block number"}, 400)
        return JSONResponse(ex.live(after))

    def api_sessions(request: Request) -> Response:
        rows, total, _ = ex.sessions(request.query_params.get("q", "")[:200],
                                     request.query_params.get("status", "")[:20],
                                     request.query_params.get("algorithm", "")[:128])
        return JSONResponse({"total": total, "sessions": rows, "head": ex.index.last_block})

    def api_session(request: Request) -> Response:
        sid = request.path_params["sid"]
        if not SESSION_ID.match(sid):
            return JSONResponse({"error": f"{sid!r} is not a session id"}, 400)
        try:
            ex.index.refresh()
            h = ex.index.history(sid.lower())
            s = summary(h)
        except ExplorerError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        return JSONResponse({"summary": s, "rounds": round_rows(h, {}), "head": ex.index.last_block})

    def verify_form(request: Request) -> Response:
        ex.index.refresh()
        return _html(pages.verify_page(ex.status(), ex.max_upload // (1024 * 1024)))

    async def verify(request: Request) -> Response:
        limit_mb = ex.max_upload // (1024 * 1024)

        def refuse(msg: str, code: int = 400) -> Response:
            return _html(pages.verify_page(ex.status(), limit_mb, error=msg), code)

        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{request.headers.get('host', '')}":  # "null" included
            return refuse(f"uploads come from this explorer's own page, not from {origin}", 403)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > ex.max_upload:
            return refuse(f"upload of {int(length)} bytes refused: the limit is {limit_mb} MB", 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > ex.max_upload:
                return refuse(f"upload refused: larger than the limit of {limit_mb} MB", 413)

        async def replay():
            yield bytes(body)

        try:
            parser = MultiPartParser(request.headers, replay(), max_files=uploads.MAX_FILES, max_fields=20)
            form = await parser.parse()
        except (MultiPartException, ValueError, KeyError) as exc:
            return refuse(f"not a file upload ({exc})")
        files = [(f.filename or "", await f.read()) for f in form.getlist("files") if isinstance(f, UploadFile)]
        files = [(n, d) for n, d in files if n or d]
        if not files:
            return refuse("no file was uploaded: choose a run directory's files or a zip")
        return await run_in_threadpool(_verify_files, ex, files, limit_mb)

    routes = [Route("/", home), Route("/sessions", sessions), Route("/organizations", organizations),
              Route("/session/{sid}", session), Route("/live", live), Route("/verify", verify_form, methods=["GET"]),
              Route("/verify", verify, methods=["POST"]), Route("/api/live", api_live),
              Route("/api/sessions", api_sessions), Route("/api/session/{sid}", api_session),
              Route("/static/{name}", static), Route("/static/vendor/{name}", vendor),
              Route("/favicon.ico", lambda request: Response(status_code=204))]
    middleware = [Middleware(SecurityHeaders),
                  Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])]

    async def failed(request: Request, exc: Exception) -> Response:
        """An unexpected failure: one line on the page (escaped), not a stack trace."""
        return _html(pages.message_page("Something went wrong", f"{type(exc).__name__}: {exc}", ex.status()), 500)

    return Starlette(routes=routes, middleware=middleware, exception_handlers={Exception: failed})


def _verify_files(ex: Explorer, files: list[tuple[str, bytes]], limit_mb: int) -> Response:
    with tempfile.TemporaryDirectory(prefix="vflchain-verify-") as tmp:
        root = Path(tmp)
        try:
            for name, data in files:
                if data[:4] == b"PK\x03\x04" or name.lower().endswith(".zip"):
                    uploads.unpack_zip(root / f"zip-{len(list(root.iterdir()))}", data)
                else:
                    uploads.save_file(root, name, data)
            top = uploads.run_root(root)
            paths = party_dirs([str(top)])
            verdict = runs.audit_paths(ex.index, paths)
        except uploads.UploadError as exc:
            return _html(pages.verify_page(ex.status(), limit_mb, error=str(exc)), 400)
        except (AuditUnavailable, ChainError) as exc:
            return _html(pages.verify_page(ex.status(), limit_mb, error=f"cannot audit: {exc}"), 422)
        for p in verdict["parties"]:  # the temporary path means nothing to the reader
            p["path"] = str(Path(p["path"]).relative_to(root))
        return _html(pages.verify_page(ex.status(), limit_mb, verdict=verdict))


def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ("app.css", "app.js"):
        return Response("not found", 404, media_type="text/plain")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(STATIC / name, media_type=media, headers={"cache-control": "no-cache"})


def vendor(request: Request) -> Response:
    path = VENDOR.get(request.path_params["name"])
    if path is None or not path.is_file():
        return Response("not found (run `make setup`: the charting library comes from npm)", 404,
                        media_type="text/plain")
    return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=3600"})


def make(state: str | Path | None = None, rpc: str = "", contract: str = "", run_dirs: list[str] | None = None,
         min_interval: float = 0.5) -> Explorer:
    """An explorer on a chain (`state` directory, or `rpc` + `contract`) with run directories."""
    index = EventIndex(ChainSource(state, rpc, contract), min_interval=min_interval)
    return Explorer(index, runs.RunDirs(run_dirs or []))


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket (port 0: a free one), so the URL is known before serving."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ExplorerError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(64)
    return sock


def serve(explorer: Explorer, sock: socket.socket, on_ready: Callable[[str], None] | None = None) -> Any:
    """Serve until interrupted (uvicorn); returns the uvicorn Server (its `should_exit` stops it)."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(build_app(explorer), log_level="warning", lifespan="off",
                                           access_log=False))
    if on_ready:
        on_ready(f"http://{host}:{port}/")
    server.run(sockets=[sock])
    return server


__all__ = ["SESSION_END", "Explorer", "build_app", "listen", "make", "serve"]
