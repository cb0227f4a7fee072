"""A client for TF Serving's REST API over the exported models (standard library only).

Speaks ``POST /v1/models/<name>[/versions/<v>]:predict`` with the row ("instances") format:
strings as JSON strings, image and audio bytes as ``{"b64": ...}``. Audio other than WAV
(FLAC, OGG) is decoded here and sent as 16-bit WAV, because the exported audio model decodes
with core TensorFlow ops only.

Example:
    >>> client = ServingClient("http://localhost:8501")
    >>> client.retrieve(["a dog runs on the beach"])[0][:3]
    [('1000268201_693b08cb0e.jpg', 0.61), ...]
    >>> client.embed_images(["photo.jpg"]).shape
    (1, 256)
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from pipeline.modalities.names import AUDIO


class ServingError(RuntimeError):
    """The server could not be reached, or answered with an error (its message included)."""


def _read(item) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    path = Path(item)
    if not path.is_file():
        raise ServingError(f"no such file: {path}")
    return path.read_bytes()


def to_wav(data: bytes, name: str = AUDIO) -> bytes:
    """WAV bytes as they are; FLAC or OGG decoded and re-encoded as 16-bit WAV."""
    if data[:4] == b"RIFF":
        return data
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    except Exception as error:  # soundfile raises several types for undecodable input
        raise ServingError(f"cannot decode {name} as audio (WAV, FLAC or OGG): {error}") from None
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


class ServingClient:
    """Calls the models of one TF Serving REST endpoint.

    Args:
        url: the server's REST address, e.g. ``http://localhost:8501``.
        timeout: seconds to wait for an answer.
        version: a model version to pin (default: the one the server serves, its latest).
    """

    def __init__(self, url: str = "http://localhost:8501", timeout: float = 30.0, version: int | None = None):
        self.url, self.timeout, self.version = url.rstrip("/"), timeout, version

    def _call(self, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method="POST" if body is not None else "GET",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise ServingError(f"{self.url}{path} answered {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ServingError(
                f"cannot reach TF Serving at {self.url} ({getattr(error, 'reason', error)}); "
                f"is the server running? See the deployment section of the README."
            ) from None

    def status(self, model: str) -> dict:
        """``GET /v1/models/<model>``: the versions the server has loaded and their state."""
        return self._call(f"/v1/models/{model}")

    def predict(self, model: str, instances: list) -> list:
        """The ``predictions`` of ``serving_default`` for a list of instances."""
        version = f"/versions/{self.version}" if self.version else ""
        answer = self._call(
            f"/v1/models/{model}{version}:predict", {"signature_name": "serving_default", "instances": instances}
        )
        if "predictions" not in answer:
            raise ServingError(f"{model} answered without predictions: {str(answer)[:200]}")
        return answer["predictions"]

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.predict("text_encoder", list(texts)), np.float32)

    def embed_images(self, images) -> np.ndarray:
        """Images as paths or encoded bytes (JPEG, PNG, GIF, BMP)."""
        payload = [{"b64": base64.b64encode(_read(i)).decode()} for i in images]
        return np.asarray(self.predict("image_encoder", payload), np.float32)

    def embed_audio(self, clips) -> np.ndarray:
        """Clips as paths or encoded bytes (WAV as is; FLAC and OGG converted to WAV here)."""
        payload = [
            {"b64": base64.b64encode(to_wav(_read(c), str(c) if not isinstance(c, bytes) else AUDIO)).decode()}
            for c in clips
        ]
        return np.asarray(self.predict("audio_encoder", payload), np.float32)

    def retrieve(self, queries: list[str]) -> list[list[tuple[str, float]]]:
        """Per query, the retriever's top-k (item id, dense score) pairs, best first."""
        out = []
        for prediction in self.predict("retriever", list(queries)):
            out.append([(str(i), float(s)) for i, s in zip(prediction["item_ids"], prediction["scores"])])
        return out
