"""Study specs: the TOML schema (core sections), parsing with located errors, and the search
space built from a spec and the registered plugins (what a trial samples).

Imports the plugin system, data (to check data files) and the engine's settings; never the study.
"""
