"""``python -m jobqueue.cli``: the same as the ``jobqueue`` command."""

from jobqueue.cli import main

main()
