"""``python -m jobqueue.cli``: the ``jobqueue`` command."""

from jobqueue.cli import main

main()
