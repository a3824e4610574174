"""Which trials keep their model files: the study's best K, each under ``<output>/kept/trial-<n>/``.

Every trial keeps its report; a model is tens of megabytes to gigabytes, and only the trials that
can still be exported (the best one, or the best K an ensemble combines) need theirs. When a
trial completes among the best K it saves its model, and the models of complete trials that fell
out of the best K are removed. Trials still running are never touched, so workers that share an
output folder cannot remove each other's models before they are ranked.

Ranking: by the objective (ties: the earlier trial); with several objectives the Pareto front
first, best on the first metric first (the trial a study exports is always first), then the
others by the first metric.

Models are written whole or not at all (:func:`criteria.study.folders.atomic_folder`): a crash or
a full disk never leaves half a model where the export looks for one.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from criteria.study.folders import atomic_folder, kept_model_folder
from criteria.study.pareto import dominates

__all__ = ["KeptModels", "link_or_copy", "rank_trials"]

_TRIAL_FOLDER = re.compile(r"^trial-(\d+)$")


def rank_trials(trials: Sequence[tuple[int, Sequence[float]]], directions: Sequence[str]) -> list[int]:
    """Trial numbers, best first, from ``(number, values)`` (one value per objective); trials with
    a NaN value are left out."""
    usable = [(n, tuple(v)) for n, v in trials if v and not any(math.isnan(x) for x in v)]
    sign = 1.0 if directions[0] == "maximize" else -1.0
    if len(directions) == 1:
        return [n for n, _ in sorted(usable, key=lambda t: (-sign * t[1][0], t[0]))]
    front = {n for n, v in usable if not any(dominates(w, v, directions) for _, w in usable)}
    return [n for n, _ in sorted(usable, key=lambda t: (t[0] not in front, -sign * t[1][0], t[0]))]


def link_or_copy(src: str, dst: str) -> None:
    """A ``copy_function`` for :func:`shutil.copytree`: a hard link where the file system allows
    (no second copy of the bytes on disk), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class KeptModels:
    """The model folders of a study's best ``count`` trials, under ``folder``."""

    def __init__(self, folder: Path, count: int, directions: Sequence[str]) -> None:
        self.folder, self.count, self.directions = folder, count, tuple(directions)

    def ranking(self, study: Any, candidate: tuple[int, Sequence[float]] | None = None) -> list[int]:
        """The study's complete trials (and ``candidate``, a trial about to complete), best first."""
        trials = [(t.number, tuple(t.values)) for t in _complete(study) if t.values]
        if candidate is not None:
            trials.append((candidate[0], tuple(candidate[1])))
        return rank_trials(trials, self.directions)

    def offer(self, study: Any, number: int, values: Sequence[float], save: Callable[[Path], None]
              ) -> tuple[Path | None, list[int]]:
        """Trial ``number``, about to complete with ``values``, saves its model through ``save(folder)``
        if it is among the best ``count``; models that fell out of the best are removed. Returns
        its folder (None when it is not kept) and the trials whose models were removed."""
        best = self.ranking(study, (number, values))[: self.count]
        kept = None
        if number in best:
            kept = kept_model_folder(self.folder, number)
            with atomic_folder(kept) as partial:
                save(partial)
        return kept, self.prune(study, set(best))

    def prune(self, study: Any, keep: set[int]) -> list[int]:
        """Remove the models of finished trials not in ``keep`` (running trials are left alone:
        they are ranked when they complete); returns the trial numbers removed."""
        finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        removed = []
        for number, folder in self.on_disk().items():
            if number in finished and number not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(number)
        return removed

    def on_disk(self) -> dict[int, Path]:
        """The kept model folders there are, by trial number."""
        if not self.folder.is_dir():
            return {}
        found = {}
        for path in self.folder.iterdir():
            match = _TRIAL_FOLDER.match(path.name)
            if match and path.is_dir():
                found[int(match.group(1))] = path
        return found

    def best(self, study: Any, count: int | None = None) -> list[tuple[int, Path]]:
        """The best ``count`` (default: all kept) complete trials whose model is on disk, best first."""
        there = self.on_disk()
        ranked = [(n, there[n]) for n in self.ranking(study) if n in there]
        return ranked if count is None else ranked[:count]


def _complete(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
