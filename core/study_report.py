"""After a study: plots, the best configuration retrained and exported, and its evaluation.

Everything is written to an output folder and, when tracking is on, to the study's parent MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from criteria import __version__
from criteria.data import holdout
from criteria.engine import fit
from criteria.metrics import classification_report_dict, confusion_matrix_figure
from criteria.model import save_classifier
from criteria.spec import Spec
from criteria.tracking import StudyTracker
from criteria.training import PreparedData, baseline_metrics, evaluate_indices, make_job, write_resolved_spec


@dataclass
class Export:
    folder: Path
    test: dict[str, Any] | None
    baseline_test: dict[str, Any] | None
    plots: list[Path]


def write_plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNGs.
    A plot that needs more finished trials than there are is skipped."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("optimization_history", vis.plot_optimization_history),
                       ("param_importances", vis.plot_param_importances),
                       ("parallel_coordinate", vis.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few complete trials for this plot
            continue
        figure = getattr(axes, "figure", None) or plt.gcf()
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def export_best(study: Any, spec: Spec, data: PreparedData, output: Path,
                tracker: StudyTracker | None, progress: Any = None) -> Export | None:
    """Retrain the best trial's configuration (same split and seed) and export it as a run folder
    that ``criteria predict`` loads, with its evaluation on the held-out test posts."""
    import optuna

    output.mkdir(parents=True, exist_ok=True)
    plots = write_plots(study, output / "plots")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete or spec.study.export == "none":
        _log(tracker, plots, "plots")
        return Export(output, None, None, plots) if plots else None
    best = study.best_trial
    config = spec.space.suggest(optuna.trial.FixedTrial(best.params, number=best.number))
    split = holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
    job = make_job(spec, data, config, split.train, split.validation)
    result = fit(job, progress=progress)
    folder = output / "best-model"
    save_classifier(result.model, data.tokenizer, folder / "model", {
        "head": {"name": config.plugins["head"].name, "config": config.plugins["head"].config.model_dump()},
        "criteria": [vars(c) for c in data.corpus.criteria], "max_length": spec.data.max_length,
        "threshold": result.threshold, "num_labels": 2, "criteria_version": __version__,
        "study": spec.study.name, "trial": best.number,
    })
    write_resolved_spec(spec, config, folder / "spec.resolved.json")
    test = baseline_test = None
    evaluation_files = []
    if data.test_indices:
        test, probs = evaluate_indices(result, job, data.test_indices, result.threshold)
        baseline_test = baseline_metrics(data.corpus, data.study_indices, data.test_indices, spec.study.seed)
        labels = [data.corpus.pairs[i].label for i in data.test_indices]
        figure = confusion_matrix_figure(labels, probs, result.threshold, title=f"best trial {best.number}, test posts")
        figure.savefig(folder / "confusion_matrix.png", dpi=110, bbox_inches="tight")
        report = classification_report_dict(labels, probs, result.threshold)
        (folder / "classification_report.json").write_text(json.dumps(report, indent=2))
        evaluation_files = [folder / "confusion_matrix.png", folder / "classification_report.json"]
    (folder / "metrics.json").write_text(json.dumps({
        "best_trial": best.number, "best_value": best.value, "refit_validation": result.best.metrics,
        "test": test, "baseline_test": baseline_test, "threshold": result.threshold,
    }, indent=2, default=float))
    _log(tracker, plots, "plots")
    _log(tracker, [folder / "spec.resolved.json", folder / "metrics.json", *evaluation_files], "best")
    if tracker and test is not None:
        tracker.log_summary({"test_macro_f1": test["overall"]["macro_f1"],
                             "baseline_test_macro_f1": baseline_test["overall"]["macro_f1"]})
    return Export(folder, test, baseline_test, plots)


def _log(tracker: StudyTracker | None, paths: list[Path], folder: str) -> None:
    if tracker:
        for path in paths:
            tracker.log_artifact(path, folder)
