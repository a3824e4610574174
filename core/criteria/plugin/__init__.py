"""The plugin system: hook specs, the plugin base and kind classes, parameter declarations
(bounds and search ranges), the registry with its provenance, the cached listing and the reference.

Imports only the root modules (errors, cache, hardware); never torch, optuna or a plugin by name.
"""
