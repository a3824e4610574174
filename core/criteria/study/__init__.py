"""Studies: data prepared once for a spec, the stages before training on a split (continued
pretraining, augmentation), single training runs, the Optuna study runner and its objective,
Pareto helpers, MLflow tracking and the report written after a study; and scale-out: the storage
(URLs, connection settings, heartbeats, errors), the trial budget every worker reads from it,
worker processes, whole-or-nothing output folders and the read-only status.

Imports everything below it (plugin system, data, spec, engine); only the CLI imports it.
"""
