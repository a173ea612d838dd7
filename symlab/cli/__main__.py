"""``python -m symlab.cli``: the ``symlab`` command line."""

from symlab.cli import main

main()
