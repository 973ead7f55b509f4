"""The gateway: FastAPI ingress (and gRPC methods) that checks, decodes and routes each image, then labels the answer."""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from model import ImageDecodeError, ImageTooLargeError, LabelSet, UnknownModelError, get_variant
from model.labels import for_head
from model.preprocess import DecodeTimeoutError, OverBudgetError
from service import oip
from service.config import LiveClassifierSettings, Settings
from service.decoding import DecodeRules
from service.grpc.servicer import InferenceServicer
from service.http import errors
from service.http import oip as rest_oip
from service.http.auth import KeyStore, TokenBuckets, bearer_token
from service.http.decode import DecodeQueueFull, Decoder, cap_malloc_arenas
from service.http.replica_counts import ReplicaCounts, Replicas
from service.http.schemas import ClassifyResponse, ErrorBody, ModelCard, ModelInfo, ModelList, OipError, Prediction
from service.http.upload import image_bytes, read_limited
from service.metrics import GatewayMetrics, Outcome
from service.replica.classifier import Classification, ModelNotLoaded
from service.replica.in_process import InProcessClassifier
from service.replica.jpeg import EncodedJpeg
from service.serve_config import GATEWAY

log = logging.getLogger("ray.serve")
R = TypeVar("R")
DESCRIBE_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 2.0  # /readyz, /v1/models, model ready: a probe's answer may not wait for a replica longer
GATEWAY_MALLOC_ARENAS = 2  # see service.http.decode.cap_malloc_arenas (the 30-minute soak's gateway RSS)
INDEX_HTML = resources.files("service").joinpath("static", "index.html").read_text(encoding="utf-8")
_ERROR_RESPONSES = {code: {"model": ErrorBody} for code in (400, 401, 404, 408, 413, 415, 422, 429, 503, 504)}
# The body is read by hand (streamed, size-limited), so its schema is declared here for /docs.
_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}  # fmt: skip
_OIP_ERRORS = {code: {"model": OipError} for code in (400, 401, 404, 408, 413, 415, 422, 429, 503, 504)}
_OIP_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "an OIP infer request: JSON, or JSON then binary tensors (Inference-Header-Content-Length)",
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "outputs": {"type": "array", "items": {"type": "object"}}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}  # fmt: skip

app = FastAPI(
    title="hornet-serve",
    version="0.1.0",
    description="HorNet image classification. POST an image to /v1/classify?model=<id>.",
)


class HeaderLimit:
    """431 for a request whose headers exceed `app.state.max_header_bytes` (set by the Gateway), whichever
    ingress passed it on: HAProxy refuses heads over its 16 KB buffer itself, Ray's Python proxy does not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = getattr(scope["app"].state, "max_header_bytes", None) if scope["type"] == "http" else None
        size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))  # "name: value\r\n"
        if limit is None or size <= limit:
            await self.app(scope, receive, send)
            return
        error = errors.HeadersTooLarge(f"request headers are {size} bytes, the limit is {limit}")
        await _error_response(scope, error)(scope, receive, send)


app.add_middleware(HeaderLimit)


class InFlight:
    """The HTTP requests this replica holds, in `app.state.in_flight`: from the ASGI entry until the response is
    sent. The stop's drain waits on it (service.daemon.local.drain_gateways): Serve's own count of a replica's ongoing
    requests read 0 while requests were on their way. Every route counts: /readyz and /v1/models ask the
    classifiers too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            state.in_flight -= 1


app.add_middleware(InFlight)  # the outermost: a request refused by HeaderLimit is counted too


def _error_response(scope: Scope, error: errors.ApiError) -> JSONResponse:
    """The error in its protocol's form: OIP's `{"error": message}` under /v2, else /v1's."""
    if rest_oip.is_oip(scope["path"]):
        return rest_oip.error_response(error)
    return error.response(errors.request_id_of(scope))


@app.exception_handler(errors.ApiError)
async def _api_error(request: Request, exc: errors.ApiError) -> JSONResponse:
    return _error_response(request.scope, exc)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return _error_response(request.scope, errors.InvalidParameter(problems))


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error_type = {404: errors.NotFound, 405: errors.MethodNotAllowed}.get(exc.status_code, errors.ApiError)
    return _error_response(request.scope, error_type(str(exc.detail), status=exc.status_code))


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return _error_response(request.scope, errors.Internal(f"internal error ({type(exc).__name__}); see the server log"))


@serve.deployment
@serve.ingress(app)
class Gateway(InferenceServicer):  # and KServe's gRPC service, through Serve's gRPC ingress (service/grpc)
    def __init__(self, settings: Settings, classifiers: dict[str, DeploymentHandle] | None) -> None:
        """`classifiers`: the variants' deployment handles; None when colocated: this replica builds them itself."""
        self.settings = settings
        cap_malloc_arenas(GATEWAY_MALLOC_ARENAS)  # before the decode threads exist
        self.classifiers: dict[str, DeploymentHandle | InProcessClassifier]
        if classifiers is None:  # colocated: the classifiers are built here, and their replicas are the gateway's own
            self.classifiers = {
                model_id: InProcessClassifier(settings.variant(model_id)) for model_id in settings.models
            }
            self.replicas = ReplicaCounts(settings.app_name, deployment_of=dict.fromkeys(settings.models, GATEWAY))
        else:
            self.classifiers = classifiers
            self.replicas = ReplicaCounts(settings.app_name)
        self.decoder = Decoder(settings.gateway, DecodeRules.from_settings(settings.limits, settings.timeouts.decode_s))
        self.metrics = GatewayMetrics.create()
        self._info: dict[str, ModelInfo] = {}
        self._labels: dict[str, LabelSet] = {}
        auth = settings.auth
        self.keys = KeyStore(Path(auth.keys_file)) if auth.enabled and auth.keys_file else None
        self.buckets = TokenBuckets(auth.rate_per_s, auth.burst) if self.keys and auth.rate_per_s else None
        app.state.max_header_bytes = settings.limits.max_header_bytes
        app.state.in_flight = 0

    def reconfigure(self, variants: dict[str, dict[str, Any]]) -> None:
        """Colocated only (the gateway's `user_config`): each variant's batching and request bounds, applied to its
        classifier here."""
        for model_id, live in variants.items():
            classifier = self.classifiers[model_id]
            assert isinstance(classifier, InProcessClassifier)
            classifier.reconfigure(LiveClassifierSettings.model_validate(live))

    # --- /v1/classify, stage by stage --------------------------------------------------------------

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=_ERROR_RESPONSES, openapi_extra=_IMAGE_BODY)
    async def classify(
        self,
        request: Request,
        model: str | None = Query(None, description="variant id or alias; default: the configured default"),
        top_k: int = Query(5, description="how many predictions, best first"),
    ) -> JSONResponse:
        """Classify one image: the raw body (image/* or application/octet-stream) or multipart field `file`."""
        started = time.perf_counter()
        outcome = Outcome()
        try:
            outcome.key_id = self._authenticate(request)
            model_id = outcome.model = self._resolve(model)
            self._check_top_k(top_k)
            info = await self._model_info(model_id)  # before any upload is read: 503 at once if not ready
            data = await self._read_upload(request, model_id)
            image, decode_s = await self._decode(data, model_id, replica_decodes=info.decode == "replica")
            result = await self._infer(model_id, image, top_k)
            predictions = self._label(model_id, info, result)
            response = self._respond(request, model_id, info, predictions, started, decode_s, result)
            outcome.status = 200
            return response
        except errors.ApiError as exc:
            outcome.status = exc.status
            raise
        finally:
            self._record(outcome, time.perf_counter() - started)

    def _authenticate(self, request: Request) -> str | None:
        return self._check_key(request.headers.get("authorization"))

    def _check_key(self, authorization: str | None) -> str | None:
        """The API key's id from an Authorization value (None when keys are off): 401 without a valid key, 429 when
        its bucket is empty."""
        if self.keys is None:
            return None
        key = bearer_token(authorization)
        key_id = self.keys.identify(key) if key else None
        if key_id is None:
            raise errors.Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>'")
        wait_s = self.buckets.take(key_id) if self.buckets else 0.0
        if wait_s:
            raise errors.RateLimited(f"rate limit of key {key_id!r} reached; retry later", max(1, math.ceil(wait_s)))
        return key_id

    def _resolve(self, name: str | None) -> str:
        if name is None:
            return self.settings.default_model_id
        enabled = ", ".join(self.settings.models)
        try:
            model_id = get_variant(name).id
        except UnknownModelError:
            raise errors.UnknownModel(f"unknown model {name[:64]!r}; enabled models: {enabled}") from None
        if model_id not in self.classifiers:
            raise errors.UnknownModel(f"model {model_id!r} is not enabled here; enabled models: {enabled}")
        return model_id

    def _check_top_k(self, top_k: int) -> None:
        if not 1 <= top_k <= self.settings.limits.max_top_k:
            raise errors.InvalidParameter(f"top_k must be between 1 and {self.settings.limits.max_top_k}")

    async def _model_info(
        self, model_id: str, timeout_s: float = DESCRIBE_TIMEOUT_S, wait_for_cold_start: bool = True
    ) -> ModelInfo:
        """What the variant's replicas loaded (asked once, then cached); 503 while none answers. A variant at zero
        replicas that was never asked starts one here: a request waits for it (`_in_time`), a probe does not."""
        if model_id not in self._info:
            response = self.classifiers[model_id].describe.remote()
            try:
                info = await self._in_time(model_id, response, timeout_s, wait_for_cold_start)
            except errors.ApiError:
                raise
            except Exception as exc:  # any other failure to answer means "not ready": say which and why
                raise errors.Unavailable(
                    f"{model_id} is not ready ({type(exc).__name__})", self.settings.timeouts.retry_after_s
                ) from None
            if not info.ready:  # not cached: a redeployed replica with a good checkpoint recovers
                raise errors.Unavailable(
                    f"{model_id} failed to load: {info.reason}", self.settings.timeouts.retry_after_s
                )
            self._info[model_id] = info
        return self._info[model_id]

    async def _read_upload(self, request: Request, model_id: str) -> bytes:
        limits, timeouts = self.settings.limits, self.settings.timeouts
        data = await image_bytes(request, limits.max_body_bytes, timeouts.body_read_s)
        self.metrics.image_bytes.observe(len(data), tags={"model": model_id})
        return data

    async def _decode(
        self, data: bytes, model_id: str, replica_decodes: bool
    ) -> tuple[np.ndarray | EncodedJpeg, float]:
        """Bytes -> the variant's uint8 input, and the seconds it took (queue included)."""
        started = time.perf_counter()
        try:
            image = await self.decoder.prepare(data, get_variant(model_id).preprocessing, replica_decodes)
        except DecodeQueueFull as exc:
            raise self._decode_queue_full(exc) from None
        except (ImageTooLargeError, ImageDecodeError) as exc:
            raise self._decode_error(exc) from None
        decode_s = time.perf_counter() - started
        self.metrics.decode.observe(decode_s, tags={"model": model_id})
        return image, decode_s

    async def _infer(self, model_id: str, image: np.ndarray | EncodedJpeg, top_k: int) -> Classification:
        return await self._answer(model_id, self.classifiers[model_id].classify.remote(image, top_k))

    async def _infer_many(
        self, model_id: str, images: list[np.ndarray | EncodedJpeg], top_k: int
    ) -> list[Classification]:
        """N images in one call: they enter the replica's batch queue together (Classifier.classify_many)."""
        return await self._answer(model_id, self.classifiers[model_id].classify_many.remote(images, top_k))

    async def _answer(self, model_id: str, response: DeploymentResponse[R] | asyncio.Task[R]) -> R:
        """The classifier's answer within the time limit, its failures mapped to the client's errors."""
        retry = self.settings.timeouts.retry_after_s
        try:
            return await self._in_time(model_id, response, self.settings.timeouts.inference_s)
        except asyncio.TimeoutError:
            raise errors.Timeout(f"{model_id} did not answer within {self.settings.timeouts.inference_s:g}s") from None
        except BackPressureError:
            raise errors.Unavailable(f"{model_id} is overloaded; retry later", retry) from None
        except (DeploymentUnavailableError, RayActorError, RequestCancelledError) as exc:
            raise errors.Unavailable(f"{model_id} is not available right now ({type(exc).__name__})", retry) from None
        except Exception as exc:
            # The replica's own exception: as such through gRPC (RAY_SERVE_THROUGHPUT_OPTIMIZED), else wrapped.
            cause = exc.cause if isinstance(exc, RayTaskError) else exc
            if isinstance(cause, ModelNotLoaded):
                raise errors.Unavailable(str(cause), retry) from None
            if isinstance(cause, (ImageDecodeError, ImageTooLargeError)):  # a JPEG the replica could not decode
                raise self._decode_error(cause) from None
            raise

    async def _in_time(
        self,
        model_id: str,
        response: DeploymentResponse[R] | asyncio.Task[R],
        limit_s: float,
        wait_for_cold_start: bool = True,
    ) -> R:
        """`response` within `limit_s`; past it, while the variant starts from zero replicas, within
        `timeouts.cold_start_s` of the call: then 503 with Retry-After (the cold start is under way, so a retry
        later finds the replica). Any other lateness is asyncio.TimeoutError. A late response is cancelled."""
        started = time.monotonic()
        answer = asyncio.ensure_future(response)
        try:
            return await asyncio.wait_for(asyncio.shield(answer), limit_s)
        except asyncio.TimeoutError:
            if not wait_for_cold_start or not (await self.replicas.of(model_id)).cold:
                answer.cancel()
                response.cancel()
                raise
        cold_start_s = self.settings.timeouts.cold_start_s
        try:
            return await asyncio.wait_for(answer, max(0.0, cold_start_s - (time.monotonic() - started)))
        except asyncio.TimeoutError:
            response.cancel()
            raise errors.Unavailable(
                f"{model_id} is starting from zero replicas and did not answer within {cold_start_s:g}s",
                self.settings.timeouts.retry_after_s,
            ) from None

    def _label(self, model_id: str, info: ModelInfo, result: Classification) -> list[Prediction]:
        labels = self._labels_for(model_id, info)
        return [
            Prediction(rank=r + 1, class_index=i, wnid=labels[i].wnid, label=labels[i].name, score=s)
            for r, (i, s) in enumerate(zip(result.indices, result.scores, strict=True))
        ]

    def _labels_for(self, model_id: str, info: ModelInfo) -> LabelSet:
        """The label set of the variant's loaded head (read once per variant)."""
        if model_id not in self._labels:
            self._labels[model_id] = for_head(info.num_classes, info.labels_file)
        return self._labels[model_id]

    @staticmethod
    def _respond(
        request: Request,
        model_id: str,
        info: ModelInfo,
        predictions: list[Prediction],
        started: float,
        decode_s: float,
        result: Classification,
    ) -> JSONResponse:
        body = ClassifyResponse(
            model=model_id,
            predictions=predictions,
            weights=info.weights,
            request_id=errors.request_id_of(request.scope),
        )
        total_ms = (time.perf_counter() - started) * 1e3
        timing = (
            f"decode;dur={decode_s * 1e3:.1f}, queue;dur={result.queue_s * 1e3:.1f}, "
            f"inference;dur={result.inference_s * 1e3:.1f}, total;dur={total_ms:.1f}"
        )
        return JSONResponse(body.model_dump(), headers={"Server-Timing": timing})

    def _record(self, outcome: Outcome, elapsed_s: float) -> None:
        tags = {"model": outcome.model, "status": str(outcome.status), "protocol": outcome.protocol}
        self.metrics.requests.inc(tags=tags)
        self.metrics.request_latency.observe(elapsed_s, tags=tags)
        if self.keys is not None:
            key_tags = {"key_id": outcome.key_id or "unauthenticated", "status": str(outcome.status),
                        "protocol": outcome.protocol}  # fmt: skip
            self.metrics.key_requests.inc(tags=key_tags)

    def _decode_error(self, exc: ValueError) -> errors.ApiError:
        """A refused upload's 413 (too many pixels, over budget, past the time limit) or 400, counted by reason."""
        if isinstance(exc, ImageTooLargeError):
            self._refused({DecodeTimeoutError: "time_limit", OverBudgetError: "budget"}.get(type(exc), "pixels"))
            return errors.PayloadTooLarge(str(exc))
        self._refused("invalid")
        return errors.InvalidImage(str(exc))

    def _decode_queue_full(self, exc: DecodeQueueFull) -> errors.Unavailable:
        self._refused("queue_full")
        return errors.Unavailable(f"too many images are being decoded: {exc}", self.settings.timeouts.retry_after_s)

    def _refused(self, reason: str) -> None:
        self.metrics.decode_refusals.inc(tags={"reason": reason})

    def in_flight(self) -> int:
        """The HTTP requests (InFlight) and gRPC calls this replica holds, for the stop's drain."""
        return app.state.in_flight + self.grpc_calls

    # --- the other routes ------------------------------------------------------------------------

    @app.get("/v1/models", response_model=ModelList, responses=_ERROR_RESPONSES)
    async def list_models(self, request: Request) -> ModelList:
        """Every enabled variant: metadata, the loaded checkpoint, replicas and readiness."""
        self._authenticate(request)
        cards = [await self._card(model_id) for model_id in self.settings.models]
        return ModelList(models=cards, default=self.settings.default_model_id)

    @app.get("/v1/models/{name}", response_model=ModelCard, responses=_ERROR_RESPONSES)
    async def get_model(self, request: Request, name: str) -> ModelCard:
        self._authenticate(request)
        model_id = self._resolve(name)
        return await self._card(model_id)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(self) -> HTMLResponse:
        """A page to try the models in a browser (self-contained: no CDN, no build step)."""
        return HTMLResponse(INDEX_HTML)

    @app.get("/healthz")
    async def healthz(self) -> dict:
        """The gateway is alive (says nothing about the models)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz(self) -> dict:
        """Every enabled variant loaded, warmed and answering, or cold (at zero replicas: its next request starts
        one); `cold` names those."""
        not_ready, cold = [], []
        for model_id in self.settings.models:
            replicas = await self.replicas.of(model_id)
            if replicas.cold:
                cold.append(model_id)
            try:
                await self._probe(model_id, replicas)
            except errors.Unavailable as exc:
                not_ready.append(exc.message)
        if not_ready:
            raise errors.Unavailable("; ".join(not_ready), self.settings.timeouts.retry_after_s)
        return {"status": "ready", "models": self.settings.models, "cold": cold}

    async def _probe(self, model_id: str, replicas: Replicas) -> ModelInfo | None:
        """What a probe may learn of a variant without starting a replica: what it loaded, or None for a cold variant
        never asked before (servable: its first request starts a replica). 503 when it is not ready."""
        if replicas.cold and model_id not in self._info:
            return None
        return await self._model_info(model_id, timeout_s=PROBE_TIMEOUT_S, wait_for_cold_start=False)

    async def _card(self, model_id: str) -> ModelCard:
        variant = get_variant(model_id)
        replicas = await self.replicas.of(model_id)
        reason = None
        try:
            info = await self._probe(model_id, replicas)
        except errors.Unavailable as exc:  # not loaded: the card still shows the static metadata, ready=false
            info, reason = None, exc.message
        return ModelCard(
            id=model_id,
            aliases=list(variant.aliases),
            input_size=variant.input_size,
            params=info.params if info else None,
            gmacs=variant.gmacs,
            top1=variant.top1,
            top5=variant.top5,
            train_data=variant.train_data,
            classes=info.num_classes if info else None,
            label_set=self._labels_for(model_id, info).name if info else None,
            weights=info.weights if info else None,
            weights_source=info.weights_source if info else None,
            device=info.device if info else None,
            precision=info.precision if info else None,
            decode=info.decode if info else None,
            replicas=replicas.running,
            cold=replicas.cold,
            ready=info is not None or (replicas.cold and reason is None),
            not_ready_reason=reason,
            default=model_id == self.settings.default_model_id,
        )

    # --- /v2: the Open Inference Protocol over REST, through the stages of /v1/classify -------------------------
    # (docs/http.md#the-open-inference-protocol-v2)

    @app.get("/v2", responses=_OIP_ERRORS)
    async def oip_server(self) -> dict:
        """OIP server metadata."""
        return {"name": oip.SERVER, "version": app.version, "extensions": ["binary_tensor_data", *oip.EXTENSIONS]}

    @app.get("/v2/health/live", responses=_OIP_ERRORS)
    async def oip_live(self) -> dict:
        return {"live": True}

    @app.get("/v2/health/ready", responses=_OIP_ERRORS)
    async def oip_ready(self) -> dict:
        """Every enabled variant loaded, warmed and answering; else 503 naming which are not (as /readyz)."""
        await self.readyz()
        return {"ready": True}

    @app.get("/v2/models/{name}", responses=_OIP_ERRORS)
    async def oip_model(self, request: Request, name: str) -> dict:
        return await self.oip_model_version(request, name, oip.VERSION)

    @app.get("/v2/models/{name}/versions/{version}", responses=_OIP_ERRORS)
    async def oip_model_version(self, request: Request, name: str, version: str) -> dict:
        """OIP model metadata: input `image` (BYTES [N]) or `pixels` (UINT8 [N, S, S, 3]), the three outputs."""
        self._authenticate(request)
        model_id = self._resolve_version(name, version)
        return oip.model_metadata(model_id, get_variant(model_id).input_size)

    @app.get("/v2/models/{name}/config", responses=_OIP_ERRORS)
    async def oip_model_config(self, request: Request, name: str) -> dict:
        return await self.oip_model_version_config(request, name, oip.VERSION)

    @app.get("/v2/models/{name}/versions/{version}/config", responses=_OIP_ERRORS)
    async def oip_model_version_config(self, request: Request, name: str, version: str) -> dict:
        """Triton's model configuration extension: what perf_analyzer reads besides the metadata."""
        self._authenticate(request)
        model_id = self._resolve_version(name, version)
        return oip.model_config(model_id, get_variant(model_id).input_size, self.settings.limits.max_batch_images)

    @app.get("/v2/models/{name}/ready", responses=_OIP_ERRORS)
    async def oip_model_ready(self, request: Request, name: str) -> dict:
        return await self.oip_model_version_ready(request, name, oip.VERSION)

    @app.get("/v2/models/{name}/versions/{version}/ready", responses=_OIP_ERRORS)
    async def oip_model_version_ready(self, request: Request, name: str, version: str) -> dict:
        self._authenticate(request)
        model_id = self._resolve_version(name, version)
        await self._probe(model_id, await self.replicas.of(model_id))
        return {"name": model_id, "ready": True}

    @app.post("/v2/models/{name}/infer", responses=_OIP_ERRORS, openapi_extra=_OIP_INFER_BODY)
    async def oip_infer(self, request: Request, name: str) -> Response:
        return await self.oip_infer_version(request, name, oip.VERSION)

    @app.post("/v2/models/{name}/versions/{version}/infer", responses=_OIP_ERRORS, openapi_extra=_OIP_INFER_BODY)
    async def oip_infer_version(self, request: Request, name: str, version: str) -> Response:
        """Classify N images in one request: input `image` (encoded files) or `pixels`; parameter `top_k`."""
        started = time.perf_counter()
        outcome = Outcome(protocol="http_v2")
        try:
            outcome.key_id = self._authenticate(request)
            model_id = outcome.model = self._resolve_version(name, version)
            info = await self._model_info(model_id)  # before the body is read: 503 at once if not ready
            infer = await self._read_infer(request, model_id)
            tensors = await self._oip_outputs(infer, model_id, info)
            body, headers = rest_oip.encode_response(infer, model_id, tensors, {"weights": info.weights})
            outcome.status = 200
            return Response(body, headers=headers)
        except errors.ApiError as exc:
            outcome.status = exc.status
            raise
        finally:
            self._record(outcome, time.perf_counter() - started)

    def _resolve_version(self, name: str, version: str) -> str:
        model_id = self._resolve(name)
        oip.check_version(model_id, version)
        return model_id

    async def _read_infer(self, request: Request, model_id: str) -> oip.InferRequest:
        """The body, read under the limits of an upload, then parsed and checked on the decode lane: a big JSON
        body costs CPU the event loop cannot spare."""
        length = rest_oip.json_length(request.headers)
        limits = self.settings.limits
        body = await read_limited(request, limits.max_body_bytes, self.settings.timeouts.body_read_s)
        return await self._on_lane(rest_oip.parse_infer, body, length, get_variant(model_id).input_size, limits)

    async def _on_lane(self, parse: Callable[..., R], *args: object) -> R:
        """`parse(*args)` on the decode lane; 503 when the lane is full."""
        try:
            return await self.decoder.run(parse, *args)
        except DecodeQueueFull as exc:
            raise self._decode_queue_full(exc) from None

    async def _oip_outputs(self, infer: oip.InferRequest, model_id: str, info: ModelInfo) -> list[oip.OutputTensor]:
        """The stages of an infer request once it is read, whatever its wire: decode, classify together, label."""
        inputs = await self._oip_inputs(infer.images, model_id, info)
        results = await self._infer_many(model_id, inputs, infer.top_k)
        labels = self._labels_for(model_id, info)
        return oip.output_tensors([r.indices for r in results], [r.scores for r in results],
                                  lambda i: labels[i].name, list(infer.outputs))  # fmt: skip

    async def _oip_inputs(self, images: oip.Images, model_id: str, info: ModelInfo) -> list[np.ndarray | EncodedJpeg]:
        """What the replica takes for each image: the client's pixels as they are, or each file decoded as an upload
        to /v1 is, `decode_threads` at a time (so one request of many images queues no more than that on the lanes).
        The first image refused refuses the request, named by its position."""
        if isinstance(images, np.ndarray):
            return list(images)
        gate = asyncio.Semaphore(self.settings.gateway.decode_threads)

        async def one(position: int, data: bytes) -> np.ndarray | EncodedJpeg:
            async with gate:
                self.metrics.image_bytes.observe(len(data), tags={"model": model_id})
                try:
                    image, _ = await self._decode(data, model_id, replica_decodes=info.decode == "replica")
                except errors.ApiError as exc:
                    exc.message = f"image {position}: {exc.message}"
                    raise
                return image

        tasks = [asyncio.ensure_future(one(position, data)) for position, data in enumerate(images)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # after a refusal: the images not yet decoded never start
                task.cancel()
