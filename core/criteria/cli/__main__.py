"""``python -m criteria.cli``: the same as the ``criteria`` command."""

from criteria.cli import main

main()
