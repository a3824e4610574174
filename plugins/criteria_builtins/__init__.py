"""The built-in plugins of criteria, registered through the ``criteria`` entry-point group in
pyproject.toml exactly as a third-party package registers its own. One module per kind."""
