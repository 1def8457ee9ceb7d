"""Celery app and the thin tasks that call one `lucid` function each."""
