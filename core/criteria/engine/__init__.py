"""The training engine: one configuration trained and evaluated (fit, runtime, micro-batches,
freezing, the classifier model and its files, metrics, the TF-IDF baseline, prediction), and
continued pretraining before it (the masked language model, the cached pretraining stage).

Imports the plugin system and data; knows no spec, study or plugin by name.
"""
