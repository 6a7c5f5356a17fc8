"""Helpers of the alert rules: durations, numbers and selectors in PromQL, fingerprints,
templates, and what the notifiers sign and redact (no database)."""

from __future__ import annotations

import pytest

from alerts.model import fingerprint, render
from alerts.notify import iso, redact_url, sign
from alerts.spec import duration, number, selector


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (300, "5m"),
        (3600, "1h"),
        (21600, "6h"),
        (259200, "3d"),
        (90, "90s"),
        (604800, "1w"),
        (0.5, "500ms"),
        (0, "0s"),
    ],
)
def test_duration(seconds, text) -> None:
    assert duration(seconds) == text


def test_number_and_selector() -> None:
    assert number(14.4 * (1 - 0.999)) == "0.0144"
    assert selector("m", {"a": 'x"y\\z'}) == 'm{a="x\\"y\\\\z"}'
    assert selector("m") == "m"


def test_fingerprint_is_stable_and_label_order_free() -> None:
    a = fingerprint("r", {"x": "1", "y": "2", "alertname": "r"})
    assert a == fingerprint("r", {"y": "2", "x": "1"})
    assert a != fingerprint("r", {"x": "1", "y": "3"}) != fingerprint("s", {"x": "1", "y": "2"})
    assert len(a) == 64


def test_render_templates() -> None:
    assert render("{{ $labels.resource }} at {{$value}}", {"resource": "db"}, 2.0) == "db at 2"
    assert render("{{ $value | humanize }}", {}, 1.0) == "{{ $value | humanize }}"


def test_helpers_for_notifiers() -> None:
    assert redact_url("https://u:p@h.example:8443/x/y?token=abc") == "https://h.example:8443/x/y"
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    from paycore.channels.signing import sign as paycore_sign

    assert sign("k", "1700000000", b'{"a":1}') == paycore_sign("k", "1700000000", b'{"a":1}')
