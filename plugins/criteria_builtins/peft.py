"""Built-in parameter-efficient fine-tuning methods, from peft (imported inside ``build``).

Methods that adapt linear layers pick them by *role* (query, value, feed-forward, ...), found from
module names, so one config means the same layers on BERT, DeBERTa-v2 and DistilBERT.
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
    Requirements,
    TrainingPlan,
    hookimpl,
)
from pydantic import model_validator

# Module-name suffixes of each role across encoder families (BERT: query, DeBERTa-v2: query_proj,
# DistilBERT: q_lin). A linear layer plays the first role one of its suffixes matches, so BERT's
# "attention.output.dense" is the attention output, not the feed-forward output "output.dense".
ROLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "query": ("query", "query_proj", "q_lin", "q_proj"),
    "key": ("key", "key_proj", "k_lin", "k_proj"),
    "value": ("value", "value_proj", "v_lin", "v_proj"),
    "attention_output": ("attention.output.dense", "out_lin", "o_proj"),
    "ffn_input": ("intermediate.dense", "lin1"),
    "ffn_output": ("output.dense", "lin2"),
}
TARGETS: dict[str, tuple[str, ...]] = {
    "query_value": ("query", "value"),
    "attention": ("query", "key", "value", "attention_output"),
    "attention_ffn": ("query", "key", "value", "attention_output", "ffn_input", "ffn_output"),
}
TargetSet = Literal["query_value", "attention", "attention_ffn", "all_linear"]


def _role(name: str) -> str | None:
    for role, suffixes in ROLE_SUFFIXES.items():
        if any(name == s or name.endswith("." + s) for s in suffixes):
            return role
    return None


def modules_in_roles(model: Any, roles: tuple[str, ...]) -> list[str]:
    """The names of ``model``'s linear layers that play one of ``roles``."""
    import torch

    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and _role(name) in roles]


def target_modules(model: Any, targets: str) -> list[str]:
    """The names of ``model``'s linear layers in the target set ``targets`` (a TARGETS key or
    ``all_linear``)."""
    import torch

    if targets == "all_linear":
        # The pooler is left out: the heads read the hidden states, so its adapter would never train.
        names = [name for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and "pooler" not in name]
    else:
        names = modules_in_roles(model, TARGETS[targets])
    if not names:
        raise ValueError(f"found no {targets} linear layers in {type(model).__name__}; "
                         "try targets = 'all_linear'")
    return names


class NoPeft(PeftPlugin):
    name = "none"
    summary = "Full fine-tuning: every weight trains."
    priority = 10
    keeps_frozen_layers = True  # nothing of it acts anywhere

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        return model


class _PeftMethod(PeftPlugin):
    """A method applied by ``peft.get_peft_model``; subclasses give the peft config."""

    requires = Requirements.of({"peft": "peft"})

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        raise NotImplementedError

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        return peft.get_peft_model(model, self.peft_config(model, plan))

    def merged(self, model: Any) -> Any:
        """peft folds LoRA-like updates into the base weights (``merge_and_unload``)."""
        return model.merge_and_unload()

    def base_model(self, model: Any) -> Any:
        return model.get_base_model()


# --- low-rank updates of linear layers -------------------------------------------------------


# Fields several methods share (a function each: every config class needs its own field object).
def _rank() -> Any:
    return ChoiceParam(8, search=(4, 8, 16, 32), ge=1, le=512, description="Rank of the update matrices.")


def _alpha() -> Any:
    return ChoiceParam(16, search=(8, 16, 32, 64), ge=1, le=1024,
                       description="Scaling numerator (alpha / rank).")


def _dropout(default: float, description: str | None = None) -> Any:
    return FloatParam(default, ge=0.0, le=0.5, search=(0.0, 0.2), description=description)


class TargetsConfig(PluginConfig):
    targets: TargetSet = ChoiceParam("query_value", description="Which linear layers get an adapter.")


class LoraConfig(TargetsConfig):
    r: int = _rank()
    alpha: int = _alpha()
    dropout: float = _dropout(0.1)
    bias: Literal["none", "lora_only", "all"] = ChoiceParam("none", description="Which biases train.")


class Lora(_PeftMethod):
    name = "lora"
    summary = "LoRA (peft): train low-rank updates of chosen linear layers, freeze the rest."
    Config = LoraConfig
    # extra peft.LoraConfig options of LoRA variants (DoRA)
    lora_options: ClassVar[dict[str, Any]] = {}

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        c = self.config
        return peft.LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, bias=c.bias,
                               target_modules=target_modules(model, c.targets), **self.lora_options)


class Dora(Lora):
    name = "dora"
    summary = "DoRA (peft): LoRA on the direction of each weight, with its magnitude trained apart."
    lora_options = {"use_dora": True}


class LoraPlusConfig(LoraConfig):
    lr_ratio: float = FloatParam(16.0, ge=1.0, le=256.0, search=(4.0, 32.0), log=True,
                                 description="Learning rate of B over that of A (peft's loraplus_lr_ratio).")


class LoraPlus(Lora):
    """LoRA+ through ``lr_scale`` rather than peft's ``create_loraplus_optimizer``, so it composes
    with every optimizer plugin; the rule is peft's: ``lora_B`` and every vector learn faster."""

    name = "lora_plus"
    summary = "LoRA+ (peft's rule): LoRA with B learning lr_ratio times faster than A."
    Config = LoraPlusConfig

    def build(self, model: Any, plan: TrainingPlan) -> Any:
        wrapped = super().build(model, plan)
        # lr_scale sees names only; peft's rule also needs which parameters are vectors (biases, norms).
        self._vectors = {name for name, param in wrapped.named_parameters() if param.ndim == 1}
        return wrapped

    def lr_scale(self, parameter_name: str) -> float:
        fast = "lora_B" in parameter_name or parameter_name in getattr(self, "_vectors", ())
        return self.config.lr_ratio if fast else 1.0


class AdaLoraConfig(TargetsConfig):
    init_r: int = ChoiceParam(12, search=(12, 16, 24), ge=2, le=512,
                              description="Rank each layer starts with.")
    target_r: int = ChoiceParam(8, search=(4, 8), ge=1, le=511,
                                description="Average rank left per layer once the budget is spent.")
    alpha: int = _alpha()
    dropout: float = _dropout(0.1)
    tinit: float = FloatParam(0.1, ge=0.0, le=0.45, search=(0.0, 0.2),
                              description="Share of the training steps at full rank before pruning starts.")
    tfinal: float = FloatParam(0.2, ge=0.0, le=0.45, search=(0.1, 0.3),
                               description="Share of the training steps at the final ranks.")
    delta_t: int = IntParam(10, ge=1, le=1000, search=(1, 50), log=True,
                            description="Optimizer steps between rank reallocations.")
    orth_reg_weight: float = FloatParam(0.5, ge=0.0, le=10.0, search=(0.1, 1.0), log=True,
                                        description="Weight of the penalty keeping P and Q orthogonal.")

    @model_validator(mode="after")
    def _budget_shrinks(self) -> AdaLoraConfig:
        if self.target_r >= self.init_r:
            raise ValueError(f"target_r ({self.target_r}) must be smaller than init_r ({self.init_r})")
        return self


class AdaLora(_PeftMethod):
    name = "adalora"
    summary = "AdaLoRA (peft): LoRA whose ranks are reallocated to the layers that matter during training."
    Config = AdaLoraConfig

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        c = self.config
        # peft's final allocation needs importance scores from an earlier step, so a one-step
        # plan (as when a saved model is loaded) is stretched to two and never reaches it. Shares
        # below 1/2 each then keep tinit < total - tfinal, which peft requires, for any total.
        total = max(2, plan.total_steps)
        return peft.AdaLoraConfig(
            init_r=c.init_r, target_r=c.target_r, lora_alpha=c.alpha, lora_dropout=c.dropout,
            tinit=int(c.tinit * total), tfinal=int(c.tfinal * total), deltaT=c.delta_t, total_step=total,
            orth_reg_weight=c.orth_reg_weight,
            target_modules=target_modules(model, c.targets),
        )

    def regularization(self, model: Any) -> Any:
        """The orthogonality penalty of the AdaLoRA paper: mean over the trainable P (lora_A) and
        Q (lora_B) of ||P P^T - I||_F (||Q^T Q - I||_F). peft adds it only to a transformers output
        that carries a loss, which our encoder's does not, so the engine adds it here."""
        import torch

        terms = []
        for name, param in model.named_parameters():
            if not param.requires_grad or not ("lora_A" in name or "lora_B" in name):
                continue
            gram = param @ param.T if "lora_A" in name else param.T @ param
            terms.append(torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)))
        if not terms or not self.config.orth_reg_weight:
            return None
        return self.config.orth_reg_weight * torch.stack(terms).mean()

    def after_optimizer_step(self, model: Any, step: int) -> None:
        import torch

        # Adapters frozen by the core's freezing knobs have no gradient; peft's importance scores
        # need one. Zero is their true importance (they cannot learn), so their rank goes first.
        frozen = [p for name, p in model.named_parameters() if "lora_" in name and p.grad is None]
        for param in frozen:
            param.grad = torch.zeros_like(param)
        try:
            model.base_model.update_and_allocate(step)
        finally:
            for param in frozen:
                param.grad = None


class LycorisConfig(TargetsConfig):
    r: int = _rank()
    alpha: int = _alpha()
    rank_dropout: float = _dropout(0.0, "Dropout on the rank dimension of the update.")
    module_dropout: float = _dropout(0.0, "Probability of skipping an adapter in a training step.")


class _Lycoris(_PeftMethod):
    Config = LycorisConfig

    def lycoris_options(self, model: Any) -> dict[str, Any]:
        c = self.config
        return dict(r=c.r, alpha=c.alpha, rank_dropout=c.rank_dropout, module_dropout=c.module_dropout,
                    target_modules=target_modules(model, c.targets))


class LoHa(_Lycoris):
    name = "loha"
    summary = "LoHa (peft): updates as Hadamard products of two low-rank matrices."

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        return peft.LoHaConfig(**self.lycoris_options(model))


class LoKr(_Lycoris):
    name = "lokr"
    summary = "LoKr (peft): updates as Kronecker products of small matrices."

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        return peft.LoKrConfig(**self.lycoris_options(model))


class VeraConfig(TargetsConfig):
    r: int = ChoiceParam(256, search=(64, 128, 256, 512), ge=1, le=4096,
                         description="Rank of the frozen random matrices shared by all layers.")
    d_initial: float = FloatParam(0.1, ge=1e-4, le=1.0, search=(0.01, 0.1), log=True,
                                  description="Initial value of the trained scaling vector d.")
    dropout: float = _dropout(0.0)


class Vera(_PeftMethod):
    """peft sizes the shared random matrices for the largest targeted layer and slices them for
    the others, so every target set works, feed-forward layers included."""

    name = "vera"
    summary = "VeRA (peft): frozen random low-rank matrices shared by all layers, trained scaling vectors."
    Config = VeraConfig

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        c = self.config
        return peft.VeraConfig(r=c.r, d_initial=c.d_initial, vera_dropout=c.dropout,
                               target_modules=target_modules(model, c.targets))


class Ia3Config(PluginConfig):
    ffn: bool = BoolParam(True, description="Also rescale the feed-forward activations, "
                                            "not only keys and values.")


class Ia3(_PeftMethod):
    name = "ia3"
    summary = "IA3 (peft): train vectors that rescale keys, values and (optionally) feed-forward activations."
    Config = Ia3Config

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        # IA3 rescales the input of a feed-forward module: the FFN's second layer takes the activations.
        ffn = ("ffn_output",) if self.config.ffn else ()
        return peft.IA3Config(target_modules=modules_in_roles(model, ("key", "value", *ffn)),
                              feedforward_modules=modules_in_roles(model, ffn))


# --- prompts ----------------------------------------------------------------------------------


class PromptTuningConfig(PluginConfig):
    num_virtual_tokens: int = IntParam(20, ge=1, le=128, search=(8, 64), log=True,
                                       description="Trained prompt vectors put before the input.")
    init: Literal["sample_vocab", "random"] = ChoiceParam(
        "sample_vocab",
        description="Start the prompt from embeddings of random vocabulary tokens, or from noise.")


class PromptTuning(_PeftMethod):
    name = "prompt_tuning"
    summary = "Prompt tuning (peft): trained virtual token embeddings before the input; a frozen encoder."
    Config = PromptTuningConfig

    def peft_config(self, model: Any, plan: TrainingPlan) -> Any:
        import peft

        return peft.PromptTuningConfig(
            task_type=peft.TaskType.FEATURE_EXTRACTION,  # the bare encoder: our head reads its states
            num_virtual_tokens=self.config.num_virtual_tokens,
            prompt_tuning_init=peft.PromptTuningInit[self.config.init.upper()],
        )

    def merged(self, model: Any) -> Any:
        return None  # a prompt is an input, not a weight update: saved beside the base encoder


@hookimpl
def register_peft_methods(register):
    register(NoPeft, Lora, LoraPlus, Dora, AdaLora, Ia3, LoHa, LoKr, Vera, PromptTuning)
