"""Store.prune, for any mix of messages, alerts and waiting replies, on a real SQLite file:
it never removes a Slack message something still needs, and removes every other old one."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.store import NewMessage, open_store
from riskwatch.store.base import Retention
from tests.helpers import T0, scratch_folder

NOW = T0 + timedelta(days=30)
KEYS = [AlertKey("margin", f"desk-{n}", "") for n in range(4)]
messages = st.lists(
    st.tuples(st.sets(st.sampled_from(KEYS), min_size=1, max_size=3),  # alerts it shows
              st.integers(min_value=0, max_value=14 * 24)),  # hours since it was posted
    max_size=12)


def _alert(key: AlertKey, state: State) -> Alert:
    return Alert(key=key, state=state, severity="warning", exchange="Bybit",
                 metric="maint_margin_ratio", value=Decimal("0.5"), threshold=Decimal("0.4"),
                 since=NOW, firing_since=NOW)


@settings(max_examples=60, deadline=None)
@given(posted=messages,
       stored=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(list(State))),
       replied=st.sets(st.integers(min_value=0, max_value=11)))
def test_prune_keeps_exactly_what_is_needed(
    posted: list[tuple[set[AlertKey], int]], stored: dict[AlertKey, State], replied: set[int],
) -> None:
    """A message goes iff it is older than a week, shows no stored alert and no waiting
    message replies to it; the count returned is the number gone."""
    with scratch_folder() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'state.db'}")
        for number, (keys, hours) in enumerate(posted):
            sent = NOW - timedelta(hours=hours)
            notices = [{"alert": {"rule": k.rule, "account": k.account, "symbol": k.symbol}}
                       for k in sorted(keys)]
            store.save_poll({}, [], [NewMessage(f"m{number}", "slack:desk",
                                                {"notices": notices})], sent)
            [row] = store.outbox()
            store.delivered(row, "C1", f"{number}.0", sent)
        store.save_poll({key: _alert(key, state) for key, state in stored.items()}, [],
                        [NewMessage(f"reply-{n}", "slack:desk", {"notices": [], "thread": f"m{n}"})
                         for n in replied], NOW)

        removed = store.prune(NOW)

        week = Retention().slack_messages
        expected_gone = {
            f"m{number}" for number, (keys, hours) in enumerate(posted)
            if timedelta(hours=hours) > week and not keys & set(stored) and number not in replied
        }
        gone = {f"m{number}" for number in range(len(posted))
                if store.slack_message(f"m{number}") is None}
        store.close()
    assert gone == expected_gone
    assert removed == len(expected_gone)
