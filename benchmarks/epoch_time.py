"""Seconds per epoch of each formulation, with and without the frozen-layer cache.

    python benchmarks/epoch_time.py [--epochs 2] [--max-length 160] [--freeze-layers 6]

Trains on the embedded corpus's training split as the default study does (evidence sentences on,
the embeddings and the bottom half of MiniLM frozen, batch 16, the precision ``auto`` picks here)
and reports, per configuration, the seconds of its first epoch (which fills the cache when it is
on) and of the later ones (which read it), training and validation included, and each one's
ratio to ``pair`` without the cache. All configurations run in one process, one after another:
compare them as ratios. Print the CPU flags with the figures:
``grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--freeze-layers", type=int, default=6)
    parser.add_argument("--formulations", default="pair,multilabel,biencoder")
    args = parser.parse_args()

    from criteria import hardware
    from criteria.data.splits import holdout
    from criteria.engine import frozen_cache
    from criteria.engine.fit import fit
    from criteria.plugin.registry import get_registry
    from criteria.spec.load import load_spec
    from criteria.study.prepare import make_job, prepare_data

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for formulation in args.formulations.split(","):
            for cache in (False, True):
                spec_path = Path(tmp) / f"{formulation}-{cache}.toml"
                spec_path.write_text(f"""
[study]
name = "epoch-time"
seed = 13
[data]
max_length = {args.max_length}
[train]
epochs = {args.epochs}
patience = 0
batch_size = 16
freeze_layers = {args.freeze_layers}
frozen_cache = {str(cache).lower()}
evidence_sentences = true
[formulation]
use = "{formulation}"
[optimizer]
use = "adamw"
[scheduler]
use = "linear"
[peft]
use = "none"
[head]
use = "linear"
[loss]
use = "cross_entropy"
""")
                spec = load_spec(spec_path, get_registry())
                data = prepare_data(spec)
                config = spec.space.default()
                runtime = config.backend.build()
                split = holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
                frozen_cache.clear_memory()
                result = fit(make_job(spec, data, config, split.train, split.validation, runtime=runtime))
                seconds = [r.seconds for r in result.history]
                rows.append((formulation, cache, seconds[0], statistics.fmean(seconds[1:]) if len(seconds) > 1
                             else seconds[0], result.best.value, runtime.describe()))
    flags = " ".join(hardware.cpu_flags(("avx2", "avx512f", "avx512_bf16", "amx_bf16"))) or "none"
    print(f"\n{rows[0][5]}; cpu flags: {flags}; max length {args.max_length}; freeze_layers {args.freeze_layers}")
    base = next(r for r in rows if r[0] == "pair" and not r[1])[3]
    print(f"{'formulation':<12} {'cache':<6} {'1st epoch s':>12} {'later epochs s':>15} {'ratio to pair':>14} "
          f"{'val macro-F1':>13}")
    for formulation, cache, first, later, value, _ in rows:
        print(f"{formulation:<12} {'on' if cache else 'off':<6} {first:12.1f} {later:15.1f} {later / base:14.3f} "
              f"{value:13.3f}")


if __name__ == "__main__":
    main()
