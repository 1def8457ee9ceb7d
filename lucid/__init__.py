"""Lucid core: the framework-free domain of the session pipeline.

Nothing in this package imports celery or flask; `tasks/` and `api/` are thin glue
around the functions defined here.
"""

__version__ = "0.1.0"
