"""Recurring schedules kept in Redis (``upsert_schedule``, ``remove_schedule``, ``get_schedules``),
the arithmetic of their slots, and the rows the CLI and the dashboard list (arq cron jobs included).
The worker side that fires them is ``jobqueue.worker._scheduler``.
"""
