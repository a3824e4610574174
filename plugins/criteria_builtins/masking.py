"""Built-in masking strategies for continued pretraining (``[masking]``, used by ``[pretrain]``).

Each chooses about ``probability`` of a sequence's tokens (never a special token) for the masked
language model to predict:

- ``token``: single tokens, independently (BERT);
- ``whole_word``: whole words, every piece of a chosen word together (BERT's whole-word masking):
  the model cannot guess ``##ness`` from ``hopeless``;
- ``span``: runs of whole words with geometrically distributed lengths (SpanBERT): the model
  must rebuild a phrase from its surroundings.

A share such as 15% of 13 tokens is 1.95: the strategies choose 1 or 2 tokens at random with the
right mean (1.95), so short posts are masked as often as long ones on average.
"""

from __future__ import annotations

from typing import Any, Callable

from criteria import FloatParam, IntParam, MaskingPlugin, PluginConfig, hookimpl

CRITERIA_PLUGIN_API = 1


def _budget(tokens: int, probability: float, rng: Any) -> int:
    """``probability * tokens`` rounded up or down at random, with that mean."""
    exact = probability * tokens
    whole = int(exact)
    return whole + int(rng.random() < exact - whole)


def _word_spans(words: Any) -> list[Any]:
    """The token positions of each word, in order (special tokens, -1, belong to none)."""
    import numpy as np

    positions = np.flatnonzero(words >= 0)
    if not len(positions):
        return []
    starts = np.flatnonzero(np.diff(words[positions], prepend=-2) != 0)
    return np.split(positions, starts[1:])


class Token(MaskingPlugin):
    name = "token"
    summary = "Single tokens, chosen independently (BERT)."
    priority = 10

    def build(self, probability: float) -> Callable[[Any, Any], Any]:
        import numpy as np

        def select(words: Any, rng: Any) -> Any:
            maskable = np.flatnonzero(words >= 0)
            chosen = np.zeros(len(words), dtype=bool)
            count = min(len(maskable), _budget(len(maskable), probability, rng))
            chosen[rng.choice(maskable, size=count, replace=False)] = True
            return chosen

        return select


class WholeWord(MaskingPlugin):
    name = "whole_word"
    summary = "Whole words: every piece of a chosen word is masked together (BERT whole-word masking)."

    def build(self, probability: float) -> Callable[[Any, Any], Any]:
        import numpy as np

        def select(words: Any, rng: Any) -> Any:
            spans = _word_spans(words)
            chosen = np.zeros(len(words), dtype=bool)
            budget = _budget(int((words >= 0).sum()), probability, rng)
            taken = 0
            for index in rng.permutation(len(spans)):
                if taken >= budget:
                    break
                span = spans[index]
                if taken + len(span) > budget and taken:  # a long word that overshoots: try a shorter one
                    continue
                chosen[span] = True
                taken += len(span)
            return chosen

        return select


class SpanConfig(PluginConfig):
    mean_length: float = FloatParam(3.0, ge=1.0, le=10.0, search=(2.0, 5.0),
                                    description="Mean span length in words (geometric distribution).")
    max_length: int = IntParam(10, ge=1, le=100, description="Longest span, in words.")


class Span(MaskingPlugin):
    name = "span"
    summary = "Spans of whole words with geometric lengths (SpanBERT)."
    Config = SpanConfig

    def build(self, probability: float) -> Callable[[Any, Any], Any]:
        import numpy as np

        p = 1.0 / self.config.mean_length
        longest = self.config.max_length

        def select(words: Any, rng: Any) -> Any:
            spans = _word_spans(words)
            chosen = np.zeros(len(words), dtype=bool)
            budget = _budget(int((words >= 0).sum()), probability, rng)
            for _ in range(4 * len(spans)):  # enough tries to reach the budget, never forever
                if not spans or int(chosen.sum()) >= budget:
                    break
                length = min(int(rng.geometric(p)), longest)
                start = int(rng.integers(len(spans)))
                for span in spans[start:start + length]:
                    if int(chosen.sum()) + len(span) > budget and chosen.any():
                        break
                    chosen[span] = True
            return chosen

        return select


@hookimpl
def register_masking_strategies(register):
    register(Token, WholeWord, Span)
