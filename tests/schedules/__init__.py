"""Recurring schedules: slots, the Redis side, firing by real workers."""
