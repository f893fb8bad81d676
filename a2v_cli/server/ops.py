"""Operator endpoints: liveness, readiness and Prometheus metrics, the same in both deployments.

Why authenticated: the metrics count every tenant's jobs and the readiness answer names the services a
deployment uses; like every other endpoint they need a token (a load balancer's probe can carry one).
Readiness asks the deployment (database, and broker where there is one); the numbers come from the
state store, so any front end reports the same queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from a2v_cli.server import models
from a2v_cli.server.deployment import STATUSES
from a2v_cli.store import iso_before

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(state: Any) -> str:
    """The Prometheus exposition of queue depth, workers, jobs per status and unclaimed jobs."""
    counts = state.store.status_counts()
    unclaimed = state.store.unclaimed(iso_before(state.settings.claim_timeout_s))
    lines = [
        "# HELP a2v_queue_depth Jobs waiting for a worker.",
        "# TYPE a2v_queue_depth gauge",
        f"a2v_queue_depth {counts.get('pending', 0)}",
        "# HELP a2v_workers Render workers able to take jobs.",
        "# TYPE a2v_workers gauge",
        f"a2v_workers {state.deployment.workers()}",
        "# HELP a2v_jobs_total Videos by status (all tenants).",
        "# TYPE a2v_jobs_total gauge",
        *(f'a2v_jobs_total{{status="{s}"}} {counts.get(s, 0)}' for s in STATUSES),
        "# HELP a2v_jobs_unclaimed Jobs queued longer than --claim-timeout without a worker.",
        "# TYPE a2v_jobs_unclaimed gauge",
        f"a2v_jobs_unclaimed {unclaimed}",
    ]
    return "\n".join(lines) + "\n"


def router(state: Any, owner: Callable[..., Awaitable[str]], errors: dict[int, Any]) -> APIRouter:
    """The routes, each behind the app's bearer-token dependency ``owner``."""
    from a2v_cli.server.app import API, envelope

    r = APIRouter(prefix=API, tags=["Operations"], dependencies=[Depends(owner)], responses=errors)

    @r.get("/healthz", response_model=models.HealthResponse)
    def healthz() -> Response:
        """Extension: 200 while this process serves requests (liveness)."""
        return envelope({"status": "ok", "deployment": state.deployment.kind})

    @r.get("/readyz", response_model=models.HealthResponse,
           responses={503: {"model": models.ErrorResponse, "description": "Not ready; the reason (50300)."}})
    def readyz() -> Response:
        """Extension: 200 when the deployment can take jobs (its database and broker answer), else 503."""
        why = state.deployment.not_ready()
        if why:
            return envelope(None, status=503, code=50300, message=f"not ready: {why}")
        return envelope({"status": "ready", "deployment": state.deployment.kind})

    @r.get("/metrics", response_class=Response, responses={200: {"content": {PROMETHEUS: {}}}})
    def metrics() -> Response:
        """Extension: queue depth, workers, jobs per status and unclaimed jobs, in Prometheus text format."""
        return Response(metrics_text(state), media_type=PROMETHEUS)

    return r
