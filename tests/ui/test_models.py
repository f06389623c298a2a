"""The Models tab's pure pieces: the versions table, the details beside the champion, escaping, curves."""

from __future__ import annotations

import json
from pathlib import Path

from ui.models import details, training_curves, version_rows

REPORT = {
    "evaluation": {
        "candidate": {
            "similarity": 0.61,
            "citation_correct": 0.5,
            "refusal_rate_unanswerable": 0.4,
            "length_tokens": 42.0,
            "reward": 0.3,
        },
        "champion": {
            "similarity": 0.6,
            "citation_correct": 0.45,
            "refusal_rate_unanswerable": 0.4,
            "length_tokens": 50.0,
            "reward": 0.1,
        },
        "reward_win_rate": 0.7,
        "length_drift": -0.16,
    },
    "policy": {"kl_to_champion": 3.21},
}


def row(run: str | None = None) -> dict:
    return {
        "id": "v0002",
        "aliases": ["canary"],
        "parent": "v0001",
        "created": "2026-11-23T19:00:00Z",
        "report": REPORT,
        "run": run,
        "gate": {
            "passed": False,
            "checks": [
                {
                    "name": "kl<script>",
                    "value": 3.21,
                    "limit": 2.0,
                    "passed": False,
                    "detail": "<img src=x onerror=alert(1)>",
                }
            ],
        },
    }


def test_table_and_details_show_the_candidate_beside_the_champion_escaped() -> None:
    rows = version_rows([row()], share=0.25)
    assert rows == [
        [
            "v0002",
            "canary (25%)",
            "v0001",
            "2026-11-23 19:00",
            "failed",
            "0.610",
            "0.500",
            "0.400",
            "42.0",
            "3.21",
        ]
    ]
    text = details(row())
    assert "| answer similarity | 0.610 | 0.600 |" in text and "| length (tokens) | 42.000 | 50.000 |" in text
    assert "Gate failed" in text and "<script>" not in text and "<img" not in text


def test_training_curves_read_the_runs_ppo_metrics(tmp_path: Path) -> None:
    (tmp_path / "ppo").mkdir()
    lines = [{"step": 1, "reward": 0.1, "kl": 0.0, "entropy": 2.0}, {"step": 2, "reward": 0.3, "kl": 0.5}]
    (tmp_path / "ppo" / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n{cut")
    frame = training_curves(row(str(tmp_path)))
    assert len(frame) == 5 and set(frame["metric"]) == {"reward", "kl", "entropy"}
    assert training_curves(row(None)).empty


def test_trainer_markdown_shows_the_running_phase_with_eta_and_escapes_values() -> None:
    from ui.models import trainer_markdown
    from ui.render import markdown_text

    status = {
        "running": True,
        "pid": 12,
        "refresh": {
            "folder": "/var/runs/refresh-20261202-180000",
            "status": "running",
            "stop_requested": None,
            "error": None,
            "phases": [
                {
                    "name": "reward",
                    "status": "running",
                    "progress": {
                        "phase": "reward model: training",
                        "done": 30,
                        "total": 120,
                        "unit": "step",
                        "eta_s": 905.0,
                        "state": "running",
                    },
                    "metrics": {"step": 30, "loss": 0.61, "note": "x"},
                },
                {"name": "ppo", "status": "failed", "progress": None, "metrics": {}},
            ],
        },
        "last": {"status": "failed", "started": "2026-12-01T10:00:00Z", "candidate": "<b>v9</b>"},
    }
    text = trainer_markdown(status)
    assert "**Trainer:** refreshing" in text
    label = markdown_text("reward model: training")
    assert f"| {label} | running | 30/120 step | 15m05s | loss 0.61 |" in text
    assert "| ppo | failed | - | - | - |" in text
    assert "<b>" not in text  # escaped
    assert trainer_markdown({"running": False, "refresh": None, "last": None}) == "**Trainer:** idle"
