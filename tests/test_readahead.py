"""ReadAhead: items produced in a background thread, in order, errors where they happened."""

from __future__ import annotations

import threading
import time

import pytest

from visdoc.readahead import ReadAhead


def test_items_come_in_order_from_a_background_thread_at_most_depth_ahead():
    produced: list[tuple[int, str]] = []

    def items():
        for i in range(6):
            produced.append((i, threading.current_thread().name))
            yield i

    got = []
    with ReadAhead(items(), 2, name="ahead") as ahead:
        for item in ahead:
            time.sleep(0.02)  # the consumer is slower: the producer fills its window and waits
            assert len(produced) <= item + 1 + 2
            got.append(item)
    assert got == list(range(6))
    assert all(name.startswith("ahead") for _, name in produced)


def test_production_starts_before_the_first_item_is_asked_for():
    started = threading.Event()

    def items():
        started.set()
        yield 1

    with ReadAhead(items(), 1) as ahead:
        assert started.wait(5)  # e.g. while the caller waits for a lock
        assert list(ahead) == [1]


def test_depth_zero_iterates_in_the_calling_thread():
    names = []

    def items():
        names.append(threading.current_thread().name)
        yield 1

    with ReadAhead(items(), 0) as ahead:
        assert list(ahead) == [1]
    assert names == [threading.current_thread().name]


def test_an_error_is_raised_at_the_item_where_it_happened():
    def items():
        yield 1
        yield 2
        raise ValueError("page 3 is broken")

    got = []
    with pytest.raises(ValueError, match="page 3"), ReadAhead(items(), 2) as ahead:
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_source_and_leaves_no_thread_behind():
    closed = threading.Event()

    def items():
        try:
            yield from range(1000)
        finally:
            closed.set()

    before = threading.active_count()
    with ReadAhead(items(), 3, name="early") as ahead:
        for item in ahead:
            if item == 2:
                break
    assert closed.is_set()
    assert threading.active_count() == before
    assert not any(t.name.startswith("early") for t in threading.enumerate())
