"""The Celery application, configured from `celeryconfig`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

app = Celery("lucid")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["tasks"], related_name="pipeline", force=True)
import tasks.pipeline  # noqa: E402,F401  - registers the tasks


@worker_process_init.connect
def _fresh_runtime(**_: Any) -> None:
    """Forked pool processes must not share the parent's MongoDB client; connect eagerly."""
    from lucid.runtime import reset_runtime

    reset_runtime().warm_up()
