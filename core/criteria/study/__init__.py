"""Studies: data prepared once for a spec, the stages before training on a split (continued
pretraining, augmentation), single training runs, the Optuna study runner and its objective,
Pareto helpers, MLflow tracking and the report written after a study.

Imports everything below it (plugin system, data, spec, engine); only the CLI imports it.
"""
