"""The composite reward's fit, by hand: agreement counts, a separable fit, and the combination."""

from __future__ import annotations

import numpy as np
import pytest

from rag.prompting import Passage, parse_prompt, question_message
from trainer.composite import CompositeReward, agreement, cross_validated, fit_composite, fit_weights
from trainer.verifiable import (
    COMPONENTS,
    check_score,
    citation_score,
    components,
    copied_share,
    length_prior,
)


def test_agreement_by_hand() -> None:
    diffs = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [2.0, -3.0]])
    # margins with w = (1, 1): 1 (right), -1 (wrong), 0 (tie: half), -1 (wrong) -> 1.5 / 4
    assert agreement(diffs, np.array([1.0, 1.0])) == pytest.approx(1.5 / 4)


def test_the_fit_puts_weight_on_the_feature_that_decides() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(200, 1))
    decides = np.abs(rng.normal(size=(200, 1))) + 0.1  # chosen always higher on feature 0
    diffs = np.hstack([decides, noise])
    weights = fit_weights(diffs)
    assert weights[0] > 1.0 and abs(weights[1]) < weights[0] / 4
    assert cross_validated(diffs) == 1.0


def test_fit_composite_reports_each_component() -> None:
    k = 1 + len(COMPONENTS)
    chosen = np.zeros((10, k))
    chosen[:, 2] = 1.0  # grounding decides
    rejected = np.zeros((10, k))
    composite = fit_composite((chosen, rejected), (chosen[:4], rejected[:4]), mean=1.0, std=2.0)
    assert composite.report["heldout_agreement"] == 1.0
    assert composite.report["component_agreement"]["grounding"] == 1.0
    assert composite.report["component_agreement"]["learned"] == 0.5  # no difference: ties
    restored = CompositeReward.from_json(composite.to_json())
    assert restored.weights == composite.weights
    # combine: learned 3 -> z = (3 - 1) / 2 = 1, times its weight (0 here) + the checks
    row = [0.0] * len(COMPONENTS)
    row[COMPONENTS.index("grounding")] = 1.0
    assert restored.combine([3.0], [row]) == pytest.approx([composite.weights["grounding"]])


def test_verifiable_components_by_hand() -> None:
    passage = "New employees get 15 vacation days in their first year. The calendar has 11 paid holidays."
    assert citation_score("15 days [1].", 1) == 1.0
    assert citation_score("15 days.", 1) == 0.5
    assert citation_score("15 days [2].", 1) == 0.0
    assert citation_score("[1] [1] [1] days", 1) == 0.0
    assert length_prior(5) == 0.5 and length_prior(50) == 1.0 and length_prior(160) == 0.5
    assert copied_share(passage, [passage]) == 1.0
    assert copied_share("New employees get 15 vacation days [1].", [passage]) == 0.0
    got = components("New employees get 16 vacation days [1].", [passage], "vacation days for new employees")
    assert got["grounding"] == 0.0 and got["citations"] == 1.0 and got["clean"] == 1.0
    assert components("The passages do not cover it.", [passage], "q")["refusal"] == 0.0


def test_parse_prompt_inverts_question_message() -> None:
    passages = [
        Passage(1, "c1", "a.md", "A", "", "First text.\n\nWith a paragraph."),
        Passage(2, "c2", "b.md", "B", "", "Second."),
    ]
    rendered = "<|im_start|>user\n" + question_message(passages, "Where is it?") + "<|im_end|>\n"
    texts, question = parse_prompt(rendered)
    assert texts == ["First text.\n\nWith a paragraph.", "Second."] and question == "Where is it?"
    assert parse_prompt("no passages here") == ([], "")


def test_check_score_is_the_mean_of_the_components_of_the_rendered_prompt() -> None:
    passages = [Passage(1, "c1", "a.md", "A", "", "New employees get 15 vacation days in their first year.")]
    rendered = "<|im_start|>user\n" + question_message(passages, "vacation days") + "<|im_end|>\n"
    answer = "15 vacation days [1]."
    values = components(answer, [passages[0].text], "vacation days")
    assert check_score(rendered, answer) == pytest.approx(sum(values.values()) / len(COMPONENTS))
    # 4 words: length 0.4; cited, grounded, clean, not a refusal, covers the question, not copied
    assert values["length"] == 0.4 and check_score(rendered, answer) == pytest.approx((6 + 0.4) / 7)
    assert check_score(rendered, "15 vacation days [3].") < check_score(rendered, answer)  # invalid marker
