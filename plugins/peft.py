"""Built-in parameter-efficient fine-tuning methods (peft is imported inside ``build``)."""

from __future__ import annotations

from typing import Any, Literal

from criteria import ChoiceParam, FloatParam, PeftPlugin, PluginConfig, Requirements, TrainingPlan, hookimpl

# Module-name suffixes of each role, across encoder families (BERT: query/value,
# DeBERTa-v2: query_proj/value_proj, DistilBERT: q_lin/v_lin). peft matches them as suffixes.
ROLE_SUFFIXES = {
    "query": ("query", "query_proj", "q_lin", "q_proj"),
    "key": ("key", "key_proj", "k_lin", "k_proj"),
    "value": ("value", "value_proj", "v_lin", "v_proj"),
    "attention_output": ("attention.output.dense", "out_lin", "o_proj"),
    "ffn": ("intermediate.dense", "output.dense", "lin1", "lin2"),
}
TARGETS = {
    "query_value": ("query", "value"),
    "attention": ("query", "key", "value", "attention_output"),
    "attention_ffn": ("query", "key", "value", "attention_output", "ffn"),
}


def target_modules(model: Any, targets: str) -> list[str] | str:
    """The names of ``model``'s linear layers that play the roles ``targets`` asks for."""
    import torch

    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    if targets == "all_linear":
        # The pooler is left out: the heads read the hidden states, so its adapter would never train.
        names = [name for name in linear if "pooler" not in name]
    else:
        suffixes = tuple(s for role in TARGETS[targets] for s in ROLE_SUFFIXES[role])
        names = [name for name in linear if name.endswith(suffixes)]
    if not names:
        raise ValueError(f"found no {targets} linear layers in {type(model).__name__}; try targets = 'all_linear'")
    return names


class NoPeft(PeftPlugin):
    name = "none"
    summary = "Full fine-tuning: every weight trains."
    priority = 10

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        return model


class LoraConfig(PluginConfig):
    r: int = ChoiceParam(8, search=(4, 8, 16, 32), ge=1, le=512, description="Rank of the update matrices.")
    alpha: int = ChoiceParam(16, search=(8, 16, 32, 64), ge=1, le=1024, description="Scaling numerator.")
    dropout: float = FloatParam(0.1, ge=0.0, le=0.5, search=(0.0, 0.2))
    bias: Literal["none", "lora_only", "all"] = ChoiceParam("none")
    targets: Literal["query_value", "attention", "attention_ffn", "all_linear"] = ChoiceParam("query_value")


class Lora(PeftPlugin):
    name = "lora"
    summary = "LoRA (peft): train low-rank updates of chosen linear layers, freeze the rest."
    Config = LoraConfig
    requires = Requirements.of({"peft": "peft"})

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        c = self.config
        config = peft.LoraConfig(
            r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, bias=c.bias,
            target_modules=target_modules(model, c.targets),
        )
        return peft.get_peft_model(model, config)


@hookimpl
def register_peft_methods(register):
    register(NoPeft, Lora)
