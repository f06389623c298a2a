"""Fixtures of the feedback tests: a store on a fake clock, with two answers to the same question."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback import Store
from tests.feedback.factory import FakeClock, make_record


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(tmp_path / "feedback.db", clock=clock) as s:
        yield s


@pytest.fixture
def answered(store: Store) -> Store:
    """The store with answers `a-1` (model m1) and `a-2` (model m2) to the same question."""
    store.record_answer(make_record("a-1", model_version="m1", answer="25 days [1]."))
    store.record_answer(make_record("a-2", model_version="m2", answer="You get 25 vacation days [1]."))
    return store
