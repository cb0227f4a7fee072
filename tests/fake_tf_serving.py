"""A stand-in for TF Serving's REST API, for tests: TF Serving itself cannot run here.

It serves the SavedModels under a model root the way ``tensorflow/serving`` does with a
``models.config``: the highest version of each model unless a version is asked for,
``GET /v1/models/<name>`` for status, ``POST /v1/models/<name>[/versions/<v>]:predict``
with the row format (``instances``; ``{"b64": ...}`` for bytes), answers as
``{"predictions": ...}`` (one output: its values per row; several: a dict per row), errors as
``{"error": ...}`` with status 400 or 404. It loads models with ``tf.saved_model.load`` and
calls ``signatures["serving_default"]``, as the server does; it never imports the project.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf

ROUTE = re.compile(r"^/v1/models/(?P<name>[\w-]+)(?:/versions/(?P<version>\d+))?(?P<predict>:predict)?$")


def _listify(value):
    if isinstance(value, np.ndarray):
        return [_listify(v) for v in value] if value.ndim else _listify(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


class FakeTFServing:
    """``with FakeTFServing(root) as url: ...`` serves ``root``'s models at ``url``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._loaded: dict[tuple[str, int], object] = {}
        self._lock = threading.Lock()
        self.requests: list[dict] = []

    def versions(self, name: str) -> list[int]:
        return sorted(int(p.name) for p in (self.root / name).glob("*") if p.is_dir() and p.name.isdigit())

    def model(self, name: str, version: int | None):
        versions = self.versions(name)
        version = version or (versions[-1] if versions else None)
        if version not in versions:
            raise LookupError(
                f"Servable not found for request: {'Specific' if version else 'Latest'}({name}{', ' + str(version) if version else ''})"
            )
        with self._lock:
            if (name, version) not in self._loaded:
                self._loaded[(name, version)] = tf.saved_model.load(str(self.root / name / str(version)))
        return self._loaded[(name, version)]

    def predict(self, name: str, version: int | None, body: dict) -> dict:
        signature = self.model(name, version).signatures[body.get("signature_name", "serving_default")]
        _, inputs = signature.structured_input_signature
        if "instances" not in body:
            raise ValueError("Missing 'instances' key")
        instances = body["instances"]
        if len(inputs) == 1:
            ((input_name, spec),) = inputs.items()
            rows = [i[input_name] if isinstance(i, dict) and input_name in i else i for i in instances]
            columns = {input_name: rows}
        else:
            columns = {key: [i[key] for i in instances] for key in inputs}
        tensors = {}
        for key, rows in columns.items():
            rows = [base64.b64decode(r["b64"]) if isinstance(r, dict) and "b64" in r else r for r in rows]
            tensors[key] = tf.constant(rows, dtype=inputs[key].dtype)
        outputs = {k: v.numpy() for k, v in signature(**tensors).items()}
        if len(outputs) == 1:
            return {"predictions": _listify(next(iter(outputs.values())))}
        return {"predictions": [{k: _listify(v[row]) for k, v in outputs.items()} for row in range(len(instances))]}

    def __enter__(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                match = ROUTE.match(self.path)
                if not match:
                    self._answer(404, {"error": f"Malformed request: {self.command} {self.path}"})
                return match

            def do_GET(self):
                match = self._route()
                if match and not match["predict"]:
                    versions = fake.versions(match["name"])
                    if not versions:
                        return self._answer(404, {"error": f"Could not find any versions of model {match['name']}"})
                    self._answer(
                        200,
                        {
                            "model_version_status": [
                                {
                                    "version": str(versions[-1]),
                                    "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""},
                                }
                            ]
                        },
                    )

            def do_POST(self):
                match = self._route()
                if not match:
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body})
                try:
                    self._answer(
                        200, fake.predict(match["name"], int(match["version"]) if match["version"] else None, body)
                    )
                except LookupError as error:
                    self._answer(404, {"error": str(error)})
                except (ValueError, KeyError, TypeError, tf.errors.OpError) as error:
                    self._answer(400, {"error": getattr(error, "message", str(error))})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
