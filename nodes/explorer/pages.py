"""The explorer's HTML. Every value from the chain or a file goes through `e()` (HTML-escaped,
quotes included) or, for chart data, through `json_block()` (JSON with `<`, `>` and `&`
escaped, in a non-executed `application/json` script element). There are no inline scripts
or styles: the Content-Security-Policy forbids them, and app.js/app.css do the rest.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

from chain.audit import describe

STATES = ("attested", "disputed", "pending")
NAV = (("/sessions", "Sessions"), ("/organizations", "Organizations"), ("/live", "Live"), ("/verify", "Verify"))


def e(x: Any) -> str:
    """`x` as text in HTML (content or a quoted attribute)."""
    return html.escape("" if x is None else str(x), quote=True)


def json_block(element_id: str, data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{e(element_id)}">{text}</script>'


def when(ts: int | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def short(h: Any, n: int = 8) -> str:
    """A long hex value shortened, the full value in the title (and copied on select)."""
    text = "" if h is None else str(h)
    shown = text if len(text) <= 2 * n + 3 else f"{text[:n + 2]}…{text[-n:]}"
    return f'<code title="{e(text)}">{e(shown)}</code>'


def commitment(h: Any, n: int = 32) -> str:
    """A commitment or hash; the zero value (not posted yet) as "none"."""
    text = "" if h is None else str(h)
    if not text.strip("0x"):
        return '<span class="muted">none</span>'
    return short(text, n)


def yes(flag: Any) -> str:
    return "yes" if flag else '<span class="muted">no</span>'


def badge(state: str) -> str:
    cls = {"attested": "ok", "closed": "ok", "pass": "ok", "disputed": "bad", "aborted": "bad",
           "expired": "bad", "invalid": "bad", "fail": "bad", "revoked": "bad"}.get(state, "wait")
    return f'<span class="badge {cls}">{e(state)}</span>'


def party(org: str, role: str, address: str) -> str:
    label = org or address
    return f'<span class="party" title="{e(address)}">{e(label)}</span> <span class="muted">{e(role)}</span>'


def session_link(sid: str, text: str | None = None) -> str:
    return f'<a href="/session/{e(sid)}">{short(sid) if text is None else e(text)}</a>'


def layout(title: str, body: str, status: dict[str, Any], active: str = "", charts: bool = False) -> str:
    here = ' class="here"'
    nav = "".join(f'<a href="{href}"{here if href == active else ""}>{e(name)}</a>' for href, name in NAV)
    err = f'<p class="error" id="chain-error">chain: {e(status["error"])}</p>' if status.get("error") else ""
    scripts = '<script src="/static/vendor/chart.umd.min.js" defer></script>' if charts else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{e(title)} · vflchain explorer</title>"
        "<link rel=\"stylesheet\" href=\"/static/app.css\">"
        f"{scripts}<script src=\"/static/app.js\" defer></script></head><body>"
        f"<header><span class=\"brand\">vflchain explorer</span><nav>{nav}</nav>"
        f"<span class=\"chain muted\">chain {e(status.get('chain_id'))} · contract {short(status.get('contract'))}"
        f" · block <span id=\"head\">{e(status.get('head'))}</span> · <span id=\"mode\">{e(status.get('mode'))}</span>"
        "</span></header>"
        f"<main>{err}{body}</main>"
        "<footer class=\"muted\">Read-only: this page holds no key and sends no transaction.</footer>"
        "</body></html>")


def message_page(title: str, message: str, status: dict[str, Any]) -> str:
    return layout(title, f"<h1>{e(title)}</h1><p class=\"error\" id=\"message\">{e(message)}</p>", status)


# -- Sessions ------------------------------------------------------------------------------

def sessions_page(rows: list[dict[str, Any]], total: int, q: str, status_filter: str, algorithm: str,
                  algorithms: list[str], status: dict[str, Any]) -> str:
    opts = "".join(f'<option value="{e(s)}"{" selected" if s == status_filter else ""}>{e(s or "any status")}</option>'
                   for s in ("", "opened", "active", "closed", "aborted", "expired"))
    algs = "".join(f'<option value="{e(a)}"{" selected" if a == algorithm else ""}>{e(a or "any algorithm")}</option>'
                   for a in ["", *algorithms])
    form = (f'<form class="filter" method="get" action="/sessions">'
            f'<input type="search" name="q" value="{e(q)}" placeholder="session id, organisation or account" '
            f'aria-label="filter">'
            f'<select name="status" aria-label="status">{opts}</select>'
            f'<select name="algorithm" aria-label="algorithm">{algs}</select>'
            f'<button type="submit">Filter</button></form>')
    body = [f"<h1>Sessions</h1><p class=\"muted\">{len(rows)} of {total} sessions, newest first.</p>", form]
    body.append('<table id="sessions"><thead><tr><th>session</th><th>algorithm</th><th>parties</th><th>status</th>'
                '<th>opened</th><th>closed</th><th>rounds</th><th>attested</th><th>disputed</th><th>pending</th>'
                '</tr></thead><tbody>')
    for r in rows:
        parties = "<br>".join(party(p["organisation"], p["role"], p["address"]) for p in r["parties"])
        body.append(
            f'<tr data-session="{e(r["session_id"])}"><td>{session_link(r["session_id"])}</td>'
            f'<td>{e(r["algorithm"])}</td><td>{parties}</td><td>{badge(r["status"])}</td>'
            f'<td>{e(when(r["opened_time"]))}<br><span class="muted">block {e(r["opened_block"])}</span></td>'
            f'<td>{e(when(r["closed_time"]))}<br><span class="muted">'
            f'{"block " + e(r["closed_block"]) if r["closed_block"] is not None else ""}</span></td>'
            f'<td>{e(r["rounds"])}</td><td class="n-attested">{e(r["attested"])}</td>'
            f'<td class="n-disputed">{e(r["disputed"])}</td><td class="n-pending">{e(r["pending"])}</td></tr>')
    body.append("</tbody></table>")
    if not rows:
        body.append('<p class="muted">No session matches.</p>')
    return layout("Sessions", "".join(body), status, "/sessions")


# -- Organizations -------------------------------------------------------------------------

def organizations_page(people: list[dict[str, Any]], history: list[dict[str, Any]], admin: str,
                       status: dict[str, Any]) -> str:
    body = ["<h1>Organizations</h1>", f"<p>Contract admin: {short(admin, 20)}</p>",
            '<table id="participants"><thead><tr><th>organisation</th><th>role</th><th>account</th><th>standing</th>'
            "<th>registered</th><th>revoked</th><th>sessions</th></tr></thead><tbody>"]
    for p in people:
        reg, rev = p["registered"], p.get("revoked_event")
        revoked = (f'{e(when(rev.get("time")))} <span class="muted">block {e(rev.get("block"))}</span><br>'
                   f'tx {short(rev.get("tx"))}') if rev else ""
        body.append(
            f'<tr><td class="org">{e(p["organisation"])}</td><td>{e(p["role"])}</td><td>{short(p["address"], 20)}</td>'
            f'<td>{badge("revoked" if p["revoked"] else "active")}</td>'
            f'<td>{e(when(reg.get("time")))} <span class="muted">block {e(reg.get("block"))}</span><br>'
            f'tx {short(reg.get("tx"))}</td>'
            f'<td>{revoked}</td>'
            f'<td>{e(p["sessions"])}</td></tr>')
    body.append("</tbody></table><h2>Registration history</h2>"
                '<table id="registry-history"><thead><tr><th>block</th><th>time</th><th>event</th><th>account</th>'
                "<th>detail</th><th>transaction</th></tr></thead><tbody>")
    for h in history:
        body.append(f'<tr><td>{e(h["block"])}</td><td>{e(when(h["time"]))}</td><td>{e(h["event"])}</td>'
                    f'<td>{short(h["account"], 20)}</td><td>{e(h["detail"])}</td><td>{short(h["tx"])}</td></tr>')
    body.append("</tbody></table>")
    return layout("Organizations", "".join(body), status, "/organizations")


# -- a session -----------------------------------------------------------------------------

def round_table(rounds: list[dict[str, Any]], parties: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{party(p['organisation'], p['role'], p['address'])}</th>" for p in parties)
    out = ['<table id="rounds"><thead><tr><th>round</th><th>phase</th><th>time</th>'
           f"{head}<th>state</th></tr></thead><tbody>"]
    for r in rounds:
        cells = []
        for p in parties:
            sub = r["submissions"].get(p["address"])
            cells.append(f"<td>commitment {short(sub['commitment'])}<br>tx {short(sub['tx'])}</td>" if sub
                         else '<td class="muted">not posted</td>')
        out.append(f'<tr data-round="{e(r["round"])}" data-state="{e(r["state"])}"><td>{e(r["round"])}</td>'
                   f'<td>{e(r["phase"])}</td><td>{e(when(r["time"]))}</td>{"".join(cells)}'
                   f'<td>{badge(r["state"])}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def verdict_block(v: dict[str, Any]) -> str:
    """The audit verdict; each kind of check with its count and what it proves; every failure in
    full; every single check in a table that opens on demand."""
    if v["ok"]:
        head = f'<div class="verdict pass" id="verdict">PASS: all {e(v["total"])} checks hold — the files shown ' \
               "are the ones committed on chain</div>"
    else:
        names = sorted({c["check"] for c in v["checks"] if not c["ok"]})
        head = (f'<div class="verdict fail" id="verdict">FAIL: {e(v["failed"])} of {e(v["total"])} checks do not '
                f'hold — failed: {e(", ".join(names))}</div>')
    kinds: dict[str, dict[str, Any]] = {}
    for c in v["checks"]:
        k = kinds.setdefault(c["check"], {"pass": 0, "fail": 0, "explain": c["explain"] or c["detail"]})
        k["pass" if c["ok"] else "fail"] += 1
    summary = "".join(
        f'<tr class="{"fail" if k["fail"] else "pass"}" data-check="{e(name)}"><td>{badge("fail" if k["fail"] else "pass")}'
        f'</td><td class="check">{e(name)}</td><td>{e(k["pass"])} of {e(k["pass"] + k["fail"])} hold</td>'
        f'<td class="muted">{e(k["explain"])}</td></tr>' for name, k in kinds.items())
    parties = "".join(f"<li>{e(p['role'])}: <code>{e(p['path'])}</code> (job {e(p['job_id'])}, {e(p['status'])})</li>"
                      for p in v["parties"])
    bad = [c for c in v["checks"] if not c["ok"]]
    out = [head, f"<p>Run directories audited:</p><ul>{parties}</ul>",
           '<table id="check-kinds"><thead><tr><th>result</th><th>check</th><th>count</th><th>what it proves</th>'
           f"</tr></thead><tbody>{summary}</tbody></table>"]
    if bad:
        out.append('<h3>Failed checks</h3><table id="failed-checks">' + _check_rows(bad) + "</table>")
    out.append(f'<details><summary>All {len(v["checks"])} checks</summary><table id="checks">'
               + _check_rows(v["checks"]) + "</table></details>")
    return "".join(out)


def _check_rows(checks: list[dict[str, Any]]) -> str:
    rows = ["<thead><tr><th>result</th><th>check</th><th>party</th><th>where</th><th>detail</th></tr></thead><tbody>"]
    for c in checks:
        where = " ".join(str(x) for x in (c["file"], f"round {c['round']}" if c["round"] is not None else "",
                                          c["field"]) if x)
        diff = ""
        if not c["ok"] and (c["expected"] or c["found"]):
            diff = f'<br>expected {short(c["expected"], 12)}, found {short(c["found"], 12)}'
        rows.append(f'<tr class="{"pass" if c["ok"] else "fail"}"><td>{badge("pass" if c["ok"] else "fail")}</td>'
                    f'<td class="check">{e(c["check"])}</td><td>{e(c["party"])}</td><td>{e(where)}</td>'
                    f'<td>{e(c["detail"])}{diff}</td></tr>')
    return "".join(rows) + "</tbody>"


def metrics_table(m: dict[str, Any]) -> str:
    rows = []
    for k, v in m.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, int | float) and not isinstance(v2, bool):
                    rows.append((f"{k} {k2}", f"{v2:.6g}"))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            rows.append((k, f"{v:.6g}"))
    if not rows:
        return ""
    body = "".join(f"<tr><td>{e(a)}</td><td>{e(b)}</td></tr>" for a, b in rows)
    return f'<h2>Metrics</h2><table id="metrics" class="kv"><tbody>{body}</tbody></table>'


def charts_block(data: dict[str, Any]) -> str:
    """Canvases for the charts there is data for; app.js draws them from the JSON block."""
    parts = []
    if data.get("loss"):
        parts.append(("loss", "Loss per round", ""))
    for i, r in enumerate(data.get("roc") or []):
        parts.append((f"roc-{i}", f"ROC ({r['split']}): AUC {r['auc']}", ""))
        parts.append((f"ks-{i}", f"KS ({r['split']}): {r['ks']} at score {r['ks_threshold']}", ""))
    if (data.get("binning") or {}).get("features"):
        parts.append(("iv", "Information value per feature", ""))
        opts = "".join(f'<option value="{i}">{e(f["feature"])}</option>'
                       for i, f in enumerate(data["binning"]["features"]))
        parts.append(("woe", "Weight of evidence per bin",
                      f'<select id="woe-feature" aria-label="feature">{opts}</select>'))
    if data.get("gmm"):
        parts.append(("gmm", "GMM components (guest's first two features; size: weight)", ""))
        parts.append(("gmm-sizes", "Cluster sizes", ""))
    if any(data.get("communication", {}).values()):
        parts.append(("comm", "Communication per round (bytes)", ""))
    if not parts:
        return ""
    cells = "".join(f'<figure class="chart"><figcaption>{e(title)} {extra}</figcaption>'
                    f'<div class="box"><canvas id="chart-{e(cid)}" data-chart="{e(cid)}"></canvas></div></figure>'
                    for cid, title, extra in parts)
    return f'<h2>Charts</h2><div class="charts">{cells}</div>{json_block("chart-data", data)}'


def session_page(s: dict[str, Any], rounds: list[dict[str, Any]], events: list[dict[str, Any]],
                 abort: dict[str, Any] | None, verdict: dict[str, Any] | None, verdict_error: str,
                 chart_data: dict[str, Any], status: dict[str, Any]) -> str:
    people = s["participants"]
    n = s["rounds_by_state"]
    body = [f'<h1>Session {short(s["session_id"], 10)}</h1>',
            f'<p class="lead">{e(s["algorithm"])} · {badge(s["status"])} · {e(s["rounds"])} rounds: '
            f'<span id="n-attested">{e(n["attested"])}</span> attested, <span id="n-disputed">{e(n["disputed"])}</span>'
            f' disputed, <span id="n-pending">{e(n["pending"])}</span> pending</p>',
            '<table class="kv"><tbody>'
            f'<tr><th>session id</th><td><code id="session-id">{e(s["session_id"])}</code></td></tr>'
            f'<tr><th>opened</th><td>block {e(s["opened_block"])} {e(when(s.get("opened_time")))}</td></tr>'
            f'<tr><th>ended</th><td>{"block " + e(s["closed_block"]) + " " + e(when(s.get("closed_time"))) + " tx " + short(s["closed_tx"]) if s["closed_block"] else "not yet"}</td></tr>'
            f'<tr><th>config commitment</th><td>{short(s["config_commitment"], 32)}</td></tr>'
            f'<tr><th>metrics hash</th><td>{commitment(s["metrics_hash"])}</td></tr></tbody></table>']
    if abort:
        reason = abort.get("text")
        body.append(f'<div class="verdict fail" id="abort">Aborted by the {e(abort["role"])} '
                    f'{e(abort["party"])} in block {e(abort["block"])} (tx {short(abort["tx_hash"])}), reason hash '
                    f'{short(abort["reason_hash"], 16)}'
                    + (f'<br>Reason: {e(reason)} <span class="muted">({e(abort["text_source"])})</span>' if reason
                       else '<br><span class="muted">The reason text is in the aborting party\'s job.json; '
                            "add its run directory with --runs to see it checked.</span>")
                    + "</div>")
    body.append('<h2>Participants and model commitments</h2><table id="participants"><thead><tr><th>party</th>'
                "<th>account</th><th>joined</th><th>finalized</th><th>last round</th><th>model commitment</th></tr>"
                "</thead><tbody>")
    for p in people:
        body.append(f'<tr><td>{party(p["organisation"], p["role"], p["address"])}</td><td>{short(p["address"], 20)}</td>'
                    f'<td>{yes(p["joined"])}</td><td>{yes(p["finalized"])}</td><td>{e(p["last_round"])}</td>'
                    f'<td>{commitment(p["model_commitment"])}</td></tr>')
    body.append("</tbody></table>")
    body.append("<h2>Rounds</h2>" + round_table(rounds, people))
    if verdict is not None:
        body.append("<h2>Audit of the run directories</h2>" + verdict_block(verdict))
        body.append(metrics_table(chart_data.get("metrics") or {}))
        body.append(charts_block(chart_data))
    elif verdict_error:
        body.append(f'<h2>Audit of the run directories</h2><p class="error" id="verdict-error">{e(verdict_error)}</p>')
    else:
        body.append('<p class="muted">No run directory of this session was given (--runs), so there is no audit '
                    'verdict or chart here; the <a href="/verify">Verify</a> page audits uploaded files.</p>')
    ev_rows = "".join(
        f'<tr><td>{e(x["block"])}</td><td>{e(when(x["time"]))}</td><td>{e(x["event"])}</td>'
        f'<td>{party(x["organisation"], x["role"], x["party"]) if x["party"] else ""}</td>'
        f'<td>{e("" if x["round"] is None else x["round"])}</td><td>{e(x["what"])}</td><td>{short(x["tx_hash"])}</td></tr>'
        for x in events)
    body.append(f'<details><summary>All {len(events)} events</summary><table id="events"><thead><tr><th>block</th>'
                '<th>time</th><th>event</th><th>party</th><th>round</th><th>what</th><th>tx</th></tr></thead>'
                f"<tbody>{ev_rows}</tbody></table></details>")
    live = s["status"] in ("opened", "active")
    return layout(f"Session {s['session_id'][:10]}", f'<div id="session" data-live="{"1" if live else "0"}" '
                  f'data-session="{e(s["session_id"])}">' + "".join(body) + "</div>", status, "/sessions",
                  charts=verdict is not None)


# -- Live ----------------------------------------------------------------------------------

def live_page(feed: list[dict[str, Any]], active: list[dict[str, Any]], head: int, status: dict[str, Any]) -> str:
    act = "".join(_active_row(r) for r in active)
    rows = "".join(_feed_row(x) for x in feed)
    body = (f'<h1>Live</h1><p class="muted">New rounds appear here as they are mined (polled every second, no '
            f'reload). <span id="live-state">watching from block {e(head)}</span></p>'
            f'<div id="live" data-after="{e(head)}"></div>'
            '<h2>Sessions in progress and latest</h2><table id="live-sessions"><thead><tr><th>session</th>'
            '<th>algorithm</th><th>status</th><th>rounds</th><th>attested</th><th>disputed</th><th>pending</th>'
            f"</tr></thead><tbody>{act}</tbody></table>"
            '<h2>Latest events</h2><table id="feed"><thead><tr><th>block</th><th>time</th><th>session</th>'
            f"<th>event</th><th>round</th><th>party</th><th>what</th></tr></thead><tbody>{rows}</tbody></table>")
    return layout("Live", body, status, "/live")


def _active_row(r: dict[str, Any]) -> str:
    return (f'<tr data-session="{e(r["session_id"])}"><td>{session_link(r["session_id"])}</td><td>{e(r["algorithm"])}</td>'
            f'<td>{badge(r["status"])}</td><td>{e(r["rounds"])}</td><td>{e(r["attested"])}</td>'
            f'<td>{e(r["disputed"])}</td><td>{e(r["pending"])}</td></tr>')


def _feed_row(x: dict[str, Any]) -> str:
    return (f'<tr data-session="{e(x["session_id"])}" data-event="{e(x["event"])}"><td>{e(x["block"])}</td>'
            f'<td>{e(when(x["time"]))}</td><td>{session_link(x["session_id"])}</td><td>{e(x["event"])}</td>'
            f'<td>{e("" if x["round"] is None else x["round"])}</td><td>{e(x["party"])}</td><td>{e(x["what"])}</td></tr>')


def feed_item(ev: dict[str, Any], time: int | None, who: str) -> dict[str, Any]:
    a = ev["args"]
    return {"block": ev["block_number"], "time": time, "session_id": str(a.get("sessionId", "")),
            "event": ev["event"], "round": int(a["round"]) if "round" in a else None, "party": who,
            "what": describe(ev), "tx": ev["tx_hash"]}


# -- Verify --------------------------------------------------------------------------------

def verify_page(status: dict[str, Any], limit_mb: int, verdict: dict[str, Any] | None = None,
                error: str = "") -> str:
    form = ('<form id="verify-form" method="post" action="/verify" enctype="multipart/form-data">'
            '<div id="drop" class="drop">Drop a zip of a run directory here, or choose the run directory\'s '
            'folder (a party\'s, or a vflchain run --out directory) or a zip:'
            '<label>folder <input type="file" name="files" id="files" multiple webkitdirectory></label>'
            '<label>files or a zip <input type="file" name="files" id="zip" multiple></label></div>'
            f'<p class="muted">At most {e(limit_mb)} MB. Files are unpacked in a temporary directory, audited '
            "against this explorer's chain, and deleted.</p>"
            '<button type="submit">Verify</button></form>')
    out = ["<h1>Verify a run directory</h1>", form]
    if error:
        out.append(f'<p class="error" id="message">{e(error)}</p>')
    if verdict is not None:
        out.append(f'<h2>Session {session_link(verdict["session_id"])}</h2>' + verdict_block(verdict))
    return layout("Verify", "".join(out), status, "/verify")
