"""The web dashboard: ``create_app()`` returns a Starlette app to mount (``/admin/queues``) or serve
with ``jobqueue dashboard``."""

from jobqueue.dashboard.app import create_app

__all__ = ["create_app"]
