"""Each variant's replicas as Serve's controller counts them: for /readyz, /v1/models and the cold-start wait.

A variant is *cold* when it has no running replica because Serve's autoscaler wants it so (`min_replicas: 0`, idle)
or is starting one for a request that came (a cold start under way): its deployment is HEALTHY or DOWNSCALING at
zero, or UPSCALING by the autoscaler. With no running replica for another reason (a replica that failed, a
redeploy) it is not cold: it is not ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ray import serve
from ray.serve.schema import DeploymentStatusOverview

_AT_ZERO_BY_CHOICE = {"HEALTHY", "DOWNSCALING"}


@dataclass(frozen=True)
class Replicas:
    running: int
    cold: bool

    @classmethod
    def of(cls, deployment: DeploymentStatusOverview) -> Replicas:
        running = deployment.replica_states.get("RUNNING", 0)
        starting_from_zero = deployment.status == "UPSCALING" and deployment.status_trigger == "AUTOSCALING"
        return cls(running, running == 0 and (deployment.status in _AT_ZERO_BY_CHOICE or starting_from_zero))


UNKNOWN = Replicas(running=0, cold=False)


def replicas_now(app_name: str) -> dict[str, Replicas]:
    """The application's deployments' replicas, asked of the controller now (blocking); {} when it does not answer."""
    try:
        deployments = serve.status().applications[app_name].deployments
    except Exception:  # the controller is briefly unreachable (or the app is being redeployed)
        return {}
    return {name: Replicas.of(d) for name, d in deployments.items()}


class ReplicaCounts:
    """`serve.status()` of one application by deployment, asked at most once per `max_age_s` and off the event loop
    (it blocks on the controller). Concurrent callers share one question; an unreachable controller reads as no
    replicas known (every variant UNKNOWN), never as an error."""

    def __init__(
        self,
        app_name: str,
        max_age_s: float = 1.0,
        ask: Callable[[str], dict[str, Replicas]] | None = None,
        deployment_of: Mapping[str, str] | None = None,
    ) -> None:
        """`deployment_of`: the deployment that runs a name's replicas, where it is not the deployment of that name
        (colocated, every variant's is the gateway's)."""
        self.app_name = app_name
        self.deployment_of = dict(deployment_of or {})
        self.max_age_s = max_age_s
        self._ask = ask or replicas_now
        self._counts: dict[str, Replicas] = {}
        self._asked_at = -float("inf")
        self._asking: asyncio.Future[dict[str, Replicas]] | None = None

    async def get(self) -> dict[str, Replicas]:
        if time.monotonic() - self._asked_at < self.max_age_s:
            return self._counts
        if self._asking is None:
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._ask, self.app_name))
            self._asking.add_done_callback(self._asked)
        return await asyncio.shield(self._asking)

    async def of(self, name: str) -> Replicas:
        return (await self.get()).get(self.deployment_of.get(name, name), UNKNOWN)

    def _asked(self, asking: asyncio.Future[dict[str, Replicas]]) -> None:
        self._asking = None
        if not asking.cancelled() and asking.exception() is None:
            self._counts, self._asked_at = asking.result(), time.monotonic()
