"""The store in one thread: pragmas, round trip, idempotency, listing, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feedback import AnswerRecord, Store
from feedback.errors import (
    AnswerNotFound,
    FeedbackErrorCode,
    InvalidFilter,
    InvalidRecord,
    StoreBusy,
    StoreCorrupt,
    StoreUnavailable,
)
from feedback.migrations import latest_version
from tests.feedback.factory import make_record


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "feedback.db") as s:
        yield s


def test_open_creates_folders_and_sets_the_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "feedback.db"
    with Store(path) as store:
        assert path.is_file()
        assert store.schema_version == latest_version()
        store.record_answer(make_record())
        pragma = {
            name: store._db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("synchronous", "foreign_keys")
        }
        assert pragma == {"synchronous": 2, "foreign_keys": 1}  # 2 = FULL
        assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert Path(f"{path}-wal").exists()
    other = sqlite3.connect(path)  # the journal mode is stored in the file: any connection sees WAL
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_record_and_get_round_trip_every_field(tmp_path: Path) -> None:
    rec = make_record()
    refused = make_record(
        "a-2", refused=True, answer="I could not find this in the documents.", citations=[], confidence=0.04
    )
    with Store(tmp_path / "feedback.db") as store:
        assert store.record_answer(rec) is True
        assert store.record_answer(refused) is True
        assert store.get_answer("a-1") == rec
    with Store(tmp_path / "feedback.db") as store:  # and from disk, through a new connection
        got = store.get_answer("a-1")
        for name in rec.__dataclass_fields__:
            assert getattr(got, name) == getattr(rec, name), name
        assert store.get_answer("a-2") == refused
        assert store.get_answer("a-2").refused is True


def test_unknown_id_is_answer_not_found(store: Store) -> None:
    store.record_answer(make_record())
    with pytest.raises(AnswerNotFound, match="'nope'") as info:
        store.get_answer("nope")
    assert info.value.code is FeedbackErrorCode.ANSWER_NOT_FOUND


def test_recording_the_same_answer_twice_stores_one_row(store: Store) -> None:
    assert store.record_answer(make_record()) is True
    assert store.record_answer(make_record()) is False
    # the same payload built differently (key order, a tuple, an int for a float) is still the same answer
    same = make_record(
        generation={"stop": ("</s>",), "seed": 7, "max_tokens": 256, "top_p": 0.9, "temperature": 0.2},
        latency_ms={"retrieval": 12.5, "prompt": 0.4, "generation": 830.25, "total": 845, "ttft": 95},
    )
    assert store.record_answer(same) is False
    assert store.count_answers() == 1


def test_a_different_answer_under_an_existing_id_is_refused(store: Store) -> None:
    store.record_answer(make_record())
    with pytest.raises(InvalidRecord, match="different answer, completion_tokens") as info:
        store.record_answer(make_record(answer="Something else.", completion_tokens=3))
    assert info.value.code is FeedbackErrorCode.INVALID_RECORD
    assert store.get_answer("a-1") == make_record()
    assert store.count_answers() == 1


def test_a_record_broken_after_construction_is_not_written(store: Store) -> None:
    rec = make_record()
    rec.latency_ms["total"] = -5.0
    with pytest.raises(InvalidRecord, match="latency_ms"):
        store.record_answer(rec)
    assert store.count_answers() == 0


def _seed(store: Store) -> None:
    # (id, created_at, model, conversation); b and c share a timestamp: c was recorded later
    for answer_id, minute, model, conversation in [
        ("a", "00", "m1", "c1"),
        ("b", "01", "m1", "c2"),
        ("c", "01", "m2", "c1"),
        ("d", "02", "m2", "c2"),
        ("e", "03", "m1", "c1"),
    ]:
        store.record_answer(
            make_record(
                answer_id,
                created_at=f"2026-11-23T10:{minute}:00.000Z",
                model_version=model,
                conversation_id=conversation,
            )
        )


def _ids(records: list[AnswerRecord]) -> list[str]:
    return [r.answer_id for r in records]


def test_list_answers_is_newest_first_and_filters(store: Store) -> None:
    _seed(store)
    assert _ids(store.list_answers()) == ["e", "d", "c", "b", "a"]
    assert _ids(store.list_answers(model_version="m1")) == ["e", "b", "a"]
    assert _ids(store.list_answers(conversation_id="c1")) == ["e", "c", "a"]
    assert _ids(store.list_answers(model_version="m2", conversation_id="c1")) == ["c"]
    assert _ids(store.list_answers(model_version="nope")) == []
    # since is inclusive, until exclusive; any ISO-8601 form works
    assert _ids(store.list_answers(since="2026-11-23T10:01:00.000Z")) == ["e", "d", "c", "b"]
    assert _ids(store.list_answers(until="2026-11-23T10:01:00Z")) == ["a"]
    assert _ids(store.list_answers(since="2026-11-23T11:01:00+01:00", until="2026-11-23T10:03")) == [
        "d",
        "c",
        "b",
    ]
    assert _ids(store.list_answers(since="2026-11-24")) == []
    assert _ids(store.list_answers(limit=2)) == ["e", "d"]
    assert _ids(store.list_answers(limit=2, offset=2)) == ["c", "b"]
    assert _ids(store.list_answers(limit=2, offset=4)) == ["a"]
    assert store.list_answers(limit=0) == []


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"model_version": "m1"},
        {"conversation_id": "c2"},
        {"since": "2026-11-23T10:01:00.000Z"},
        {"until": "2026-11-23T10:02:00.000Z", "model_version": "m2"},
        {"since": "2030-01-01"},
    ],
)
def test_count_answers_agrees_with_list_answers(store: Store, filters: dict[str, Any]) -> None:
    _seed(store)
    assert store.count_answers(**filters) == len(store.list_answers(**filters, limit=1000))


@pytest.mark.parametrize(
    "filters",
    [{"since": "yesterday"}, {"until": "2026-13-01"}, {"limit": -1}, {"limit": 100_000}, {"offset": -1}],
)
def test_malformed_filters_are_invalid_filter(store: Store, filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter) as info:
        store.list_answers(**filters)
    assert info.value.code is FeedbackErrorCode.INVALID_FILTER


def test_a_file_that_is_not_sqlite_is_store_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    content = b"these are not the bytes of a SQLite database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt) as info:
        Store(path)
    assert str(path) in str(info.value)
    assert info.value.code is FeedbackErrorCode.STORE_CORRUPT
    assert path.read_bytes() == content  # left as it was, for whoever investigates


def test_a_folder_path_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="folder"):
        Store(tmp_path)


def test_a_writer_locked_out_past_the_timeout_gets_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    with Store(path, busy_timeout_s=0.2) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusy) as info:
                store.record_answer(make_record())
            assert info.value.code is FeedbackErrorCode.STORE_BUSY
            assert store.count_answers() == 0  # reads still work under WAL while the writer waits
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.record_answer(make_record()) is True  # and the store recovered


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    store = Store(tmp_path / "feedback.db")
    with store:
        store.record_answer(make_record())
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get_answer("a-1")
    store.close()  # closing twice is harmless


def test_integrity_check_tells_a_healthy_store_from_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    with Store(path) as store:
        for i in range(200):
            store.record_answer(make_record(f"a-{i:03d}"))
        assert store.integrity_check() is True
        page_size = store._db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = store._db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'answers_user'"
        ).fetchone()
    # closing the last connection checkpoints the WAL into the file; now scribble over one index page
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(b"\xff" * 64)
    with Store(path) as store:
        assert store.integrity_check() is False


def test_error_families_tell_the_api_which_status_to_answer() -> None:
    from feedback.errors import (
        AlreadyChosen,
        ComparisonNotFound,
        ConflictError,
        IdempotencyConflict,
        InvalidInput,
        NotFoundError,
    )

    assert issubclass(AnswerNotFound, NotFoundError) and issubclass(ComparisonNotFound, NotFoundError)  # 404
    assert issubclass(InvalidRecord, InvalidInput) and issubclass(InvalidFilter, InvalidInput)  # 422
    assert issubclass(AlreadyChosen, ConflictError) and issubclass(IdempotencyConflict, ConflictError)  # 409
    codes = [
        AnswerNotFound,
        ComparisonNotFound,
        InvalidRecord,
        InvalidFilter,
        AlreadyChosen,
        IdempotencyConflict,
    ]
    assert len({cls.code for cls in codes}) == len(codes)


def test_a_clock_giving_malformed_times_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "feedback.db", clock=lambda: "2026-11-23 10:00") as store:
        store.record_answer(make_record())
        with pytest.raises(InvalidRecord, match="clock"):
            store.vote("a-1", "u-bob", "up")
        assert store.list_votes() == []
