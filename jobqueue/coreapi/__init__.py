"""What the Core API calls: the five queue objects and their names, the payload and result models,
and the ``enqueue_*`` helpers (one job, many jobs, a product's two jobs, the day's collections).
"""
