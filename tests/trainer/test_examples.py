"""trainer.examples: corrections as pairs; and the data modules import without torch."""

from __future__ import annotations

from tests.conftest import REPO
from trainer.examples import Demonstration, correction_pairs

PROMPT = "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>"


def test_importing_the_data_modules_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, feedback.readers, trainer.examples, trainer.feedback_data, trainer.hygiene, "
        "trainer.jsonl, trainer.prompts; "
        "print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_correction_is_a_pair_over_the_answer_it_replaced() -> None:
    def demo(completion: str, corrected: str | None, source: str = "correction") -> Demonstration:
        return Demonstration(PROMPT, completion, "pid", source, "u1", corrected=corrected)  # type: ignore[arg-type]

    pairs = correction_pairs(
        [
            demo("25 days [1].", "Some days."),
            demo("Same text.", " Same text. "),  # nothing changed: no preference
            demo("The golden answer [1].", None, "golden"),  # replaced nothing
            demo("A rewrite of nothing.", None),  # an answer without text
            demo("Ten days [2].", "Twenty days."),
        ]
    )
    assert [(p.chosen, p.rejected, p.source, p.chosen_position) for p in pairs] == [
        ("25 days [1].", "Some days.", "correction", None),
        ("Ten days [2].", "Twenty days.", "correction", None),
    ]
    assert all(p.prompt == PROMPT and p.prompt_id == "pid" and p.user_id == "u1" for p in pairs)
