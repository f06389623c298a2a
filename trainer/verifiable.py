"""The verifiable part of the reward: checks of a response against its own prompt's passages.

Computed from the prompt's passages and the response only (rag/grounding.py's checks, the same the
service applies before showing an answer), never from golden answers, so it applies to any logged
prompt. Each component is a number in [0, 1] (1 = good); `trainer/composite.py` weighs them beside the
learned reward model with weights fitted on the employees' choices.

Components:
- `citations`: 1 when the response cites passages that were shown and none that was not; 0.5 with no
  marker at all; 0 with a marker naming no shown passage, and 0 for citation spam (more markers than
  words / 4);
- `grounding`: the share of its numbers, emails, URLs and names found in the passages it cites;
- `refusal`: 0 when the response says the passages do not answer although they were retrieved as
  answering (the service refuses before the model when retrieval finds nothing), else 1;
- `clean`: 0 for a loop or an echo of the prompt's scaffolding ("Question:", the instruction), else 1;
- `coverage`: how much of the question's content the response addresses (rag.grounding.coverage);
- `copying`: 1 - the share of the response that is one verbatim run of a passage over 12 words: pasting a
  passage wholesale is not an answer;
- `length`: a prior that prefers 10-80 words, falling off linearly to 0 at 0 and at 240 words.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.grounding import (
    coverage,
    degeneration,
    echo,
    grounding,
    invalid_markers,
    markers,
    says_not_covered,
    words,
)

COMPONENTS = ("citations", "grounding", "refusal", "clean", "coverage", "copying", "length")


def citation_score(response: str, shown: int) -> float:
    found = markers(response)
    if invalid_markers(response, shown):
        return 0.0
    if not found:
        return 0.5
    if len(found) > max(1, len(words(response)) // 4):
        return 0.0  # citation spam: markers instead of an answer
    return 1.0


def copied_share(response: str, passages: Sequence[str], min_run: int = 12) -> float:
    """The share of the response's words inside verbatim runs of at least `min_run` words that also
    occur in one passage."""
    mine = words(response)
    if len(mine) < min_run:
        return 0.0
    grams = set()
    for passage in passages:
        theirs = words(passage)
        grams |= {tuple(theirs[i : i + min_run]) for i in range(len(theirs) - min_run + 1)}
    covered = [False] * len(mine)
    for i in range(len(mine) - min_run + 1):
        if tuple(mine[i : i + min_run]) in grams:
            for j in range(i, i + min_run):
                covered[j] = True
    return sum(covered) / len(mine)


def length_prior(n_words: int, low: int = 10, high: int = 80, limit: int = 240) -> float:
    if n_words <= 0:
        return 0.0
    if n_words < low:
        return n_words / low
    if n_words <= high:
        return 1.0
    return max(0.0, 1.0 - (n_words - high) / (limit - high))


def components(response: str, passages: Sequence[str], question: str) -> dict[str, float]:
    """Every component of one response to a prompt with these passages and this question."""
    shown = len(passages)
    cites = [n for n in dict.fromkeys(markers(response)) if 1 <= n <= shown]
    cited = [passages[n - 1] for n in cites] or list(passages)
    share, _ = grounding(response, cited)
    loop = degeneration(response) or echo(response, question)
    return {
        "citations": citation_score(response, shown),
        "grounding": share,
        "refusal": 0.0 if passages and says_not_covered(response) else 1.0,
        "clean": 0.0 if loop or not response.strip() else 1.0,
        "coverage": coverage(question, response) if question else 1.0,
        "copying": 1.0 - copied_share(response, passages),
        "length": length_prior(len(words(response))),
    }


def check_score(prompt: str, response: str) -> float:
    """The mean of the components of a response to a rendered prompt: the gate's judge of held-out
    answers, which no policy update optimises directly (PPO's reward weighs these beside the learned
    model with fitted weights)."""
    values = features(prompt, response)
    return sum(values) / len(values)


def features(prompt: str, response: str) -> list[float]:
    """The components of a response to a rendered prompt, in `COMPONENTS` order."""
    from rag.prompting import parse_prompt

    passages, question = parse_prompt(prompt)
    values = components(response, passages, question)
    return [values[name] for name in COMPONENTS]
