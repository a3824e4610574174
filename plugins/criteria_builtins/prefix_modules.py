"""torch modules behind the prefix tuning plugin. Imported only from its ``build``.

A :class:`PrefixEncoder` is registered on the encoder (as ``prefix_encoder``) and works through
hooks, so no base weight is renamed and the model keeps its class and ``save_pretrained``:

* before the model: ``num_virtual_tokens`` ones are put before the attention mask;
* around the embeddings: they embed the caller's tokens with the caller's mask (so every real token
  keeps its embedding and position), and layer 0's prefix is put before their output;
* before layer ``i > 0``: the prefix positions' hidden states are replaced by layer ``i``'s prefix;
* after the model: the prefix positions are cut from the output (the pooler's output is recomputed
  from the real tokens), so the encoder returns exactly one state per input token.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import torch
from torch import nn

from criteria_builtins.prefix import PREFIX_NAME

#: Every build starts the prefix from the same values: the saved model holds only trained weights,
#: so a prefix frozen by the core's freezing knobs must come back as it was when the model is loaded.
INIT_SEED = 0


class PrefixEncoder(nn.Module):
    """The prefix of every layer: ``forward()`` gives a ``(layers, tokens, hidden)`` tensor.

    Without a projection each layer's prefix is an ``nn.Embedding`` of its own (``layers.<i>``, so
    the core's layer-wise freezing and learning-rate decay treat it as part of layer ``i``). With one
    (``projection_hidden``), Li & Liang's reparameterization: a shared embedding through
    Linear-tanh-Linear gives every layer's prefix at once.
    """

    def __init__(self, num_layers: int, num_tokens: int, hidden: int, projection_hidden: int | None,
                 mask_index: int) -> None:
        super().__init__()
        self.num_layers, self.num_tokens, self.hidden = num_layers, num_tokens, hidden
        self.mask_index = mask_index  # position of attention_mask among the model's forward arguments
        if projection_hidden is None:
            self.layers = nn.ModuleList(nn.Embedding(num_tokens, hidden) for _ in range(num_layers))
            self.embedding = self.mlp = None
        else:
            self.layers = None
            self.embedding = nn.Embedding(num_tokens, hidden)
            self.mlp = nn.Sequential(nn.Linear(hidden, projection_hidden), nn.Tanh(),
                                     nn.Linear(projection_hidden, num_layers * hidden))
        # This forward's prefixes, kept after it: layers checkpointed with their hooks re-run them
        # in backward.
        self._states: torch.Tensor | None = None
        # (extended, caller's) attention masks, while a forward runs.
        self._masks: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self) -> torch.Tensor:
        if self.mlp is None:
            return torch.stack([layer.weight for layer in self.layers])
        flat = self.mlp(self.embedding.weight)
        return flat.view(self.num_tokens, self.num_layers, self.hidden).transpose(0, 1)

    def __getstate__(self) -> dict[str, Any]:
        # A forward's tensors are not state (and carry autograd graphs deepcopy refuses).
        return {**self.__dict__, "_states": None, "_masks": None}

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}, tokens={self.num_tokens}, hidden={self.hidden}"

    # --- hooks ---------------------------------------------------------------------------------

    def before_model(self, model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        self._states = self()
        args = list(args)
        positional = len(args) > self.mask_index
        mask = args[self.mask_index] if positional else kwargs.get("attention_mask")
        if mask is None:
            tokens = args[0] if args else kwargs.get("input_ids")
            tokens = kwargs["inputs_embeds"] if tokens is None else tokens
            mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        if mask.dim() != 2:
            raise ValueError(f"prefix tuning needs a (batch, length) attention mask, "
                             f"got shape {tuple(mask.shape)}")
        extended = torch.cat([mask.new_ones(mask.shape[0], self.num_tokens), mask], dim=1)
        if positional:
            args[self.mask_index] = extended
        else:
            kwargs["attention_mask"] = extended
        self._masks = (extended, mask)
        return tuple(args), kwargs

    def before_embeddings(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        if self._masks is None:  # called outside a forward of the model
            return None
        extended, mask = self._masks

        def caller(value: Any) -> Any:  # DeBERTa masks its embeddings with the model's mask
            return mask if value is extended else value

        return tuple(caller(a) for a in args), {k: caller(v) for k, v in kwargs.items()}

    def after_embeddings(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self._masks is None:
            return output
        prefix = self._states[0].to(output.dtype).expand(output.shape[0], -1, -1)
        return torch.cat([prefix, output], dim=1)

    def before_layer(self, index: int, layer: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        if self._states is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        prefix = self._states[index].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        hidden = torch.cat([prefix, hidden[:, self.num_tokens:]], dim=1)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    def after_model(self, model: nn.Module, args: tuple, output: Any) -> Any:
        self._masks = None
        p = self.num_tokens
        if isinstance(output, tuple):  # return_dict=False
            return (output[0][:, p:], *output[1:])
        output["last_hidden_state"] = output.last_hidden_state[:, p:]
        if output.get("hidden_states") is not None:
            output["hidden_states"] = tuple(h[:, p:] for h in output.hidden_states)
        pooler = getattr(model, "pooler", None)
        if output.get("pooler_output") is not None and isinstance(pooler, nn.Module):
            output["pooler_output"] = pooler(output.last_hidden_state)  # it read a prefix position
        return output


def find_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers: the first ``ModuleList`` with one element per hidden layer."""
    depth = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and depth and len(module) == depth:
            return module
    raise ValueError(f"found no transformer layers in {type(model).__name__} (a ModuleList of its "
                     f"config.num_hidden_layers = {depth} layers): prefix tuning supports transformers "
                     "encoders (BERT-, RoBERTa-, DeBERTa-shaped)")


def find_embeddings(model: nn.Module) -> nn.Module:
    """The embedding block: the module that holds the input embeddings (``embeddings`` in BERT and
    DeBERTa), whose output the first layer reads."""
    word_embeddings = model.get_input_embeddings()
    for name, module in model.named_modules():
        if module is word_embeddings and "." in name:
            return model.get_submodule(name.rpartition(".")[0])
    raise ValueError(f"{type(model).__name__} has no embedding block around its input embeddings; "
                     "prefix tuning supports transformers encoders (BERT-, RoBERTa-, DeBERTa-shaped)")


def token_states(model: nn.Module, embeddings: nn.Module, layers: nn.ModuleList,
                 num_tokens: int) -> torch.Tensor:
    """``(layers, tokens, hidden)``: what ``num_tokens`` random vocabulary tokens are at the input of
    each layer, the real-word start Li & Liang found to train best. Where the model cannot run while
    it is built (an attention kernel for another device, such as flash-attn on the CPU), every layer
    starts from the tokens' embeddings instead."""
    device = model.get_input_embeddings().weight.device
    ids = torch.randint(model.get_input_embeddings().num_embeddings, (1, num_tokens)).to(device)
    seen: list[torch.Tensor] = []

    def record(layer: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        seen.append((args[0] if args else kwargs["hidden_states"])[0])

    handles = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in layers]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids))
    except (RuntimeError, ValueError, ImportError):
        with torch.no_grad():
            return embeddings(input_ids=ids)[0].expand(len(layers), -1, -1).clone()
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return torch.stack(seen[:len(layers)])


def add_prefix(model: nn.Module, num_tokens: int, projection_hidden: int | None) -> nn.Module:
    """Freeze ``model`` and give every one of its layers a trained prefix of ``num_tokens`` states
    (produced by an MLP of width ``projection_hidden`` if given). Modifies and returns ``model``."""
    if hasattr(model, PREFIX_NAME):
        raise ValueError(f"{type(model).__name__} already has a `{PREFIX_NAME}`: "
                         "was prefix tuning applied twice?")
    layers = find_layers(model)
    embeddings = find_embeddings(model)
    arguments = list(inspect.signature(model.forward).parameters)
    if "attention_mask" not in arguments:
        raise ValueError(f"{type(model).__name__}.forward takes no attention_mask: prefix tuning needs one")
    weight = model.get_input_embeddings().weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        start = token_states(model, embeddings, layers, num_tokens) if projection_hidden is None else None
        prefix = PrefixEncoder(len(layers), num_tokens, model.config.hidden_size, projection_hidden,
                               arguments.index("attention_mask"))
    if start is not None:
        for layer, state in zip(prefix.layers, start):
            layer.weight.data.copy_(state)
    prefix.to(weight.device, weight.dtype)
    model.requires_grad_(False)
    model.add_module(PREFIX_NAME, prefix)
    model.register_forward_pre_hook(prefix.before_model, with_kwargs=True)
    model.register_forward_hook(prefix.after_model)
    embeddings.register_forward_pre_hook(prefix.before_embeddings, with_kwargs=True)
    embeddings.register_forward_hook(prefix.after_embeddings)
    for index, layer in enumerate(layers):
        if index:  # layer 0 reads the embeddings' output, which already starts with its prefix
            layer.register_forward_pre_hook(functools.partial(prefix.before_layer, index), with_kwargs=True)
    return model


def _owner(hook: Any) -> Any:
    return getattr(getattr(hook, "func", hook), "__self__", None)


def without_prefix(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its prefix and hooks, sharing every other parameter and buffer
    with it (no memory cost): what ``save_pretrained`` should write."""
    prefix = getattr(model, PREFIX_NAME)
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    memo[id(prefix)] = prefix  # shared, then dropped from the copy
    clean = copy.deepcopy(model, memo)
    for module in clean.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for key, hook in list(hooks.items()):
                if _owner(hook) is prefix:
                    del hooks[key]
                    module._forward_pre_hooks_with_kwargs.pop(key, None)
                    module._forward_hooks_with_kwargs.pop(key, None)
                    module._forward_hooks_always_called.pop(key, None)
    delattr(clean, PREFIX_NAME)
    return clean
