"""The status page, rendered on the server: HTML with inline SVG charts, no scripts, no CDN.

Pure functions of plain data, so a page is the same whatever serves it. Every string that
came from the API or from a person (account names, symbols, reasons) is escaped. The page
refreshes itself and reads on a phone (one column under 700 px).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, State
from riskwatch.core.silences import Silence

REFRESH_SECONDS = 30
MAX_ROWS = 500  # rows per table; the JSON has them all
CHART_WIDTH, CHART_HEIGHT, PAD = 640, 220, 90  # PAD: room for the value labels
PLOT_TOP, PLOT_BOTTOM, FONT = 20, 190, 15  # the plot's top and bottom, the labels' size
LEVEL_COLOURS = {"info": "#3b82f6", "warning": "#d97706", "critical": "#dc2626"}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#111;background:#fafafa}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:20px 0 6px}
table{border-collapse:collapse;width:100%;background:#fff}
.scroll{overflow-x:auto}
td,th{border-bottom:1px solid #e5e7eb;padding:4px 6px;text-align:left;vertical-align:top;
white-space:nowrap}td.long{white-space:normal;overflow-wrap:anywhere;min-width:12em}
.accounts a{display:inline-block;margin:0 12px 6px 0}
.critical{color:#dc2626;font-weight:600}.warning{color:#b45309;font-weight:600}
.muted{color:#6b7280}.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}
figure{margin:0;background:#fff;padding:6px;border:1px solid #e5e7eb}
figcaption{font-weight:600}svg{width:100%;height:auto}
@media (max-width:700px){.charts{grid-template-columns:1fr}td,th{padding:3px}}
"""


@dataclass(frozen=True)
class Series:
    """One chart: a metric's points over time and the rules' levels to draw across it."""

    metric: str
    title: str
    points: Sequence[tuple[datetime, Decimal]]
    levels: Sequence[tuple[str, Decimal]] = ()  # (severity, value)
    percent: bool = False


def overview_page(alerts: Sequence[Alert], silences: Sequence[Silence],
                  decisions: Sequence[Decision], accounts: Sequence[str],
                  now: datetime) -> str:
    """``/``: firing and pending alerts, silences in force, recent leverage decisions, and
    a link to the page of every account with recent history."""
    active = sorted((a for a in alerts if a.state is not State.RESOLVED),
                    key=lambda a: (a.state is not State.FIRING, a.severity != "critical",
                                   a.key.account, a.key.rule))
    in_force = [s for s in silences if s.active(now)]
    body = [
        "<h1>riskwatch</h1>",
        f'<p class="muted">As of {_time(now)}; refreshes every {REFRESH_SECONDS} s.</p>',
        f"<h2>Alerts ({len(active)})</h2>",
        _table(("state", "severity", "rule", "account", "symbol", "value", "since"),
               [(a.state.value, _severity(a.severity), _e(a.key.rule), _account_link(a),
                 _e(a.key.symbol) or "–", _value(a.value, a.metric), _time(a.since))
                for a in active[:MAX_ROWS]], empty="No alert is pending or firing."),
        f"<h2>Silences ({len(in_force)})</h2>",
        _table(("rule", "account", "symbol", "until", "by", "why"),
               [(_e(s.rule), _e(s.account or "*"), _e(s.symbol or "*"), _time(s.ends_at),
                 _e(s.created_by) or "–", _e(s.reason)) for s in in_force[:MAX_ROWS]],
               empty="No silence is in force."),
        f"<h2>Accounts ({len(accounts)})</h2>",
        ('<p class="accounts">' + " ".join(_link(name) for name in accounts[:MAX_ROWS]) + "</p>"
         if accounts else '<p class="muted">No account has history yet.</p>'),
        "<h2>Leverage decisions</h2>",
        _table(("at", "account", "pair", "outcome", "what"),
               [(_time(d.at), _e(d.account), _e(d.pair), _e(d.outcome), _e(d.summary()))
                for d in list(reversed(decisions))[:MAX_ROWS]],
               empty="No leverage decision yet."),
    ]
    return _page("riskwatch", body)


def account_page(name: str, alerts: Sequence[Alert], day: Sequence[Series],
                 week: Sequence[Series], now: datetime) -> str:
    """``/accounts/NAME``: the account's alerts and its charts over 24 hours and 7 days."""
    mine = [a for a in alerts if a.key.account == name and a.state is not State.RESOLVED]
    body = [
        f'<p><a href="/">← all accounts</a></p><h1>{_e(name)}</h1>',
        f'<p class="muted">As of {_time(now)}; refreshes every {REFRESH_SECONDS} s.</p>',
        _table(("state", "severity", "rule", "symbol", "value"),
               [(a.state.value, _severity(a.severity), _e(a.key.rule),
                 _e(a.key.symbol) or "–", _value(a.value, a.metric)) for a in mine],
               empty="No alert is pending or firing on this account."),
        "<h2>Last 24 hours</h2>",
        '<div class="charts">' + "".join(
            chart(s, now - timedelta(hours=24), now) for s in day) + "</div>",
        "<h2>Last 7 days</h2>",
        '<div class="charts">' + "".join(
            chart(s, now - timedelta(days=7), now) for s in week) + "</div>",
    ]
    return _page(f"riskwatch · {name}", body)


def chart(series: Series, start: datetime, end: datetime) -> str:
    """An inline SVG line chart of ``series`` from ``start`` to ``end``, with its levels."""
    points = [(t, v) for t, v in series.points if start <= t <= end]
    values = [v for _, v in points] + [v for _, v in series.levels]
    low, high = (min(values), max(values)) if values else (Decimal(0), Decimal(1))
    if low == high:
        low, high = low - 1, high + 1
    span = (end - start).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return PAD + (at - start).total_seconds() / span * (CHART_WIDTH - 4 - PAD)

    def y(value: Decimal) -> float:
        share = float((value - low) / (high - low))
        return PLOT_BOTTOM - share * (PLOT_BOTTOM - PLOT_TOP)

    parts = [f'<figure data-metric="{_e(series.metric)}"><figcaption>{_e(series.title)}'
             "</figcaption>",
             f'<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
             f'aria-label="{_e(series.title)}">',
             f'<text x="2" y="{PLOT_TOP + 5}" font-size="{FONT}">'
             f"{_number(high, series.percent)}</text>",
             f'<text x="2" y="{PLOT_BOTTOM + 5}" font-size="{FONT}">'
             f"{_number(low, series.percent)}</text>",
             f'<text x="{PAD}" y="{CHART_HEIGHT - 4}" font-size="{FONT}" fill="#6b7280">'
             f"{start:%d %b %H:%M}</text>",
             f'<text x="{CHART_WIDTH - 4}" y="{CHART_HEIGHT - 4}" font-size="{FONT}" '
             f'fill="#6b7280" text-anchor="end">{end:%d %b %H:%M} UTC</text>']
    for severity, level in series.levels:
        colour = LEVEL_COLOURS.get(severity, "#6b7280")
        parts.append(f'<line class="level" data-severity="{_e(severity)}" x1="{PAD}" '
                     f'x2="{CHART_WIDTH - 4}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
                     f'stroke="{colour}" stroke-dasharray="6 4"><title>{_e(severity)} '
                     f"{_number(level, series.percent)}</title></line>"
                     f'<text class="level-label" x="{CHART_WIDTH - 4}" y="{y(level) - 4:.1f}" '
                     f'font-size="{FONT}" fill="{colour}" text-anchor="end">{_e(severity)} '
                     f"{_number(level, series.percent)}</text>")
    if points:
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline class="series" points="{line}" fill="none" '
                     'stroke="#111" stroke-width="1.5"/>')
    else:
        parts.append(f'<text class="no-data" x="{CHART_WIDTH / 2}" y="{CHART_HEIGHT / 2}" '
                     'text-anchor="middle" fill="#6b7280">no known value in this period</text>')
    parts.append("</svg></figure>")
    return "".join(parts)


def _page(title: str, body: Sequence[str]) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
            + "".join(body) + "</body></html>")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    last = len(headers) - 1  # the last column holds free text: it wraps
    lines = "".join("<tr>" + "".join(
        f'<td class="long">{cell}</td>' if index == last else f"<td>{cell}</td>"
        for index, cell in enumerate(row)) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{lines}</tbody></table></div>")


def _account_link(alert: Alert) -> str:
    return _link(alert.key.account) if alert.key.account else "–"


def _link(account: str) -> str:
    return f'<a href="/accounts/{quote(account, safe="")}">{_e(account)}</a>'


def _severity(severity: str) -> str:
    return f'<span class="{_e(severity)}">{_e(severity)}</span>'


def _value(value: Decimal | None, metric: str) -> str:
    if value is None:
        return "–"
    base = metric.partition(" change over ")[0]
    return _number(value, base.endswith(("ratio", "buffer", "drawdown", "pct_total")))


def _number(value: Decimal, percent: bool) -> str:
    if not value.is_finite():
        return str(value)
    return f"{value * 100:.2f} %" if percent else f"{value:,.2f}"


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(text: str | None) -> str:
    return html.escape(text or "", quote=True)
