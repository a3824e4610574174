"""Prefix tuning, written for criteria as deep prompt tuning on the residual stream.

peft's ``PrefixTuning`` hands each layer its prefix through ``past_key_values``, which
``DebertaV2Model`` (transformers 5) does not take. So the prefix is built here
(:mod:`criteria_builtins.prefix_modules`, imported inside ``build``), the same way for BERT- and
DeBERTa-shaped encoders: ``num_virtual_tokens`` positions are put before the sequence, and at the
input of every layer their hidden states are set to that layer's own trained vectors, so every
layer's attention reads a learned per-layer prefix (P-Tuning v2's deep prompts, VPT-deep). Unlike
``past_key_values`` prefixes, a layer's prefix keys and values are that layer's own projections of
one trained state per position, not two free vectors. The real tokens keep their embeddings and
positions, and the encoder returns their states only, so heads read [CLS] where they always do.
The method cannot be folded into the base weights: ``merged`` returns None, the trained prefix is
saved beside the base model, and ``build`` re-applies it when the model is loaded.
"""

from __future__ import annotations

from typing import Any

from criteria import BoolParam, ChoiceParam, FloatParam, PeftPlugin, PluginConfig, TrainingPlan, hookimpl

#: Where the prefix module sits on the encoder, so its weights are named ``prefix_encoder.*``.
PREFIX_NAME = "prefix_encoder"


class PrefixTuningConfig(PluginConfig):
    num_virtual_tokens: int = ChoiceParam(
        20, search=(10, 20, 30), ge=1, le=256,
        description="Trained prefix positions every layer's attention reads.")
    projection: bool = BoolParam(
        False, description="Produce the per-layer states with Li & Liang's reparameterization (an embedding "
                           "through a tanh MLP) rather than training them directly.")
    projection_hidden_size: int = ChoiceParam(
        512, search=(128, 256, 512), ge=1, le=8192,
        description="Width of the reparameterization MLP (with projection only).")
    lr_multiplier: float = FloatParam(
        100.0, ge=1.0, le=10000.0, search=(10.0, 1000.0), log=True,
        description="Learning rate of the prefix over the optimizer's: prefixes train best near 1e-3 "
                    "to 1e-2, far above full fine-tuning rates.")


class PrefixTuning(PeftPlugin):
    name = "prefix_tuning"
    summary = ("Prefix tuning as deep prompts (P-Tuning v2 style): trained states at every layer's input "
               "that each layer's attention reads; a frozen encoder.")
    Config = PrefixTuningConfig

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        from criteria_builtins.prefix_modules import add_prefix

        c = self.config
        return add_prefix(model, c.num_virtual_tokens, c.projection_hidden_size if c.projection else None)

    def lr_scale(self, parameter_name: str) -> float:
        return self.config.lr_multiplier if parameter_name.startswith(PREFIX_NAME + ".") else 1.0

    def merged(self, model: Any) -> None:
        return None  # the prefix is extra sequence positions, not a weight update

    def base_model(self, model: Any) -> Any:
        from criteria_builtins.prefix_modules import without_prefix

        return without_prefix(model)


@hookimpl
def register_peft_methods(register):
    register(PrefixTuning)
