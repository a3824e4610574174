"""Built-in formulations: how (post, criterion) pairs become model inputs.

- ``pair``: the cross-encoder, ``[CLS] post [SEP] criterion [SEP]``, one forward per pair; the
  model reads post and criterion together (the seeds' formulation).
- ``multilabel``: each post encoded once, one output (logit pair) per criterion known at
  training time: 1/9 of the encoder work of ``pair`` on the nine MDD criteria.
- ``biencoder``: posts and criterion texts encoded apart (the criteria once per batch), a small
  learned scorer on the two embeddings; it can score criteria it was not trained on.
"""

from __future__ import annotations

from typing import Any

from criteria import (
    ChoiceParam,
    FormulationPlugin,
    PluginConfig,
    hookimpl,
    pair_units,
    post_units,
    with_criteria,
)


class Pair(FormulationPlugin):
    name = "pair"
    summary = "Cross-encoder: post and criterion read together, one forward per (post, criterion)."
    priority = 10

    def units(self, corpus: Any) -> Any:
        return pair_units(corpus)


class MultiLabel(FormulationPlugin):
    name = "multilabel"
    summary = "Each post encoded once; one output per criterion known at training time."

    def units(self, corpus: Any) -> Any:
        return post_units(corpus)


class BiEncoderConfig(PluginConfig):
    dim: int = ChoiceParam(128, search=(64, 128, 256), ge=8, le=4096,
                           description="Size of the post and criterion embeddings the head produces.")
    hidden: int = ChoiceParam(128, search=(64, 128, 256), ge=8, le=4096,
                              description="Hidden units of the scorer on [u, v, u*v, |u-v|].")


class BiEncoder(FormulationPlugin):
    name = "biencoder"
    summary = "Post and criterion texts encoded apart (criteria once per batch), scored by a small learned head."
    Config = BiEncoderConfig
    scores_new_criteria = True

    def units(self, corpus: Any) -> Any:
        return with_criteria(post_units(corpus), corpus)

    def head_outputs(self, slots: int) -> int:
        return self.config.dim

    def build_scorer(self, head_outputs: int) -> Any:
        from criteria_builtins.modules import PairScorer

        return PairScorer(head_outputs, self.config.hidden)

    def scores(self, head_out: Any, scorer: Any, criteria_out: Any) -> Any:
        return scorer(head_out, criteria_out)

    def build_evidence(self, hidden_size: int, head_outputs: int, slots: int) -> Any:
        import torch

        # A sentence is projected into the criterion embeddings' space and scored by similarity,
        # so evidence is found for criteria the model was not trained on too.
        return torch.nn.Linear(hidden_size, head_outputs)

    def evidence_scores(self, sentence_states: Any, evidence: Any, criteria_out: Any) -> Any:
        import torch

        # scaled like attention scores: dot products of d-dimensional vectors grow like sqrt(d)
        scale = criteria_out.shape[-1] ** 0.5
        return torch.einsum("usd,cd->usc", evidence(sentence_states).float(), criteria_out.float()) / scale


@hookimpl
def register_formulations(register):
    register(Pair, MultiLabel, BiEncoder)
