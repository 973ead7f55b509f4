"""KServe's GRPCInferenceService as methods of the Gateway deployment, for Ray Serve's gRPC ingress.

Serve calls each RPC as the deployment's method of that name (ray/serve/_private/replica.py,
`_prepare_direct_ingress_grpc_request`: `call_method=service_method.split("/")[-1]`), with the request message and,
for a parameter named `grpc_context`, a RayServegRPCContext; it sends back the message the method returns. With one
Serve application it needs no `application` metadata (haproxy_templates.py: `default_backend` when one app has gRPC
backends; the replica serves its own app when none is named), so any OIP client calls it unchanged.

The stages are the REST routes' (service/http/gateway.py): the same key check, model resolution, readiness, decode
lanes, batch call and labels. A refusal is set on the context as its gRPC status, its advice as trailing metadata, and
the method returns an empty message, which gRPC does not send with a non-OK status: raising instead would lose the
trailing metadata (Serve copies the context's metadata onto the call only on success) and log a traceback for every
4xx. Every answer carries the request's id (`x-request-id` metadata, else Serve's) back as trailing metadata.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import Message
from ray.serve.grpc_util import RayServegRPCContext

from model import get_variant
from service import oip
from service.grpc import codec, kserve
from service.http import errors
from service.metrics import Outcome

REQUEST_ID = "x-request-id"
PROTOCOL = "grpc_v2"  # the metrics' protocol tag


@dataclass(frozen=True)
class Call:
    """What a call's metadata says: its request id and its Authorization value."""

    request_id: str
    authorization: str | None

    @classmethod
    def of(cls, context: RayServegRPCContext) -> Call:
        metadata = dict(context.invocation_metadata())
        serve_id = dict(context.trailing_metadata()).get("request_id")  # Serve's own, set before the call
        return cls(metadata.get(REQUEST_ID) or serve_id or uuid.uuid4().hex, metadata.get("authorization"))


Handler = Callable[[Message, Call], Awaitable[Message]]
Request = Message | kserve.Unreadable  # what Serve passes: service.grpc.kserve's reader's result


class InferenceServicer:
    """The RPCs of service.grpc.kserve.RPCS. Mixed into the Gateway, whose stages they use (`_check_key`,
    `_resolve_version`, `_probe`, `_model_info`, `_on_lane`, `_oip_outputs`, `_record`)."""

    grpc_calls = 0  # in progress, for the stop's drain (Gateway.in_flight)

    async def ServerLive(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ServerLiveResponse, self._server_live)

    async def ServerReady(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ServerReadyResponse, self._server_ready)

    async def ServerMetadata(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ServerMetadataResponse, self._server_metadata)

    async def ModelReady(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ModelReadyResponse, self._model_ready)

    async def ModelMetadata(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ModelMetadataResponse, self._model_metadata)

    async def ModelConfig(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ModelConfigResponse, self._model_config)

    async def ModelInfer(self, request: Request, grpc_context: RayServegRPCContext) -> Message:
        return await self._rpc(request, grpc_context, kserve.ModelInferResponse, self._model_infer)

    async def _rpc(
        self, request: Request, context: RayServegRPCContext, empty: type[Message], handler: Handler
    ) -> Message:
        """`handler`'s answer; a refusal as the call's gRPC status (and an empty message); the request id either way.
        A request that did not parse is refused before any handler (so the request metrics do not count it)."""
        call = Call.of(context)
        metadata = [(REQUEST_ID, call.request_id)]
        self.grpc_calls += 1
        try:
            if isinstance(request, kserve.Unreadable):
                raise errors.InvalidRequest(request.reason)
            return await handler(request, call)
        except errors.ApiError as exc:
            code, advice = codec.status(exc)
            context.set_code(code)
            context.set_details(exc.message)
            metadata += advice
            return empty()
        finally:
            self.grpc_calls -= 1
            context.set_trailing_metadata(metadata)

    async def _server_live(self, request: Message, call: Call) -> Message:
        return kserve.ServerLiveResponse(live=True)

    async def _server_ready(self, request: Message, call: Call) -> Message:
        """As /v2/health/ready, but not ready is an answer, not an error (as in Triton)."""
        try:
            await self.readyz()
        except errors.Unavailable:
            return kserve.ServerReadyResponse(ready=False)
        return kserve.ServerReadyResponse(ready=True)

    async def _server_metadata(self, request: Message, call: Call) -> Message:
        return codec.server_metadata((await self.oip_server())["version"])

    def _model(self, request: Message, call: Call) -> str:
        """The key checked, then the variant the request names (alias or id; version empty or 1)."""
        self._check_key(call.authorization)
        return self._resolve_version(request.name, request.version or oip.VERSION)

    async def _model_ready(self, request: Message, call: Call) -> Message:
        model_id = self._model(request, call)
        try:
            await self._probe(model_id, await self.replicas.of(model_id))
        except errors.Unavailable:
            return kserve.ModelReadyResponse(ready=False)
        return kserve.ModelReadyResponse(ready=True)

    async def _model_metadata(self, request: Message, call: Call) -> Message:
        model_id = self._model(request, call)
        return codec.model_metadata(model_id, get_variant(model_id).input_size)

    async def _model_config(self, request: Message, call: Call) -> Message:
        model_id = self._model(request, call)
        return codec.model_config(model_id, get_variant(model_id).input_size, self.settings.limits.max_batch_images)

    async def _model_infer(self, request: Message, call: Call) -> Message:
        """The stages of the REST infer route (Gateway.oip_infer_version); the request parsed by service.grpc.codec."""
        started = time.perf_counter()
        outcome = Outcome(protocol=PROTOCOL)
        try:
            outcome.key_id = self._check_key(call.authorization)
            model_id = outcome.model = self._resolve_version(request.model_name, request.model_version or oip.VERSION)
            info = await self._model_info(model_id)
            limits = self.settings.limits
            infer = await self._on_lane(codec.parse_infer, request, get_variant(model_id).input_size, limits)
            tensors = await self._oip_outputs(infer, model_id, info)
            outcome.status = 200
            return codec.infer_response(infer, model_id, tensors, {"weights": info.weights})
        except errors.ApiError as exc:
            outcome.status = exc.status
            raise
        finally:
            self._record(outcome, time.perf_counter() - started)
