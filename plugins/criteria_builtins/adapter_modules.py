"""torch modules behind the bottleneck adapter plugins. Imported only from their ``build``.

An adapter is a submodule registered beside the projection it follows (on the projection's parent,
as ``adapter``) and applied by a forward hook on that projection, so no base weight is renamed:
the wrapped model keeps its class, its state-dict keys and its ``save_pretrained``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}

#: Where each adapter site's projection lives inside one transformer layer, across encoder families
#: (BERT, RoBERTa, ELECTRA and DeBERTa-v2 share the first spelling; DistilBERT uses the second).
SITE_PATHS: dict[str, tuple[str, ...]] = {
    "attention": ("attention.output.dense", "attention.out_lin"),
    "ffn": ("output.dense", "ffn.lin2"),
}
ADAPTER_NAME = "adapter"

#: Makes one adapter: (hidden size, bottleneck, activation, dropout) -> module.
AdapterFactory = Callable[[int, int, str, float], "Bottleneck"]


class Bottleneck(nn.Module):
    """``h -> up(dropout(act(down(h))))``, added to the hidden states it reads.

    ``up`` starts at zero, so a freshly wrapped model computes exactly what the base model did.
    """

    def __init__(self, down: nn.Module, up: nn.Module, activation: str, dropout: float) -> None:
        super().__init__()
        self.down = down
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = up

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(hidden))))

    def add_to_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook for the projection: its output plus the adapter's update, before the
        layer's dropout, residual and LayerNorm. A bound method (not a closure), so
        ``copy.deepcopy`` of the model re-binds the hook to the copied adapter."""
        return output + self(output)


def linear_bottleneck(hidden: int, bottleneck: int, activation: str, dropout: float) -> Bottleneck:
    """The Houlsby/Pfeiffer adapter: two dense projections, the up one zero-initialised."""
    up = nn.Linear(bottleneck, hidden)
    nn.init.zeros_(up.weight)
    nn.init.zeros_(up.bias)
    return Bottleneck(nn.Linear(hidden, bottleneck), up, activation, dropout)


def phm_rule(n: int) -> nn.Parameter:
    """The ``n`` matrices ``A_i`` (n x n) that Compacter shares across all of its layers."""
    rule = torch.empty(n, n, n)
    for a in rule:
        nn.init.xavier_uniform_(a)
    return nn.Parameter(rule)


class PHMLinear(nn.Module):
    """A parameterized hypercomplex multiplication layer (Zhang et al., 2021) as Compacter uses it
    (Mahabadi et al., 2021): ``W = sum_i A_i kron B_i`` with ``B_i = left_i @ right_i`` of rank
    ``rank``, ``A`` (``rule``) shared and passed in. ``zero=True`` starts ``W`` at zero."""

    def __init__(self, in_features: int, out_features: int, rule: nn.Parameter, rank: int,
                 zero: bool = False) -> None:
        super().__init__()
        n = rule.shape[0]
        if in_features % n or out_features % n:
            raise ValueError(f"a PHM layer of {in_features} -> {out_features} features needs both divisible "
                             f"by phm_dim = {n}")
        self.in_features, self.out_features = in_features, out_features
        self.rule = rule  # the same Parameter in every PHM layer: tied, like shared embeddings
        self.left = nn.Parameter(torch.randn(n, in_features // n, rank))
        # Var(W) ~ 1 / in_features, as a default nn.Linear init; zero for the up projection.
        right = torch.zeros(n, rank, out_features // n)
        if not zero:
            nn.init.normal_(right, std=(rank * in_features) ** -0.5)
        self.right = nn.Parameter(right)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def weight(self) -> torch.Tensor:
        """``W`` as (in, out): entry [a*p + b, c*q + d] = sum_i A[i, a, c] * B[i, b, d]."""
        blocks = self.left @ self.right  # B: (n, in/n, out/n)
        return torch.einsum("iac,ibd->abcd", self.rule, blocks).reshape(self.in_features, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().T, self.bias)

    def extra_repr(self) -> str:
        n, _, rank = self.left.shape
        return f"in_features={self.in_features}, out_features={self.out_features}, phm_dim={n}, rank={rank}"


def phm_bottleneck(rule: nn.Parameter, rank: int) -> AdapterFactory:
    """A factory of Compacter adapters that all share ``rule``."""

    def make(hidden: int, bottleneck: int, activation: str, dropout: float) -> Bottleneck:
        down = PHMLinear(hidden, bottleneck, rule, rank)
        up = PHMLinear(bottleneck, hidden, rule, rank, zero=True)
        return Bottleneck(down, up, activation, dropout)

    return make


def find_layers(model: nn.Module, sites: Sequence[str]) -> list[nn.Module]:
    """The model's transformer layers: the elements of the first ``ModuleList`` whose every element
    holds a linear projection for each site (by structure, not by the list's name)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(
            site_projection(layer, site) is not None for layer in module for site in sites
        ):
            return list(module)
    wanted = "; ".join(f"{site}: {' or '.join(SITE_PATHS[site])}" for site in sites)
    raise ValueError(
        f"found no transformer layers in {type(model).__name__} with the projections bottleneck adapters "
        f"follow ({wanted}); they support BERT-, RoBERTa-, DeBERTa- and DistilBERT-shaped encoders"
    )


def site_projection(layer: nn.Module, site: str) -> tuple[nn.Module, nn.Linear] | None:
    """(parent, projection) of ``site`` in ``layer``, or None when the layer has none."""
    for path in SITE_PATHS[site]:
        parent_path, _, leaf = path.rpartition(".")
        try:
            parent = layer.get_submodule(parent_path)
        except AttributeError:
            continue
        projection = getattr(parent, leaf, None)
        if isinstance(projection, nn.Linear):
            return parent, projection
    return None


def add_adapters(model: nn.Module, sites: Sequence[str], *, top: int | None, make: AdapterFactory,
                 bottleneck: int, activation: str, dropout: float, train_layer_norm: bool) -> nn.Module:
    """Freeze ``model``, put an adapter after each site's projection in the top ``top`` layers (all
    when None or when the model has fewer), and let the adapters (and those layers' LayerNorms,
    if asked) train. Modifies and returns ``model``."""
    layers = find_layers(model, sites)
    chosen = layers if top is None else layers[-top:]
    model.requires_grad_(False)
    for layer in chosen:
        for site in sites:
            parent, projection = site_projection(layer, site)
            if hasattr(parent, ADAPTER_NAME):
                raise ValueError(f"{type(parent).__name__} already has an `{ADAPTER_NAME}`: "
                                 "were adapters applied twice?")
            adapter = make(projection.out_features, bottleneck, activation, dropout)
            adapter.to(projection.weight.device, projection.weight.dtype)
            parent.add_module(ADAPTER_NAME, adapter)
            projection.register_forward_hook(adapter.add_to_output)
        if train_layer_norm:
            for module in layer.modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
    return model


def without_adapters(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its adapters and their hooks, sharing every other parameter
    and buffer with it (no memory cost): what ``save_pretrained`` should write."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    clean = copy.deepcopy(model, memo)
    for module in clean.modules():
        for key, hook in list(module._forward_hooks.items()):
            if isinstance(getattr(hook, "__self__", None), Bottleneck):
                del module._forward_hooks[key]
                module._forward_hooks_with_kwargs.pop(key, None)
                module._forward_hooks_always_called.pop(key, None)
        if isinstance(getattr(module, ADAPTER_NAME, None), Bottleneck):
            delattr(module, ADAPTER_NAME)
    return clean
