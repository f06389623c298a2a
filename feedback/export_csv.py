"""The feedback tables as CSV for people (spreadsheets, notebooks): current votes, comparisons,
corrections, each joined with the model versions of the answers it concerns.

Same filters and streaming as feedback.export: `since <= t < until` on when the row was last written
(a vote's current value, a comparison's creation, a correction), `model_version` on the answer (for
comparisons: either side). Texts are written as they are (the csv module quotes them); reasons are
joined with ";". The last column, `restricted_groups`, names the access groups of the passages the
answers' prompts held (";"-joined; empty when all were public): such rows must not train a model
served to everyone. Open them in a spreadsheet with care: a comment starting with "=" is a formula there.
"""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING, Literal, NamedTuple

from feedback.export import Destination, ExportSummary, filters, open_destination, restricted_groups
from feedback.filters import where

if TYPE_CHECKING:
    from feedback.store import Store

Table = Literal["votes", "comparisons", "corrections"]


class _Spec(NamedTuple):
    select: str
    time_column: str
    model_columns: tuple[str, ...]
    order: str
    groups: tuple[str, ...]  # the selected passage_groups columns, written as one `restricted_groups`


_SPECS: dict[str, _Spec] = {
    "votes": _Spec(
        "SELECT v.answer_id, v.user_id, a.model_version, v.value, v.reasons, v.comment, v.created_at, "
        "v.updated_at, a.passage_groups FROM votes v JOIN answers a USING (answer_id)",
        "v.updated_at",
        ("a.model_version",),
        "v.updated_at, v.rowid",
        ("passage_groups",),
    ),
    "comparisons": _Spec(
        "SELECT c.comparison_id, c.user_id, c.created_at, c.left_answer_id, l.model_version AS "
        "left_model_version, c.right_answer_id, r.model_version AS right_model_version, c.choice, "
        "c.chosen_at, l.passage_groups AS left_groups, r.passage_groups AS right_groups FROM comparisons c "
        "JOIN answers l ON l.answer_id = c.left_answer_id JOIN answers r ON r.answer_id = c.right_answer_id",
        "c.created_at",
        ("l.model_version", "r.model_version"),
        "c.created_at, c.rowid",
        ("left_groups", "right_groups"),
    ),
    "corrections": _Spec(
        "SELECT k.correction_id, k.answer_id, k.user_id, a.model_version, k.created_at, k.text, "
        "a.passage_groups FROM corrections k JOIN answers a USING (answer_id)",
        "k.created_at",
        ("a.model_version",),
        "k.created_at, k.rowid",
        ("passage_groups",),
    ),
}


def export_csv(
    store: Store,
    out: Destination,
    table: Table,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> ExportSummary:
    """Write `table` as CSV with a header row, oldest first; `written` counts the data rows."""
    if table not in _SPECS:
        raise ValueError(f"table must be one of {sorted(_SPECS)}, got {table!r}")
    spec = _SPECS[table]
    clauses, params = filters(spec.time_column, spec.model_columns, since, until, model_version)
    sql = f"{spec.select}{where(clauses)} ORDER BY {spec.order}"
    written = 0
    with store.snapshot() as conn, open_destination(out, newline="") as (stream, path):
        cursor = conn.execute(sql, params)  # streams: rows are fetched as the loop asks for them
        header = [column[0] for column in cursor.description]
        at_groups = [header.index(column) for column in spec.groups]
        writer = csv.writer(stream)
        writer.writerow([c for i, c in enumerate(header) if i not in at_groups] + ["restricted_groups"])
        for row in cursor:
            values = ["" if value is None else value for value in row]
            if "reasons" in header:
                at = header.index("reasons")
                values[at] = ";".join(json.loads(values[at]))
            groups = restricted_groups(*(row[i] for i in at_groups))
            writer.writerow([v for i, v in enumerate(values) if i not in at_groups] + [";".join(groups)])
            written += 1
    return ExportSummary(f"{table}-csv", written, {}, path)
