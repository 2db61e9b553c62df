"""``python -m workers.run``: the same as ``jobqueue dev`` (kept for scripts that call it)."""

from __future__ import annotations

import sys

from jobqueue.cli._app import run


def main(argv: list[str] | None = None) -> None:
    run(["dev", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
