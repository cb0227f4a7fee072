"""A minimal HTTP client of the search service (standard library only): JSON posts and multipart
uploads over one keep-alive connection, for the load and hostile-input tests and benchmarks."""

from __future__ import annotations

import http.client
import json
import uuid
from urllib.parse import urlsplit


class ServiceClient:
    """Requests to one service; each call answers ``(status, body as JSON or text)``.

    Args:
        base: the service's base URL, e.g. http://127.0.0.1:8000
        token: the API token sent with every request (None: none sent).
        timeout: seconds a request may take before it counts as failed.
    """

    def __init__(self, base: str, token: str | None = None, timeout: float = 60):
        parts = urlsplit(base)
        self.host, self.port, self.token, self.timeout = parts.hostname, parts.port, token, timeout
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def close(self) -> None:
        self.connection.close()

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # a fresh connection for the next request
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            raise
        try:
            return response.status, json.loads(payload)
        except ValueError:
            return response.status, payload.decode(errors="replace")

    def post_json(self, path: str, body) -> tuple[int, object]:
        return self.request("POST", path, json.dumps(body).encode(), "application/json")

    def post_form(
        self, path: str, fields: dict[str, str], file: tuple[str, bytes, str] | None = None
    ) -> tuple[int, object]:
        """A multipart form: text ``fields`` and an optional ``file`` (name, bytes, content type)."""
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + value.encode()
                + b"\r\n"
            )
        if file is not None:
            filename, data, content_type = file
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", path, body, f"multipart/form-data; boundary={boundary}")

    def get(self, path: str) -> tuple[int, object]:
        return self.request("GET", path)
