"""The store codec: every stored kind round-trips exactly, money never passes through a float."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskwatch.core.lifecycle import Alert, Notice, NoticeKind
from riskwatch.store.codec import (
    alert_from_dict,
    alert_to_dict,
    decode_alert,
    encode_alert,
    notice_from_dict,
    notice_to_dict,
)
from tests.stored_values import ALERTS, BARE, FULL, NOTICES, SILENCE_NOTICES


def _numbers(alert: Alert) -> tuple[str | None, str | None]:
    """The alert's numbers as their exact text (Decimal("1E-7") == Decimal("1.0E-7"))."""
    return (None if alert.value is None else str(alert.value),
            None if alert.threshold is None else str(alert.threshold))


@pytest.mark.parametrize("alert", ALERTS, ids=lambda alert: alert.key.rule)
def test_every_alert_round_trips_through_the_row_text(alert: Alert) -> None:
    """An alert written to a row reads back equal, its numbers digit for digit."""
    decoded = decode_alert(encode_alert(alert))
    assert decoded == alert
    assert _numbers(decoded) == _numbers(alert)


@pytest.mark.parametrize("alert", ALERTS, ids=lambda alert: alert.key.rule)
def test_every_alert_round_trips_through_a_dict_and_json(alert: Alert) -> None:
    """alert_to_dict is plain JSON, and alert_from_dict of its JSON is the alert again."""
    decoded = alert_from_dict(json.loads(json.dumps(alert_to_dict(alert))))
    assert decoded == alert and _numbers(decoded) == _numbers(alert)


@pytest.mark.parametrize("notice", (*NOTICES, *SILENCE_NOTICES),
                         ids=lambda notice: notice.kind.value)
def test_every_notice_kind_round_trips_through_the_outbox_payload(notice: Notice) -> None:
    """A notice of each kind, in an outbox payload, reads back equal."""
    decoded = notice_from_dict(json.loads(json.dumps(notice_to_dict(notice))))
    assert decoded == notice and _numbers(decoded.alert) == _numbers(notice.alert)
    assert {n.kind for n in (*NOTICES, *SILENCE_NOTICES)} == set(NoticeKind)


def test_numbers_are_written_as_their_exact_strings_and_unknown_as_null() -> None:
    """Decimals are JSON strings with their exponent and trailing zeros; None is null."""
    full = json.loads(encode_alert(FULL))
    assert (full["value"], full["threshold"]) == ("1E-7", "-0.1400000000000000000000")
    bare = json.loads(encode_alert(BARE))
    assert bare["value"] is None and bare["threshold"] is None
    assert bare["firing_since"] is None and bare["runbook"] is None


def test_row_text_is_ascii_and_keeps_the_stored_key_names() -> None:
    """Rows stay ASCII (as every release wrote them) under the keys older releases read."""
    text = encode_alert(FULL)
    assert text.isascii() and "\\u00fcn\\u00efcode" in text
    assert list(json.loads(text)) == ["rule", "account", "symbol", *(
        field.name for field in fields(Alert) if field.name != "key")]


def test_a_row_from_before_the_optional_fields_reads_with_their_defaults() -> None:
    """A row written before cleared_at, description, muted, ... existed still loads."""
    row = ('{"rule": "r", "account": "a", "symbol": "", "state": "firing", '
           '"severity": "warning", "exchange": "X", "metric": "equity", "value": "5", '
           '"threshold": "4", "since": "2026-01-22T10:00:00+00:00", "firing_since": null, '
           '"last_notified_at": null, "unknown_later_field": 1}')
    alert = decode_alert(row)
    assert alert.value == Decimal(5) and alert.muted is False and alert.when == "above"
    assert alert.description == "" and alert.verify_after is None and alert.scope == ""


@pytest.mark.parametrize("row", [
    '{"rule": "r"}',
    encode_alert(BARE).replace('"pending"', '"sleeping"'),
    encode_alert(FULL).replace('"1E-7"', '"lots"'),
    "not json",
])
def test_a_row_that_is_not_an_alert_is_a_value_error(row: str) -> None:
    """A damaged row (a missing key, an unknown state, a number that is not a decimal, not
    JSON) raises ValueError, as the hand-written codec did, rather than guessing."""
    with pytest.raises(ValueError, match=r"."):
        decode_alert(row)


@given(st.decimals(allow_nan=False, allow_infinity=True)
       | st.sampled_from([Decimal("NaN"), Decimal("-0"), Decimal("0E-30")]))
def test_any_decimal_round_trips_digit_for_digit(number: Decimal) -> None:
    """Whatever the Decimal (exponent, sign of zero, infinity, NaN), it comes back as written."""
    alert = replace(FULL, value=number, threshold=number)
    assert _numbers(decode_alert(encode_alert(alert))) == (str(number), str(number))


def test_msgspec_errors_are_value_errors() -> None:
    """Callers that caught ValueError from the hand-written codec still catch msgspec's."""
    assert issubclass(msgspec.ValidationError, ValueError)
