"""``python -m labelandlearn.cli``: the same as the ``labelandlearn`` command."""

from labelandlearn.cli import main

main()
