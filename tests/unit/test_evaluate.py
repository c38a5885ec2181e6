"""Pure evaluation: rules over snapshots, and one poll's decisions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from riskwatch.core import builtin_alerts
from riskwatch.core.evaluate import breaches, compile_rules, decide
from riskwatch.core.lifecycle import AlertKey, NoticeKind, State
from riskwatch.core.snapshot import Snapshot
from riskwatch.rulefiles.loader import load_rules
from riskwatch.source.adapters import from_cached, from_live
from tests.helpers import FIXTURES, T0, account, at, payload, position, token

CHECK_RULES = compile_rules(load_rules([FIXTURES / "rules" / "good" / "check.yaml"]))


def _rules(tmp_path: Path, body: str) -> list:  # type: ignore[type-arg]
    path = tmp_path / "rules.yaml"
    path.write_text(body)
    return compile_rules(load_rules([path]))


def _snap(*accounts: object) -> Snapshot:
    return Snapshot("cached", T0, tuple(accounts))  # type: ignore[arg-type]


MARGIN = """
rules:
  - name: margin
    scope: position
    metric: maint_margin_ratio
    levels: {warning: 0.5, critical: 0.8}
"""


def test_breaches_on_live_reference_are_the_ones_worked_out_by_hand() -> None:
    """ETH leverage 10 ≥ 8, AccountABC effective leverage 10.2 ≥ 10, ETH share 99.5% ≥ 90%."""
    found = breaches(CHECK_RULES, from_live(payload("reference_live.json"), T0), T0)
    assert sorted((b.rule, b.account, b.symbol, b.severity) for b in found) == [
        ("acct-eff-lev", "AccountABC", None, "critical"),
        ("concentration", "AccountABC", "ETH:PERP-USDT", "warning"),
        ("pos-leverage", "AccountABC", "ETH:PERP-USDT", "warning"),
    ]
    lev = next(b for b in found if b.rule == "acct-eff-lev")
    assert lev.value == Decimal("3051.5284") / Decimal("298.90609459")
    assert lev.threshold == Decimal(10)


def test_breaches_on_cached_reference_are_the_ones_worked_out_by_hand() -> None:
    """acc456's ETH: leverage 10 ≥ 8 and a computed share of 99.99%; OKXDEX is not matched."""
    found = breaches(CHECK_RULES, from_cached(payload("reference_cached.json"), T0), T0)
    assert sorted((b.rule, b.account, b.symbol, b.severity) for b in found) == [
        ("concentration", "acc456", "ETH:PERP-USDT", "warning"),
        ("pos-leverage", "acc456", "ETH:PERP-USDT", "warning"),
    ]


def test_match_globs_are_case_insensitive_and_select_rows(tmp_path: Path) -> None:
    """match.symbol and match.exchange globs pick the rows a rule sees."""
    rules = _rules(tmp_path, MARGIN.replace("levels:", "match: {symbol: ['btc*'], "
                                                       "exchange: ['BY*']}\n    levels:"))
    snap = _snap(account("a", position("BTC:PERP-USDT", maint_margin="9", margin_balance="10"),
                         position("ETH:PERP-USDT", maint_margin="9", margin_balance="10")),
                 account("b", position("BTC:PERP-USDT", maint_margin="9", margin_balance="10"),
                         exchange="Binance"))
    assert [(b.account, b.symbol) for b in breaches(rules, snap, T0)] == [("a", "BTC:PERP-USDT")]


def test_decide_fires_and_stores_then_resolves(tmp_path: Path) -> None:
    """decide() returns the changed alerts and notices of a poll."""
    rules = _rules(tmp_path, MARGIN)
    hot = _snap(account("a", position(maint_margin="9", margin_balance="10")))
    first = decide(rules, hot, {}, at(0))
    key = AlertKey("margin", "a", "ETH:PERP-USDT")
    assert first.changed[key].state is State.FIRING
    assert [n.kind for n in first.notices] == [NoticeKind.FIRING]
    cool = _snap(account("a", position(maint_margin="1", margin_balance="10")))
    second = decide(rules, cool, first.changed, at(1))
    assert second.changed[key].state is State.RESOLVED


def test_closed_position_resolves_but_unreadable_one_does_not(tmp_path: Path) -> None:
    """A position absent from a complete account resolves; from an incomplete one it stays."""
    rules = _rules(tmp_path, MARGIN)
    alerts = decide(rules, _snap(account("a", position(maint_margin="9", margin_balance="10"))),
                    {}, at(0)).changed
    incomplete = _snap(account("a", token(margin_balance="10"), complete=False))
    assert decide(rules, incomplete, alerts, at(1)).notices == []
    closed = _snap(account("a", token(margin_balance="10")))
    [notice] = decide(rules, closed, alerts, at(1)).notices
    assert notice.kind is NoticeKind.RESOLVED


def test_account_missing_from_snapshot_changes_nothing(tmp_path: Path) -> None:
    """An account the API did not return (or errored) keeps its alerts as they were."""
    rules = _rules(tmp_path, MARGIN)
    alerts = decide(rules, _snap(account("a", position(maint_margin="9", margin_balance="10"))),
                    {}, at(0)).changed
    later = decide(rules, _snap(account("other")), alerts, at(100))
    assert later.notices == [] and later.changed == {}


def test_failed_poll_changes_no_rule_alert(tmp_path: Path) -> None:
    """A poll with no snapshot leaves every rule alert firing."""
    rules = _rules(tmp_path, MARGIN)
    alerts = decide(rules, _snap(account("a", position(maint_margin="9", margin_balance="10"))),
                    {}, at(0)).changed
    later = decide(rules, None, alerts, at(5000))
    assert later.notices == [] and later.dropped == set()


def test_unknown_inputs_are_skipped_and_reported(tmp_path: Path) -> None:
    """A row whose metric inputs are null is listed as skipped and changes nothing."""
    rules = _rules(tmp_path, MARGIN)
    result = decide(rules, _snap(account("a", position(maint_margin=None))), {}, at(0))
    assert [(s.rule, s.account) for s in result.skipped] == [("margin", "a")]
    assert result.changed == {}


def test_removed_rule_resolves_its_alerts(tmp_path: Path) -> None:
    """Alerts of a rule that is no longer loaded resolve."""
    rules = _rules(tmp_path, MARGIN)
    alerts = decide(rules, _snap(account("a", position(maint_margin="9", margin_balance="10"))),
                    {}, at(0)).changed
    result = decide([], _snap(account("a")), alerts, at(1))
    [notice] = result.notices
    assert notice.kind is NoticeKind.RESOLVED and "removed" in notice.alert.detail


def test_same_symbol_in_two_market_types_are_two_alerts(tmp_path: Path) -> None:
    """USDT in spot and in perp are different rows and get different alert keys."""
    rules = _rules(tmp_path, "rules:\n  - name: big\n    scope: asset\n    metric: notional\n"
                             "    levels: {warning: 10}\n")
    snap = _snap(account("a", token("USDT", "spot", notional="20"),
                         token("USDT", "perp", notional="30")))
    keys = sorted(decide(rules, snap, {}, at(0)).changed)
    assert [k.symbol for k in keys] == ["USDT", "USDT (perp)"]


def test_builtin_source_down_fires_after_stale_and_resolves_with_data() -> None:
    """source-down: critical once the last good data is older than stale_after."""
    stale = timedelta(seconds=45)
    down = builtin_alerts.PollOutcome(None, "GET x: HTTP 500", last_good_data=at(0))
    early = decide([], None, {}, at(30), builtin_alerts.observe(down, at(30), stale))
    assert early.notices == []
    late = decide([], None, {}, at(50), builtin_alerts.observe(down, at(50), stale))
    [notice] = late.notices
    assert notice.alert.key.rule == "source-down" and notice.alert.severity == "critical"
    back = builtin_alerts.PollOutcome(_snap(), last_good_data=at(60))
    again = decide([], _snap(), late.changed, at(60), builtin_alerts.observe(back, at(60), stale))
    assert [n.kind for n in again.notices] == [NoticeKind.RESOLVED]


def test_builtin_auth_failed_is_critical_at_once() -> None:
    """A 401 fires auth-failed on the first poll."""
    outcome = builtin_alerts.PollOutcome(None, "HTTP 401", auth_failed=True, last_good_data=at(0))
    observed = builtin_alerts.observe(outcome, at(0), timedelta(minutes=1))
    result = decide([], None, {}, at(0), observed)
    [notice] = result.notices
    assert (notice.alert.key.rule, notice.alert.severity) == ("auth-failed", "critical")


def test_builtin_account_error_fires_per_account_and_resolves() -> None:
    """An unreadable row raises account-error for its account; a clean poll resolves it."""
    data = payload("reference_cached.json")
    data["balances"][1]["assets"][0]["amount"] = "??"
    snap = from_cached(data, T0)
    outcome = builtin_alerts.PollOutcome(snap, last_good_data=T0)
    first = decide([], snap, {}, T0, builtin_alerts.observe(outcome, T0, timedelta(hours=1)))
    [notice] = first.notices
    assert notice.alert.key == AlertKey("account-error", "acc456")
    assert "amount is not a number" in notice.alert.detail
    clean = from_cached(payload("reference_cached.json"), T0)
    outcome = builtin_alerts.PollOutcome(clean, last_good_data=T0)
    second = decide([], clean, first.changed, at(1),
                    builtin_alerts.observe(outcome, at(1), timedelta(hours=1)))
    assert [n.kind for n in second.notices] == [NoticeKind.RESOLVED]
