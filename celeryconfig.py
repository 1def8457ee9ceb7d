"""Celery configuration: broker and backend, one queue per stage, reliability options.

Values come from `lucid.settings` (environment variables). See DESIGN.md "Celery notes"
for why each reliability option is set the way it is.
"""

from __future__ import annotations

from kombu.entity import Exchange, Queue

from lucid.settings import STAGES, load_settings

_settings = load_settings()
_redis = _settings.redis_url or "redis://127.0.0.1:6379/0"

broker_url = _settings.broker_url or _redis
# Chords need the Redis result backend: other backends fall back to polling chord_unlock.
result_backend = _redis
broker_connection_retry_on_startup = True
# A broker outage is waited out, never a reason to exit (the default gives up after 100
# tries, and an exited group used to take `lucid up` down with it). Tasks running when
# the connection drops are cancelled: their messages are unacked and come back, and the
# stages converge, so a second copy running blind would only duplicate work.
broker_connection_retry = True
broker_connection_max_retries = None
worker_cancel_long_running_tasks_on_connection_loss = True
# Results (the chord's leaves) wait for Redis to come back instead of failing the task.
result_backend_always_retry = True
result_backend_max_sleep_between_retries_ms = 5000

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# Every name on the broker carries QUEUE_PREFIX (settings.queue_name / prefixed), so two
# deployments on one Redis db or RabbitMQ vhost never share a queue, an exchange or a
# remote-control channel. The stage queues hang off one direct exchange of this deployment
# ("lucid", or "<prefix>.lucid"), not the default queue's: left to Celery, each one would be
# bound to an exchange named after the default queue ("merkle"), which every deployment
# on the broker would share. Lucid sends no task priorities (nothing sets `priority`), so
# on Redis each queue is exactly one list, named after the queue: KEDA watches that list.
_QUEUE = {stage: _settings.queue_name(stage) for stage in STAGES}
_exchange = Exchange(_settings.prefixed("lucid"), type="direct")
task_queues = [Queue(name, exchange=_exchange, routing_key=name) for name in _QUEUE.values()]
task_default_queue = _QUEUE["merkle"]
task_default_exchange = _exchange.name
task_default_exchange_type = "direct"
task_default_routing_key = _QUEUE["merkle"]
task_create_missing_queues = False
control_exchange = _settings.prefixed("celery")
event_exchange = _settings.prefixed("celeryev")
task_routes = {f"lucid.{stage}": {"queue": _QUEUE[stage]} for stage in STAGES} | {
    "lucid.leaf": {"queue": _QUEUE["hash"]},
    "lucid.integrity.merkle": {"queue": _QUEUE["merkle"]},
    "lucid.seal": {"queue": _QUEUE["merkle"]},
    "lucid.publish_seal": {"queue": _QUEUE["merkle"]},
    "lucid.lifecycle.reconcile": {"queue": _QUEUE["merkle"]},
    "lucid.lifecycle.retention": {"queue": _QUEUE["merkle"]},
}
# The reconcile sweep (tasks/reconcile.py), sent by `celery beat`; a sweep that waited past
# the next one is dropped unrun, so a stopped merkle worker does not come back to a pile.
imports = ("tasks.reconcile", "tasks.lifecycle")
beat_schedule = {
    "reconcile": {
        "task": "lucid.lifecycle.reconcile",
        "schedule": _settings.reconcile_interval_s,
        "options": {"queue": _QUEUE["merkle"], "expires": _settings.reconcile_interval_s},
    },
    # End of life (tasks/lifecycle.py): retention and abandoned sessions.
    "retention": {
        "task": "lucid.lifecycle.retention",
        "schedule": _settings.retention_sweep_interval_s,
        "options": {"queue": _QUEUE["merkle"], "expires": _settings.retention_sweep_interval_s},
    },
}

# At-least-once: ack after the task ran; a lost worker's message is redelivered.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_soft_time_limit = _settings.task_soft_time_limit_s
task_time_limit = _settings.task_time_limit_s
# Redis counts the visibility timeout from fetch, so it must exceed the hard time limit.
broker_transport_options: dict[str, float] = {"visibility_timeout": _settings.visibility_timeout_s}
# Bounded I/O: a hung Redis or broker fails a call in BROKER_TIMEOUT_SECONDS instead of
# holding it (kombu waits forever by default), and a publish gives up after one retry, so
# an enqueue in a request answers 503 in seconds.
_io_s = _settings.broker_timeout_s
broker_connection_timeout = _io_s
broker_transport_options |= {"socket_timeout": _io_s, "socket_connect_timeout": _io_s}
redis_socket_timeout = redis_socket_connect_timeout = _io_s
task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_max": 0.5}
result_backend_transport_options = {"visibility_timeout": _settings.visibility_timeout_s}
# Chord counters live as long as results: keep them past the longest plausible backlog.
result_expires = 7 * 24 * 3600

# Task events cost every task three messages through the worker's main process and Redis.
# They stay off until someone watches: Flower turns them on (enable_events, every 5 s)
# while it runs. The STARTED state and sent events would cost one more write per task
# each; queue depth comes from the queue lists (GET /metrics) instead.
worker_send_task_events = False
task_send_sent_event = False
task_track_started = False
worker_hijack_root_logger = False
