"""LitServe wrapping this project's predictor: `POST /predict`, a multipart upload (field `file`) -> the top-5 JSON.

    .venv-peers/bin/python -m loadtest.peers.litserve_peer --model hornet-t --port 8101

One inference worker on the CPU, batches of up to the service's max_batch_size gathered for up to its batch
wait (LitServe's `max_batch_size`, `batch_timeout`); the worker decodes each upload in `decode_request`. Ready
when `GET /health` answers 200.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation (the class Request, not a
# string) to hand it the parsed form.
import litserve as ls
import numpy as np
from fastapi import HTTPException, Request

from loadtest.peers.common import PeerModel, arguments, configure_logging
from model import ImageDecodeError, ImageTooLargeError
from service.config import Settings


class HornetAPI(ls.LitAPI):
    def __init__(self, model_id: str, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_id = model_id

    def setup(self, device: str) -> None:
        configure_logging()
        self.model = PeerModel.load(self.model_id)

    def decode_request(self, request: Request) -> np.ndarray:
        upload = request["file"]  # the form LitServe's API server parsed, pickled over to this worker
        try:
            return self.model.pixels(upload.file.read())
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except ImageDecodeError as exc:
            raise HTTPException(400, str(exc)) from None

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs  # `predict` stacks them

    def predict(self, x: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        indices, scores = self.model.predict(x)
        return list(zip(indices, scores, strict=True))

    def unbatch(self, output: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        return output

    def encode_response(self, output: tuple[np.ndarray, np.ndarray]) -> dict:
        return self.model.answer(*output)


def main() -> None:
    args = arguments(__doc__ or "")
    # The service's default batching, read here without loading the model (this is the API server's process).
    batch = Settings.model_validate({"models": [args.model]}).classifier.batch
    api = HornetAPI(args.model, batch.max_batch_size, batch.batch_wait_timeout_s)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
