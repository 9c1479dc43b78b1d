"""`vflchain explorer` in a real browser (Debian's chromium driven by Playwright) and over plain HTTP.

Once for the module: an LR job and a PSI job run as `vflchain run` does (the embedded chain,
host and guest as separate processes), a participant named `<script>alert(1)</script>` is
registered, and `vflchain explorer --state ... --runs ...` is started as its own process on a
free port. The browser tests are skipped, saying why, where no chromium is installed; the
HTTP tests run everywhere. Screenshots of each page go to build/explorer-screenshots/.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest

from nodes.cli import main as cli

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "build" / "explorer-screenshots"
XSS = "<script>alert(1)</script>"
XSS_ACCOUNT = "0x" + "5c" * 20
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def job_sets(data: Path, state: Path, *extra: str) -> list[str]:
    sets = ["guest.data=" + str(data / "guest.csv"), "host.data=" + str(data / "host.csv"),
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={state}",
            "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0", *extra]
    return [x for s in sets for x in ("--set", s)]


def job_command(out: Path, data: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nodes.cli", "run", "--config", str(REPO / "examples" / "breast_lr.toml"),
            "--out", str(out), *job_sets(data, state, *extra)]


def session_of(run: Path) -> str:
    return json.loads((run / "guest" / "job.json").read_text())["session_id"]


ABORT_REASON = "the operator stopped it"


def open_and_abort(state: Path, contract: str) -> str:
    """A session the dev guest opens and aborts (as a killed job's operator would): its id."""
    from eth_utils import keccak

    from chain.accounts import DEV_INDEX, dev_account
    from chain.backends import close, open_chain
    from chain.client import AuditClient, session_label

    w3 = open_chain("", state, write=True)
    try:
        guest = AuditClient(w3, contract, dev_account(DEV_INDEX["guest"]))
        label = session_label("explorer-test-aborted")
        guest.open_session(label, "gmm", keccak(text="config"), [dev_account(DEV_INDEX["host"]).address])
        sid = guest.session_id(label)
        guest.abort_session(sid, keccak(text=ABORT_REASON))
    finally:
        close(w3)
    return "0x" + sid.hex()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two finished jobs on one embedded chain, the XSS participant, and the explorer serving them."""
    root = tmp_path_factory.mktemp("explorer")
    data, state, runs = root / "data", root / "chain", root / "runs"
    assert cli(["data", "breast", "--out", str(data), "--overlap", "0.9"]) == 0
    for name, extra in (("lr", ("lr.epochs=2",)), ("psi", ("job.algorithm=psi",))):
        res = subprocess.run(job_command(runs / name, data, state, *extra), capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    assert cli(["chain", "register", XSS_ACCOUNT, "--role", "host", "--org", XSS, "--state", str(state)]) == 0
    assert cli(["chain", "revoke", XSS_ACCOUNT, "--state", str(state)]) == 0
    aborted = open_and_abort(state, json.loads((runs / "lr" / "guest" / "job.json").read_text())["contract"])
    proc = subprocess.Popen([sys.executable, "-m", "nodes.cli", "explorer", "--state", str(state), "--runs", str(runs),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    said = ""
    match = None
    while match is None:  # warnings (a stale snapshot, say) may come first
        line = proc.stdout.readline()
        said += line
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not line:
            proc.kill()
            pytest.fail(f"vflchain explorer did not start: {said}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain: a full pipe would block it
    yield {"url": match.group(0).rstrip("/"), "root": root, "data": data, "state": state, "runs": runs,
           "aborted": aborted,
           "lr": session_of(runs / "lr"), "psi": session_of(runs / "psi"), "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser_context():
    """A headless Debian chromium with a fresh profile (Playwright's own browser download is not used)."""
    if CHROMIUM is None:
        pytest.skip("no chromium found: the explorer's browser tests are skipped (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: the explorer's browser tests are skipped (make setup)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="vflchain-chromium-")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900})
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context):
    """A tab that fails the test on any script error, console error or dialog (an executed alert)."""
    pg = browser_context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("dialog", lambda d: (problems.append(f"dialog opened: {d.message}"), d.dismiss()))
    pg.problems = problems  # type: ignore[attr-defined]
    yield pg
    pg.close()
    assert not problems, problems


def wait_until(page, expression: str, timeout: float) -> float:
    """Poll a JS expression until it is true (Playwright's wait_for_function evaluates strings, which the
    page's CSP forbids); the seconds it took."""
    t0 = time.monotonic()
    while not page.evaluate(expression):
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not true within {timeout} s: {expression}")
        time.sleep(0.05)
    return time.monotonic() - t0


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def get(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def zipped(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(root.parent))
    return buf.getvalue()


def tampered_lr(world, tmp_path: Path) -> Path:
    run = tmp_path / "lr"
    shutil.copytree(world["runs"] / "lr", run, ignore=shutil.ignore_patterns("logs", "audit", "plots"))
    cp_path = run / "guest" / "checkpoints" / "round-0006.json"
    cp = json.loads(cp_path.read_text())
    cp["params"]["weights"][0] += 1e-9
    cp_path.write_text(json.dumps(cp))
    return run


# -- in the browser ------------------------------------------------------------------------------

def test_sessions_page_lists_both_jobs_sessions(world, page) -> None:
    page.goto(world["url"] + "/sessions")
    rows = page.locator("#sessions tbody tr")
    sids = {rows.nth(i).get_attribute("data-session") for i in range(rows.count())}
    assert {world["lr"], world["psi"]} <= sids
    lr_row = page.locator(f'#sessions tr[data-session="{world["lr"]}"]')
    assert lr_row.locator(".n-attested").inner_text() == "7" and lr_row.locator(".n-pending").inner_text() == "0"
    assert "closed" in lr_row.inner_text() and "Guest hospital" in lr_row.inner_text()
    shot(page, "sessions")
    page.fill("input[name=q]", world["psi"][:12])
    page.click("form.filter button")
    page.wait_for_url(re.compile(r".*q=0x.*"))
    assert page.locator("#sessions tbody tr").count() == 1


def test_clicking_a_session_shows_every_round_attested_and_the_verdict(world, page) -> None:
    page.goto(world["url"] + "/sessions")
    page.click(f'#sessions tr[data-session="{world["lr"]}"] a')
    page.wait_for_selector("#rounds")
    assert page.locator("#session-id").inner_text() == world["lr"]
    states = page.locator("#rounds tbody tr").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states == ["attested"] * 7
    verdict = page.locator("#verdict")
    assert "PASS" in verdict.inner_text() and "pass" in (verdict.get_attribute("class") or "")
    assert page.locator("#check-kinds tr[data-check='checkpoint commitment']").count() == 1
    wait_until(page, "document.querySelectorAll('canvas[data-chart]').length >= 5", 5)
    for chart in ("loss", "roc-0", "ks-0", "iv", "woe", "comm"):  # drawn: Chart.js attached itself to the canvas
        assert page.evaluate(f"!!Chart.getChart(document.getElementById('chart-{chart}'))"), chart
    shot(page, "session")
    page.locator("#chart-iv").scroll_into_view_if_needed()
    shot(page, "session-charts")


def test_a_tampered_run_turns_the_verdict_red_and_names_the_failed_check(world, page, tmp_path) -> None:
    upload = tmp_path / "tampered.zip"
    upload.write_bytes(zipped(tampered_lr(world, tmp_path)))
    page.goto(world["url"] + "/verify")
    page.set_input_files("#zip", str(upload))
    page.click("#verify-form button[type=submit]")
    page.wait_for_selector("#verdict")
    verdict = page.locator("#verdict")
    assert "fail" in (verdict.get_attribute("class") or "")
    assert "FAIL: 1 of" in verdict.inner_text() and "checkpoint commitment" in verdict.inner_text()
    failed = page.locator("#failed-checks tbody tr")
    assert failed.count() == 1 and "checkpoints/round-0006.json" in failed.inner_text()
    assert page.locator("#verdict").evaluate("el => getComputedStyle(el).color") == "rgb(164, 14, 38)"  # red
    shot(page, "verify-tampered")


def test_a_run_directory_chosen_as_a_folder_verifies(world, page, tmp_path) -> None:
    run = tmp_path / "psi"
    shutil.copytree(world["runs"] / "psi", run, ignore=shutil.ignore_patterns("logs", "audit", "plots"))
    page.goto(world["url"] + "/verify")
    page.set_input_files("#files", str(run))  # the folder input: the browser sends each file's relative path
    page.click("#verify-form button[type=submit]")
    verdict = page.locator("#verdict")
    verdict.wait_for()
    assert "PASS" in verdict.inner_text() and "pass" in (verdict.get_attribute("class") or "")
    assert page.locator("#verify-form ~ h2 a").inner_text().startswith(world["psi"][:10])


def test_the_verify_page_explains_bad_uploads(world, page, tmp_path) -> None:
    page.goto(world["url"] + "/verify")
    page.set_input_files("#zip", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    page.click("#verify-form button[type=submit]")
    assert "not a run directory" in page.locator("#message").inner_text()
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("run/guest/job.json", b"\0" * (200 * 1024 * 1024))
    page.set_input_files("#zip", files=[{"name": "bomb.zip", "mimeType": "application/zip",
                                         "buffer": bomb.getvalue()}])
    page.click("#verify-form button[type=submit]")
    assert "zip bomb" in page.locator("#message").inner_text()
    job = json.loads((world["runs"] / "psi" / "guest" / "job.json").read_text())
    job["session_id"] = "0x" + "ab" * 32
    stranger = io.BytesIO()
    with zipfile.ZipFile(stranger, "w") as z:
        z.writestr("run/guest/job.json", json.dumps(job))
    page.set_input_files("#zip", files=[{"name": "other.zip", "mimeType": "application/zip",
                                         "buffer": stranger.getvalue()}])
    page.click("#verify-form button[type=submit]")
    assert f"unknown session 0x{'ab' * 32}" in page.locator("#message").inner_text()
    shot(page, "verify-unknown-session")
    page.problems[:] = [p for p in page.problems if not re.search(r"status of (400|422)", p)]  # the refusals


def test_a_participant_named_like_a_script_renders_as_text(world, page) -> None:
    page.goto(world["url"] + "/organizations")
    names = page.locator("#participants td.org").all_inner_texts()
    assert XSS in names and "Guest hospital" in names
    xss_row = page.locator("#participants tbody tr", has_text="alert(1)")
    assert "revoked" in xss_row.inner_text()  # its registration and its revocation, each with block and tx
    events = page.locator("#registry-history tbody tr").all_inner_texts()
    assert sum("ParticipantRevoked" in x for x in events) == 1 and sum("ParticipantRegistered" in x for x in events) == 3
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    shot(page, "organizations")


def test_a_running_jobs_rounds_appear_live_without_a_reload(world, page, tmp_path) -> None:
    from chain.embedded import running_server

    page.goto(world["url"] + "/live")
    page.evaluate("window.__noReload = 'still here'")
    start = int(page.locator("#live").get_attribute("data-after") or "0")
    out = tmp_path / "live"
    job = subprocess.Popen(job_command(out, world["data"], world["state"], "lr.epochs=3"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        first = page.wait_for_selector("#feed tr.new[data-event='RoundAttested']", timeout=120_000)
        sid = first.get_attribute("data-session")
        follow = page.context.new_page()  # the session's own page follows its rounds too
        errors: list[str] = []
        follow.on("pageerror", lambda exc: errors.append(str(exc)))
        follow.goto(f"{world['url']}/session/{sid}")
        follow.evaluate("window.__noReload = 'still here'")
        shown_at_open = follow.locator("#rounds tbody tr").count()
        info = running_server(world["state"])
        lags = []
        for _ in range(3):  # the chain's head as its own server reports it, shown on the page within 2 s
            if info is None or job.poll() is not None:
                break
            req = urllib.request.Request(info["url"], data=json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode(),
                headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    head = int(json.loads(r.read())["result"], 16)
            except OSError:
                break  # the job ended and its chain server stopped
            lags.append(wait_until(page, f"Number(document.getElementById('head').textContent) >= {head}", 2.0))
            time.sleep(0.5)
        assert lags, "the job ended before its rounds could be watched"
        shot(page, "live")
        assert job.wait(timeout=180) == 0
    finally:
        if job.poll() is None:
            job.kill()
    assert sid == session_of(out)
    wait_until(follow, "[...document.querySelectorAll('#rounds tbody tr')].filter("
                       "r => r.dataset.state === 'attested').length === 8", 5)
    assert shown_at_open < 8 and follow.evaluate("window.__noReload") == "still here" and not errors
    follow.close()
    row = page.locator(f"#live-sessions tr[data-session='{sid}']")
    row.wait_for(timeout=5000)
    wait_until(page, f"document.querySelector(\"#live-sessions tr[data-session='{sid}']\").innerText"
               ".includes('closed')", 5)
    feed = page.locator(f"#feed tr[data-session='{sid}'][data-event='RoundAttested']")
    assert feed.count() == 8  # every round of the job, handshake to close
    assert page.evaluate("window.__noReload") == "still here"
    assert int(page.locator("#head").inner_text()) > start


def test_an_aborted_session_shows_who_aborted_it_and_the_reason_hash(world, page) -> None:
    from eth_utils import keccak

    page.goto(world["url"] + "/sessions?status=aborted")
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-session") == world["aborted"]
    rows.first.locator("a").click()
    abort = page.locator("#abort")
    abort.wait_for()
    text = abort.inner_text()
    assert "Aborted by the guest" in text and "0x" + keccak(text=ABORT_REASON).hex()[:8] in text
    assert page.locator("#rounds tbody tr").count() == 0 and "aborted" in page.locator(".lead").inner_text()
    shot(page, "session-aborted")


# -- over plain HTTP ------------------------------------------------------------------------------

def test_every_response_carries_a_strict_content_security_policy(world) -> None:
    for path in ("/sessions", "/organizations", "/live", "/verify", f"/session/{world['lr']}", "/static/app.js",
                 "/api/sessions"):
        status, headers, _ = get(world["url"] + path)
        assert status == 200, path
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp, path
        assert headers["x-content-type-options"] == "nosniff"


def test_pages_load_nothing_from_elsewhere_and_escape_chain_text(world) -> None:
    _, _, body = get(world["url"] + "/organizations")
    assert XSS not in body and html_escaped(XSS) in body
    for path in ("/sessions", f"/session/{world['lr']}", "/live", "/verify"):
        _, _, text = get(world["url"] + path)
        sources = re.findall(r'(?:src|href)="([^"]*)"', text)
        assert sources and all(s.startswith("/") for s in sources), (path, sources)
    status, headers, js = get(world["url"] + "/static/vendor/chart.umd.min.js")
    assert status == 200 and "Chart" in js and headers["content-type"].startswith("text/javascript")


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_an_unknown_or_malformed_session_is_a_clear_page(world) -> None:
    status, _, body = get(world["url"] + "/session/0x" + "cd" * 32)
    assert status == 404 and "unknown session 0x" + "cd" * 32 in body
    status, _, body = get(world["url"] + "/session/nonsense")
    assert status == 400 and "is not a session id" in body


def test_an_upload_over_the_limit_is_refused_before_it_is_read(world) -> None:
    boundary = uuid.uuid4().hex
    status, _, body = get(world["url"] + "/verify", data=b"x" * 10, headers={
        "content-type": f"multipart/form-data; boundary={boundary}", "content-length": str(64 * 1024 * 1024)})
    assert status == 413 and "the limit is 32 MB" in body


def test_an_upload_from_another_site_is_refused(world) -> None:
    status, _, body = get(world["url"] + "/verify", data=b"", headers={
        "origin": "http://evil.example", "content-type": "multipart/form-data; boundary=x"})
    assert status == 403 and "not from http://evil.example" in body


def test_a_zip_that_climbs_out_of_the_upload_is_refused(world) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../escaped.json", b"{}")
    boundary = uuid.uuid4().hex
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.zip\"\r\n"
               "Content-Type: application/zip\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    status, _, body = get(world["url"] + "/verify", data=payload,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and "leaves the upload" in body
    assert not any(Path(tempfile.gettempdir()).glob("escaped.json"))


def test_the_explorer_holds_no_key_and_sends_no_transaction(world) -> None:
    """Its pages read: after every page and API call the chain's head has not moved."""
    from chain.backends import close, connect_state

    w3 = connect_state(world["state"])
    before = int(w3.eth.block_number)
    close(w3)
    for path in ("/sessions", "/organizations", "/live", f"/session/{world['lr']}", "/api/live?after=0",
                 f"/api/session/{world['psi']}"):
        assert get(world["url"] + path)[0] == 200
    w3 = connect_state(world["state"])
    assert int(w3.eth.block_number) == before
    close(w3)
    src = (REPO / "nodes" / "explorer").rglob("*.py")
    for p in src:
        text = p.read_text()
        assert "sign_transaction" not in text and "private_key" not in text and "_transact" not in text, p


def test_the_explorers_event_decoder_gives_what_the_audit_client_reads(world) -> None:
    from chain.backends import close, connect_state
    from chain.client import AuditClient
    from nodes.explorer.source import ChainSource, EventIndex

    index = EventIndex(ChainSource(world["state"]), min_interval=0)
    index.refresh(force=True)
    assert not index.error
    w3 = connect_state(world["state"])
    reference = AuditClient(w3, index.contract).events(from_block=0)
    close(w3)
    index.source.close()
    assert len(reference) > 40 and index.events == reference


def test_the_explorer_reads_a_json_rpc_node_given_its_contract(world) -> None:
    from chain.embedded import start_server
    from nodes.explorer.app import make

    contract = json.loads((world["runs"] / "lr" / "guest" / "job.json").read_text())["contract"]
    handle = start_server(world["state"])
    try:
        explorer = make(rpc=handle.url, contract=contract, min_interval=0)
        explorer.index.refresh(force=True)
        assert not explorer.index.error and explorer.index.source.mode() == "rpc"
        rows = {r["session_id"]: r for r in explorer.index.rows()}
        assert rows[world["lr"]]["attested"] == 7 and rows[world["aborted"]]["status"] == "aborted"
    finally:
        handle.stop()


def test_the_api_lists_sessions_as_json(world) -> None:
    status, _, body = get(world["url"] + "/api/sessions?status=closed")
    rows = json.loads(body)["sessions"]
    assert status == 200 and {world["lr"], world["psi"]} <= {r["session_id"] for r in rows}
    assert all(r["status"] == "closed" for r in rows)
    assert os.path.isdir(world["state"])
