"""Stop strings over streamed text: emit what cannot be the start of a stop string, end at the first one.

A backend feeds every new piece of text to `StopMatcher.feed`; it returns the text that is safe to show
now (never a prefix of a stop string that the next tokens might complete) and whether a stop string was
reached. The stop string and what follows it are never shown.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""  # everything fed so far, cut at a stop string once one is found
        self.shown = 0  # characters of `text` already returned
        self.stopped = False

    def _held(self) -> int:
        """How many trailing characters of `text` could begin a stop string."""
        held = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text)), held, -1):
                if self.text.endswith(stop[:k]):
                    held = k
                    break
        return held

    def feed(self, piece: str) -> str:
        """The new text to show after `piece` arrives ("" once stopped)."""
        if self.stopped:
            return ""
        start = max(0, len(self.text) - max((len(s) for s in self.stops), default=0))
        self.text += piece
        hits = [i for s in self.stops if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True
            out = self.text[self.shown :]
            self.shown = len(self.text)
            return out
        safe = len(self.text) - self._held()
        out = self.text[self.shown : safe] if safe > self.shown else ""
        self.shown = max(self.shown, safe)
        return out

    def flush(self) -> str:
        """What is left to show when generation ends without a stop string."""
        out = self.text[self.shown :]
        self.shown = len(self.text)
        return out
