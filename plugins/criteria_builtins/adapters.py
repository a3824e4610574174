"""Bottleneck adapters (Houlsby, Pfeiffer, Compacter), written for criteria.

The ``adapters`` library pins transformers 4.x, so these are implemented here on plain torch
(:mod:`criteria_builtins.adapter_modules`, imported inside ``build``). Adapters are added to the
transformers encoder in place, as submodules beside the projections they follow and applied by
forward hooks, so every base weight keeps its name. They cannot be folded into the base weights:
``merged`` returns None, the trained adapters are saved beside the base model, and ``base_model``
gives a copy without them (sharing the base tensors), so ``save_pretrained`` writes exactly what
``AutoModel`` loads, with no unexpected keys.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from criteria import (
    BoolParam,
    ChoiceParam,
    FloatParam,
    IntParam,
    PeftPlugin,
    PluginConfig,
    TrainingPlan,
    hookimpl,
)

Activation = Literal["relu", "gelu", "silu", "tanh"]
#: How many of the top (last) layers get adapters; None: all of them.
TOP_LAYERS: dict[str, int | None] = {"all": None, "top4": 4, "top8": 8}


class AdapterConfig(PluginConfig):
    bottleneck: int = ChoiceParam(64, search=(32, 64, 128, 192), ge=1, le=4096,
                                  description="Width of the adapter's down-projection.")
    dropout: float = FloatParam(0.1, ge=0.0, le=0.5, search=(0.1, 0.3),
                                description="Dropout inside the adapter.")
    layers: Literal["all", "top4", "top8"] = ChoiceParam(
        "all", description="Which layers get adapters: all, or the top 4/8 (all when the model has fewer).")
    activation: Activation = ChoiceParam("relu", description="Non-linearity of the bottleneck.")
    train_layer_norm: bool = BoolParam(
        True, searchable=False,
        description="Also train the LayerNorms of the adapted layers, as the papers do.")


class BottleneckAdapters(PeftPlugin):
    """Shared by the adapter plugins: :meth:`sites` says which projections get an adapter
    (``"attention"``, ``"ffn"``), :meth:`adapter_factory` makes each adapter module."""

    Config = AdapterConfig
    placement: ClassVar[tuple[str, ...]] = ()

    def sites(self) -> tuple[str, ...]:
        return self.placement

    def adapter_factory(self) -> Any:
        from criteria_builtins.adapter_modules import linear_bottleneck

        return linear_bottleneck

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        from criteria_builtins.adapter_modules import add_adapters

        c = self.config
        return add_adapters(model, self.sites(), top=TOP_LAYERS[c.layers], make=self.adapter_factory(),
                            bottleneck=c.bottleneck, activation=c.activation, dropout=c.dropout,
                            train_layer_norm=c.train_layer_norm)

    def merged(self, model: Any) -> None:
        return None  # an adapter is a non-linear detour: nothing to fold into the base weights

    def base_model(self, model: Any) -> Any:
        from criteria_builtins.adapter_modules import without_adapters

        return without_adapters(model)


class Pfeiffer(BottleneckAdapters):
    name = "pfeiffer"
    summary = "Pfeiffer bottleneck adapters after each layer's feed-forward block; base frozen."
    placement = ("ffn",)


class HoulsbyConfig(AdapterConfig):
    activation: Activation = ChoiceParam("silu", description="Non-linearity of the bottleneck.")


class Houlsby(BottleneckAdapters):
    name = "houlsby"
    summary = "Houlsby bottleneck adapters after each layer's attention and feed-forward blocks; base frozen."
    Config = HoulsbyConfig
    placement = ("attention", "ffn")


class CompacterConfig(AdapterConfig):
    activation: Activation = ChoiceParam("gelu", description="Non-linearity of the bottleneck.")
    placement: Literal["attention_ffn", "ffn"] = ChoiceParam(
        "attention_ffn",
        description="Houlsby placement (Compacter) or after the feed-forward only (Compacter++).")
    phm_dim: int = IntParam(4, ge=2, le=64,
                            description="n: W is a sum of n Kronecker products (n divides the widths).")
    phm_rank: int = IntParam(1, ge=1, le=64, description="Rank of each layer's own factors B_i.")


class Compacter(BottleneckAdapters):
    name = "compacter"
    summary = "Compacter: adapters of hypercomplex (Kronecker) layers sharing A across layers; base frozen."
    Config = CompacterConfig
    PLACEMENTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "attention_ffn": ("attention", "ffn"), "ffn": ("ffn",),
    }

    def sites(self) -> tuple[str, ...]:
        return self.PLACEMENTS[self.config.placement]

    def adapter_factory(self) -> Any:
        from criteria_builtins.adapter_modules import phm_bottleneck, phm_rule

        return phm_bottleneck(phm_rule(self.config.phm_dim), self.config.phm_rank)


@hookimpl
def register_peft_methods(register):
    register(Pfeiffer, Houlsby, Compacter)
