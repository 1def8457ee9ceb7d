"""The Celery application, configured from `celeryconfig`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init
from celery.utils.log import get_logger

app = Celery("lucid")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["tasks"], related_name="pipeline", force=True)
import tasks.pipeline  # noqa: E402,F401  - registers the tasks


@worker_init.connect
def _check_role_keys(**_: Any) -> None:
    """Refuse to start a worker that holds a private key its role must not.

    SystemExit, because Celery logs and swallows an Exception raised by a signal handler
    and would start the worker anyway."""
    from lucid.crypto.roles import check_role_keys
    from lucid.errors import KeyMaterialError
    from lucid.settings import load_settings

    settings = load_settings()
    try:
        check_role_keys(settings.roles, settings.keys_path)
    except KeyMaterialError as exc:
        get_logger(__name__).critical("event=worker_refused reason=%s", exc)
        raise SystemExit(f"error: {exc}") from None


@worker_process_init.connect
def _fresh_runtime(**_: Any) -> None:
    """Forked pool processes must not share the parent's MongoDB client; connect eagerly."""
    from lucid.runtime import reset_runtime

    reset_runtime().warm_up()


def connect_producer() -> None:
    """Connect to the broker now, so a fresh API process's first upload does not pay for
    kombu's transport import and the connection (about 55 ms, measured) mid-request."""
    try:
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
    except Exception as exc:  # the broker may come up later; the first enqueue retries
        get_logger(__name__).warning("event=broker_not_ready error=%r", exc)
