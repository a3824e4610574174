"""Which encoder weights train: layer depth of a parameter, and the core freezing knobs.

Freezing composes with every PEFT method, so it is a core option applied after the method has
wrapped the encoder, not a plugin of its own.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REFERENCE_DEPTH", "apply_freezing", "layer_depth"]

#: ``freeze_layers`` counts layers of a 12-layer encoder (BERT/DeBERTa-base) and is scaled to the
#: model's own depth, so one spec means the same share of the network on any model.
REFERENCE_DEPTH = 12

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
_NORM = ("LayerNorm.", "layer_norm.", "layernorm.")


def layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings (and anything below the first layer), ``i + 1`` for encoder layer ``i``,
    ``num_layers + 1`` for the pooler."""
    match = _LAYER_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1 if "pooler" in name else 0


def apply_freezing(encoder: Any, train: Any) -> None:
    """Set ``requires_grad`` on ``encoder``'s parameters from the train knobs ``freeze_encoder``,
    ``freeze_layers``, ``unfreeze_layernorm`` and ``unfreeze_pooler``."""
    num_layers = getattr(encoder.config, "num_hidden_layers", 0)
    frozen_depth = round(train.freeze_layers * num_layers / REFERENCE_DEPTH)
    for name, param in encoder.named_parameters():
        depth = layer_depth(name, num_layers)
        if train.freeze_encoder or (train.freeze_layers and depth <= frozen_depth):
            param.requires_grad_(False)
        if train.unfreeze_layernorm and any(part in name for part in _NORM):
            param.requires_grad_(True)
        if train.unfreeze_pooler and "pooler" in name:
            param.requires_grad_(True)
