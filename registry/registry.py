"""Model versions and the aliases that serve them, with their full history (who, when, why).

Versions are folders under DATA_DIR/models/versions/ (registry/versions.py); their training report and
gate result live in `training.json` beside the adapter. The aliases `champion`, `candidate` and
`canary` (and the canary's traffic share) are kept in SQLite, DATA_DIR/models/registry.db (schema in
registry/migrations.py), with one event row per change: the source of truth. The service reads the
aliases from `aliases.json`, a mirror written after each committed change, so a crash between the two
leaves the previous champion serving until `Registry` next opens and re-mirrors; it reads the canary's
share with `read_canary_share` (read-only, no lock taken).

Changing an alias is compare-and-set inside `BEGIN IMMEDIATE`: two operators promoting at once both
read the same current champion, one commits, the other finds the champion moved and gets a Conflict.
A version becomes champion or canary only after `smoke(version)` (load it and answer a prompt)
succeeds, so a corrupt or missing adapter never serves.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.clock import utc_now
from core.files import write_json
from feedback.connection import enable_wal
from registry.errors import (
    Conflict,
    GateFailed,
    InvalidRequest,
    NothingToRollBack,
    NotPromotable,
    UnknownVersion,
)
from registry.gate import GateThresholds, evaluate_gate
from registry.migrations import immediate_transaction, migrate
from registry.reports import GateVerdict, RefreshReport
from registry.versions import ModelDirectory, ModelVersion, is_version_id

DB_NAME = "registry.db"
_CANARY_SHARE = "SELECT value FROM registry_settings WHERE key = 'canary_share'"

Smoke = Callable[[ModelVersion], None]


@dataclass(frozen=True)
class AliasEvent:
    id: int
    at: str
    alias: str
    action: str
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str
    override: bool
    detail: dict[str, Any]


def read_canary_share(models_dir: Path) -> float:
    """The canary's traffic share, cheap enough for the service to read on its requests: a read-only
    connection (no write lock, no migration, no journal-mode switch) that waits at most a second for a
    writer. 0.0 when registry.db does not exist yet or cannot be read: the champion serves everything."""
    path = models_dir / DB_NAME
    if not path.exists():
        return 0.0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute(_CANARY_SHARE).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0.0
    return float(row[0]) if row else 0.0


class Registry:
    def __init__(self, models_dir: Path, thresholds: GateThresholds | None = None) -> None:
        self.models = ModelDirectory(models_dir)
        self.thresholds = thresholds or GateThresholds()
        models_dir.mkdir(parents=True, exist_ok=True)
        self.path = models_dir / DB_NAME
        with self._connect() as conn:
            migrate(conn)  # the schema (registry/migrations.py); a newer one raises SchemaTooNew
        with self._transaction() as conn:  # under the write lock: two first opens adopt once
            if conn.execute("SELECT count(*) FROM aliases").fetchone()[0] == 0:
                self._adopt(conn)
        self._mirror()

    # -- storage ----------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        enable_wal(conn, 30)  # two first opens at once: the mode switch does not wait by itself
        conn.execute("PRAGMA synchronous=FULL")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn, immediate_transaction(conn):
            yield conn

    def _adopt(self, conn: sqlite3.Connection) -> None:
        """First open: take over the aliases the service has written so far (aliases.json)."""
        for alias, version_id in self.models.aliases().items():
            at = utc_now()
            conn.execute(
                "INSERT INTO aliases VALUES (?, ?, ?, 'system', 'adopted from aliases.json')",
                (alias, version_id, at),
            )
            conn.execute(
                "INSERT INTO alias_events (at, alias, action, to_version, actor, reason) "
                "VALUES (?, ?, 'adopt', ?, 'system', 'adopted from aliases.json')",
                (at, alias, version_id),
            )

    def _mirror(self) -> None:
        """Write the aliases the service reads (atomically), from the database."""
        aliases = self.aliases()
        if aliases != self.models.aliases():
            self.models.root.mkdir(parents=True, exist_ok=True)
            write_json(self.models.root / "aliases.json", aliases)

    # -- reading ----------------------------------------------------------------------------------
    def aliases(self) -> dict[str, str]:
        with self._connect() as conn:
            return {
                r["alias"]: r["version_id"] for r in conn.execute("SELECT alias, version_id FROM aliases")
            }

    def canary_share(self) -> float:
        with self._connect() as conn:
            row = conn.execute(_CANARY_SHARE).fetchone()
        return float(row["value"]) if row else 0.0

    def history(self, alias: str | None = None, limit: int = 100) -> list[AliasEvent]:
        sql = "SELECT * FROM alias_events"
        params: list[Any] = []
        if alias is not None:
            sql += " WHERE alias = ?"
            params.append(alias)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._connect() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            AliasEvent(
                r["id"],
                r["at"],
                r["alias"],
                r["action"],
                r["from_version"],
                r["to_version"],
                r["actor"],
                r["reason"],
                bool(r["override"]),
                json.loads(r["detail"]),
            )
            for r in rows
        ]

    def version(self, version_id: str) -> ModelVersion:
        aliases = self.aliases()
        name = aliases.get(version_id, version_id)
        folder = self.models.root / "versions" / name
        if not is_version_id(name) or not (folder / "manifest.json").exists():
            valid = sorted(aliases) + [v.id for v in self.models.versions()]
            raise UnknownVersion(f"unknown model version {version_id!r}; valid: {', '.join(valid) or 'none'}")
        return self.models.get(name)

    def report(self, version_id: str) -> dict[str, Any]:
        """The training report of a version (`training.json`), {} for the base or a hand-made one."""
        if not is_version_id(version_id):
            return {}
        path = self.models.root / "versions" / version_id / "training.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def gate(self, version_id: str) -> GateVerdict:
        """The gate on the version's stored report (recomputed with the current thresholds)."""
        return evaluate_gate(self.refresh_report(version_id), self.thresholds)

    def refresh_report(self, version_id: str) -> RefreshReport:
        """The typed report of the refresh that produced the version (empty for the base)."""
        return RefreshReport.from_json(self.report(version_id).get("report"))

    def describe(self, version_id: str) -> dict[str, Any]:
        version = self.version(version_id)
        aliases = self.aliases()
        report = self.report(version.id)
        return {
            "id": version.id,
            "base": version.base,
            "adapter": version.adapter,
            "parent": version.parent,
            "created": version.created,
            "status": version.status,
            "aliases": sorted(a for a, v in aliases.items() if v == version.id),
            "run": report.get("run"),
            "report": report.get("report", {}),
            "gate": self.gate(version.id).to_json() if version.parent else None,
        }

    # -- changing aliases -------------------------------------------------------------------------
    def _set(
        self,
        conn: sqlite3.Connection,
        alias: str,
        version_id: str | None,
        *,
        action: str,
        actor: str,
        reason: str,
        expected: str | None,
        override: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> None:
        row = conn.execute("SELECT version_id FROM aliases WHERE alias = ?", (alias,)).fetchone()
        current = row["version_id"] if row else None
        if current != expected:
            raise Conflict(
                f"{alias} is now {current or 'unset'}, not {expected or 'unset'}: "
                "another operator changed it; reload and try again"
            )
        at = utc_now()
        if version_id is None:
            conn.execute("DELETE FROM aliases WHERE alias = ?", (alias,))
        else:
            conn.execute(
                "INSERT INTO aliases VALUES (?, ?, ?, ?, ?) ON CONFLICT(alias) DO UPDATE SET "
                "version_id = excluded.version_id, updated_at = excluded.updated_at, actor = excluded.actor, "
                "reason = excluded.reason",
                (alias, version_id, at, actor, reason),
            )
        conn.execute(
            "INSERT INTO alias_events (at, alias, action, from_version, to_version, actor, reason, override, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at, alias, action, current, version_id, actor, reason, int(override), json.dumps(detail or {})),
        )

    def _check_servable(self, version: ModelVersion, smoke: Smoke | None) -> None:
        if version.status == "failed":
            raise NotPromotable(f"{version.id} is a failed version and cannot serve")
        adapter = version.adapter_path(self.models.root)
        if adapter is not None and not (adapter / "adapter_config.json").exists():
            raise NotPromotable(f"{version.id} has no adapter at {adapter}; it cannot serve")
        if smoke is not None:
            try:
                smoke(version)
            except Exception as exc:
                raise NotPromotable(f"{version.id} failed its smoke test (load + answer): {exc}") from exc

    def promote(
        self,
        version_id: str,
        *,
        actor: str,
        reason: str,
        override: bool = False,
        smoke: Smoke | None = None,
        expected_champion: str | None = None,
    ) -> AliasEvent:
        """Make `version_id` the champion. The gate must pass unless `override` (which is audited)."""
        if not reason.strip():
            raise InvalidRequest("say why: a promotion needs a reason (it is kept in the history)")
        version = self.version(version_id)
        current = self.aliases().get("champion")
        if version.id == current:
            raise InvalidRequest(f"{version.id} is already the champion")
        gate = self.gate(version.id)
        if version.parent and not gate.passed and not override:
            failed = ", ".join(c.name for c in gate.checks if not c.passed)
            raise GateFailed(
                f"{version.id} failed the evaluation gate ({failed}); promote with override to force it"
            )
        self._check_servable(version, smoke)
        expected = expected_champion if expected_champion is not None else current
        with self._transaction() as conn:
            self._set(
                conn,
                "champion",
                version.id,
                action="promote",
                actor=actor,
                reason=reason,
                expected=expected,
                override=override and not gate.passed,
                detail={"gate": gate.to_json()},
            )
            for alias in ("candidate", "canary"):  # the promoted version leaves its old roles
                row = conn.execute("SELECT version_id FROM aliases WHERE alias = ?", (alias,)).fetchone()
                if row and row["version_id"] == version.id:
                    self._set(
                        conn,
                        alias,
                        None,
                        action="clear",
                        actor=actor,
                        reason=f"{version.id} promoted",
                        expected=version.id,
                    )
        self._mirror()
        return self.history("champion", 1)[0]

    def rollback(self, *, actor: str, reason: str, smoke: Smoke | None = None) -> AliasEvent:
        """Restore the champion that the current one replaced."""
        current = self.aliases().get("champion")
        previous = next(
            (
                e.from_version
                for e in self.history("champion", 1000)
                if e.action == "promote" and e.to_version == current and e.from_version
            ),
            None,
        )
        if previous is None:
            raise NothingToRollBack(f"{current} has no previous champion to return to")
        version = self.version(previous)
        self._check_servable(version, smoke)
        with self._transaction() as conn:
            self._set(
                conn,
                "champion",
                previous,
                action="rollback",
                actor=actor,
                reason=reason or "rollback",
                expected=current,
            )
        self._mirror()
        return self.history("champion", 1)[0]

    def set_canary(
        self, version_id: str | None, share: float, *, actor: str, reason: str, smoke: Smoke | None = None
    ) -> AliasEvent:
        """Route `share` (0..1) of new conversations to `version_id`; None stops the canary."""
        if not 0.0 <= share <= 1.0:
            raise InvalidRequest(f"the canary share must be between 0 and 1, got {share}")
        current = self.aliases().get("canary")
        if version_id is not None:
            version = self.version(version_id)
            if version.id == self.aliases().get("champion"):
                raise InvalidRequest(f"{version.id} is the champion; a canary must be another version")
            self._check_servable(version, smoke)
            target: str | None = version.id
        else:
            target, share = None, 0.0
        with self._transaction() as conn:
            self._set(
                conn,
                "canary",
                target,
                action="canary" if target else "clear",
                actor=actor,
                reason=reason,
                expected=current,
                detail={"share": share},
            )
            conn.execute(
                "INSERT INTO registry_settings VALUES ('canary_share', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(share),),
            )
        self._mirror()
        return self.history("canary", 1)[0]

    def set_candidate(self, version_id: str, *, actor: str, reason: str) -> AliasEvent:
        version = self.version(version_id)
        with self._transaction() as conn:
            current = conn.execute("SELECT version_id FROM aliases WHERE alias = 'candidate'").fetchone()
            self._set(
                conn,
                "candidate",
                version.id,
                action="candidate",
                actor=actor,
                reason=reason,
                expected=current["version_id"] if current else None,
            )
        self._mirror()
        return self.history("candidate", 1)[0]
