"""The sandbox channel's outage knob, the grade audit's channel fault."""

from __future__ import annotations

from datetime import date

import pytest
from sandbox_servers import (  # noqa: F401 - fixtures (fast_knobs: autouse)
    client,
    fast_knobs,
    knobs,
    notify,
    receiver,
    request,
    sandbox,
)

from paycore.channels.errors import ChannelUnavailable


def test_an_outage_fails_every_channel_call_not_only_submissions(sandbox, receiver, client):
    """The grade audit's channel fault: ``outage_rate`` 1.0 answers 503 to pays, queries
    and statements alike (``error_rate`` refuses submissions only)."""
    paid = request()
    client.pay(paid, notify(receiver))
    knobs(sandbox, error_rate=1.0)
    assert client.query_status(paid.channel_txn_no).status != "unknown"  # queries still work
    knobs(sandbox, error_rate=0.0, outage_rate=1.0)
    for call in (
        lambda: client.pay(request(), notify(receiver)),
        lambda: client.query_status(paid.channel_txn_no),
        lambda: client.statement(date.today()),
    ):
        with pytest.raises(ChannelUnavailable):
            call()
    knobs(sandbox, outage_rate=0.0)
    assert client.query_status(paid.channel_txn_no).status != "unknown"
