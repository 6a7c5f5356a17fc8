"""Snowflake ids: unique, time-ordered, 64-bit, safe under threads and odd clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from paycore.ids import (
    EPOCH_MS,
    MAX_NODE,
    MAX_SEQ,
    NODE_BITS,
    SEQ_BITS,
    IdGenerator,
    default_node_id,
    id_timestamp_ms,
)

T0 = EPOCH_MS + 86_400_000 * 500  # some fixed instant well after the epoch


def _node_of(value: int) -> int:
    return (value >> SEQ_BITS) & MAX_NODE


def _seq_of(value: int) -> int:
    return value & MAX_SEQ


def _scripted_clock(values: list[int]) -> Callable[[], int]:
    it: Iterator[int] = iter(values)
    last = values[-1]
    return lambda: next(it, last)


def _assert_strictly_increasing(ids: list[int]) -> None:
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False)), "ids not strictly increasing"


def test_layout_constants() -> None:
    assert (NODE_BITS, SEQ_BITS) == (10, 12)
    assert MAX_NODE == 1023 and MAX_SEQ == 4095


def test_sequential_ids_strictly_increase() -> None:
    gen = IdGenerator(node_id=1)
    ids = [gen.next_id() for _ in range(20_000)]
    _assert_strictly_increasing(ids)


def test_unique_and_increasing_across_threads() -> None:
    gen = IdGenerator(node_id=3)
    per_thread: list[list[int]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(out: list[int]) -> None:
        barrier.wait()
        for _ in range(5000):
            out.append(gen.next_id())

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(everything) == 40_000
    assert len(set(everything)) == 40_000
    for out in per_thread:  # each thread sees a monotonic generator
        _assert_strictly_increasing(out)
    assert all(_node_of(i) == 3 for i in everything)


def test_ids_fit_signed_bigint() -> None:
    gen = IdGenerator(node_id=MAX_NODE)
    now_id = gen.next_id()
    assert 0 < now_id < 2**63
    # the last millisecond 41 bits can hold, with the largest node and sequence
    last_ms = EPOCH_MS + (1 << 41) - 1
    late = IdGenerator(node_id=MAX_NODE, clock_ms=lambda: last_ms)
    ids = [late.next_id() for _ in range(MAX_SEQ + 1)]
    assert max(ids) < 2**63
    assert max(ids) == 2**63 - 1


def test_timestamp_recovered_from_real_clock() -> None:
    gen = IdGenerator(node_id=5)
    before = time.time_ns() // 1_000_000
    value = gen.next_id()
    after = time.time_ns() // 1_000_000
    assert before - 2 <= id_timestamp_ms(value) <= after + 2


def test_timestamp_node_and_sequence_encoded_exactly() -> None:
    gen = IdGenerator(node_id=42, clock_ms=lambda: T0)
    first, second = gen.next_id(), gen.next_id()
    assert id_timestamp_ms(first) == T0 == id_timestamp_ms(second)
    assert _node_of(first) == 42 == _node_of(second)
    assert (_seq_of(first), _seq_of(second)) == (0, 1)


def test_new_millisecond_resets_sequence() -> None:
    gen = IdGenerator(node_id=1, clock_ms=_scripted_clock([T0, T0, T0 + 1]))
    ids = [gen.next_id() for _ in range(3)]
    assert [_seq_of(i) for i in ids] == [0, 1, 0]
    assert id_timestamp_ms(ids[2]) == T0 + 1


def test_clock_going_backwards_still_increases() -> None:
    clock = _scripted_clock([T0 + 100, T0 + 99, T0 + 50, T0, T0 + 100, T0 + 101, T0 + 10])
    gen = IdGenerator(node_id=7, clock_ms=clock)
    ids = [gen.next_id() for _ in range(10)]
    _assert_strictly_increasing(ids)
    assert len(set(ids)) == 10
    # never stamped earlier than the latest time already seen
    assert id_timestamp_ms(ids[1]) >= T0 + 100


def test_sequence_exhaustion_within_one_ms_stays_unique_and_increasing() -> None:
    gen = IdGenerator(node_id=9, clock_ms=lambda: T0)  # frozen clock
    ids = [gen.next_id() for _ in range(3 * (MAX_SEQ + 1) + 10)]
    _assert_strictly_increasing(ids)
    assert len(set(ids)) == len(ids)
    # the first 4096 ids use the frozen millisecond, then later ones borrow the next ms
    assert {id_timestamp_ms(i) for i in ids[: MAX_SEQ + 1]} == {T0}
    assert id_timestamp_ms(ids[MAX_SEQ + 1]) > T0
    assert all(_node_of(i) == 9 for i in ids)


@pytest.mark.parametrize("frozen", [True, False])
def test_generators_with_different_nodes_never_collide(frozen: bool) -> None:
    if frozen:

        def clock() -> int:
            return T0
    else:
        ticks = iter(range(T0, T0 + 10**6))

        def clock() -> int:
            return next(ticks) // 3  # a slowly advancing shared clock

    a = IdGenerator(node_id=1, clock_ms=clock)
    b = IdGenerator(node_id=2, clock_ms=clock)
    ids_a, ids_b = [], []
    for _ in range(10_000):
        ids_a.append(a.next_id())
        ids_b.append(b.next_id())
    assert not set(ids_a) & set(ids_b)
    assert len(set(ids_a)) == len(ids_a) and len(set(ids_b)) == len(ids_b)


@pytest.mark.parametrize("node", [-1, MAX_NODE + 1, 10**6])
def test_invalid_node_ids_raise(node: int) -> None:
    with pytest.raises(ValueError):
        IdGenerator(node_id=node)


@pytest.mark.parametrize("node", [0, MAX_NODE])
def test_boundary_node_ids_accepted(node: int) -> None:
    gen = IdGenerator(node_id=node, clock_ms=lambda: T0)
    assert gen.node_id == node
    assert _node_of(gen.next_id()) == node


def test_node_id_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWATCH_NODE_ID", "77")
    assert default_node_id() == 77
    assert IdGenerator().node_id == 77


def test_default_node_id_in_range_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYWATCH_NODE_ID", raising=False)
    for _ in range(50):
        assert 0 <= default_node_id() <= MAX_NODE


@pytest.mark.parametrize("value", ["1024", "-1"])
def test_out_of_range_node_id_in_environment_is_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PAYWATCH_NODE_ID", value)
    with pytest.raises(ValueError):
        default_node_id()
