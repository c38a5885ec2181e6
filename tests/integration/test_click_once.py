"""A click takes effect once in the shared store, whichever replica or delivery takes it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from riskwatch.core.interactions import SILENCE_1H, Click, Outcome, Verdict
from riskwatch.core.lifecycle import AlertKey
from riskwatch.core.silences import Silence
from riskwatch.store import NewMessage, open_store

NOW = datetime(2026, 1, 5, 14, 2, tzinfo=UTC)
KEY = AlertKey("eth-margin", "desk-1", "ETH:PERP-USDT")


def _click(n: int) -> Click:
    return Click("U0OPS", "ops", SILENCE_1H, "a" * 24, 1700000000, "C0RISK",
                 "1700000000.000001", f"1700000100.{n:06d}")


def _outcome(n: int) -> Outcome:
    silence = Silence(f"slack-{n}", "eth-margin", "desk-1", "ETH:PERP-USDT", NOW,
                      NOW + timedelta(hours=1), "from Slack", NOW, "slack:<@U0OPS|ops>")
    return Outcome(Verdict.SILENCED, silence=silence)


def test_the_same_click_from_two_replicas_at_once_takes_effect_once(store_url: str) -> None:
    """Two stores (two replicas) record the same 20 clicks at the same moment, each
    with its own outbox message: each click leaves one interaction, one silence and one
    message, and exactly one of the two calls says it took effect."""
    with open_store(store_url) as first, open_store(store_url) as second:
        results: dict[int, list[bool]] = {n: [] for n in range(20)}
        barrier = threading.Barrier(2)

        def replica(store_index: int) -> None:
            store = (first, second)[store_index]
            for n in range(20):
                barrier.wait(5)
                message = NewMessage(f"m{n}-{store_index}", "slack:C0RISK", {"update": "p"})
                results[n].append(store.record_click(_click(n), _outcome(n), KEY, NOW,
                                                     [message]))

        threads = [threading.Thread(target=replica, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(sorted(taken) == [False, True] for taken in results.values())
        assert len(first.interactions()) == 20 and len(first.silences()) == 20
        assert len(first.outbox()) == 20
        again = first.record_click(_click(0), _outcome(0), KEY, NOW + timedelta(seconds=5),
                                   [NewMessage("late", "slack:C0RISK", {"update": "p"})])
        assert not again and len(first.outbox()) == 20 and len(first.silences()) == 20


def test_removing_a_silence_in_force_ends_it_now_and_an_old_one_is_deleted(
    store_url: str,
) -> None:
    """`silence remove` ends a silence in force at once, keeping it (so its end is told,
    with who ended it); a silence already over is deleted."""
    with open_store(store_url) as store:
        store.add_silence(_outcome(1).silence)  # type: ignore[arg-type]
        assert store.remove_silence("slack-1", NOW + timedelta(minutes=5), "alice")
        [ended] = store.silences()
        assert ended.ends_at == NOW + timedelta(minutes=5) and ended.ended_by == "alice"
        assert not ended.active(NOW + timedelta(minutes=5))
        assert store.remove_silence("slack-1", NOW + timedelta(hours=2), "alice")
        assert store.silences() == []
