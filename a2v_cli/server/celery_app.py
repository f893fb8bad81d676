"""The Celery app both sides of the distributed deployment share: front ends publish, `a2v worker` consumes.

Why these settings: a job must survive any one process dying. The message is acknowledged only after
the task returns (``task_acks_late``), a worker whose task process is lost gives it back
(``task_reject_on_worker_lost``), each worker holds one message per free slot (prefetch 1: a busy
worker does not sit on jobs an idle one could take), and Redis redelivers an unacknowledged message only
after ``visibility_timeout``, set far above the longest render so a slow render is never run twice.
A worker killed outright is noticed sooner through its heartbeats in the database (`distributed.Sweeper`).
The message carries only the video id; the job itself is the database row.
"""

from __future__ import annotations

from typing import Any

TASK = "a2v.render"
VISIBILITY_TIMEOUT_S = 6 * 3600  # > the longest render (--max-audio-seconds of audio, on a CPU, under load)
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}
CONNECT_TIMEOUT_S = 2.0


def make_app(broker: str, queue: str) -> Any:
    from celery import Celery

    app = Celery("a2v", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S, "socket_connect_timeout": 2,
                                  "socket_timeout": 5},
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        # a lost broker connection does not stop a render: the job's row, not the message, says who holds it
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


def publish(app: Any, queue: str, video_id: str) -> None:
    """Hand the job ``video_id`` to the workers of ``queue`` (raises when the broker cannot be reached)."""
    app.send_task(TASK, args=[video_id], queue=queue, retry=True, retry_policy=PUBLISH_RETRY)


def broker_problem(app: Any) -> str | None:
    """Why the broker cannot be used now, or None."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CONNECT_TIMEOUT_S)
            client = getattr(conn.default_channel, "client", None)
            if client is not None and hasattr(client, "ping"):  # Redis: a round trip, not only a socket
                client.ping()
    except Exception as err:  # any transport's connection error
        return f"the broker does not answer ({err.__class__.__name__})"
    return None
