"""Malformed requests generated from a service's OpenAPI document (hypothesis strategies).

Used by the service's tests (in process) and by ``make bench-serve`` (against the running
service): every operation that takes a JSON body gets bodies shaped by its schema (edge values,
wrong types, missing and extra fields) and arbitrary JSON; ``/search`` also gets uploads of
random bytes under several declared media types. A 5xx answer is a failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ANY_SCALAR = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
UPLOAD_TYPES = ["image/png", "image/jpeg", "audio/wav", "application/octet-stream", ""]


def from_schema(schema: dict, components: dict):
    """A strategy for values shaped by one JSON schema of an OpenAPI document."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(max_size=schema.get("maxLength", 40) + 5) | st.sampled_from(
            ["", " ", "a", "x" * 1001, "\x00", "🦓 zebra"]
        )
    if kind == "integer":
        return st.integers(-(10**6), 10**6) | st.sampled_from(
            [schema.get("minimum", 0), schema.get("maximum", 0), -1, 0, 2**63]
        )
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components), max_size=3)
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and not schema.get("properties"):
            return st.dictionaries(st.text(max_size=10), from_schema(values, components), max_size=3)
        fields = {
            name: st.one_of(from_schema(sub, components), ANY_SCALAR)
            for name, sub in schema.get("properties", {}).items()
        }
        return st.fixed_dictionaries({}, optional=fields).flatmap(
            lambda body: st.dictionaries(st.text(max_size=6), ANY_SCALAR, max_size=1).map(
                lambda extra: {**extra, **body}
            )
        )
    return ANY_SCALAR


def json_requests(openapi: dict):
    """(path, body) pairs: bodies from each JSON operation's schema, and arbitrary JSON."""
    components = openapi.get("components", {}).get("schemas", {})
    shaped = []
    for path, operations in openapi["paths"].items():
        body = operations.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            shaped.append(st.tuples(st.just(path), from_schema(body["schema"], components)))
    posts = sorted(p for p, ops in openapi["paths"].items() if "post" in ops)
    return st.one_of(*shaped, st.tuples(st.sampled_from(posts), ANY_JSON))


def fuzz(
    openapi: dict,
    post_json: Callable[[str, object], int],
    post_upload: Callable[[bytes, str, str | None], int],
    json_examples: int = 200,
    upload_examples: int = 40,
) -> dict:
    """Sends the generated requests through the two callables (each returns the HTTP status);
    returns the status counts and the requests that got a 5xx."""
    statuses: Counter = Counter()
    failures: list[str] = []

    @settings(
        max_examples=json_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(json_requests(openapi))
    def send_json(case):
        path, body = case
        status = post_json(path, body)
        statuses[status] += 1
        if status >= 500:
            failures.append(f"POST {path} {body!r}"[:300])

    @settings(
        max_examples=upload_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(st.binary(max_size=2000), st.sampled_from(UPLOAD_TYPES), st.one_of(st.none(), st.text(max_size=6)))
    def send_upload(data, content_type, k):
        status = post_upload(data, content_type, k)
        statuses[status] += 1
        if status >= 500:
            failures.append(f"upload {content_type!r} k={k!r} {data[:40]!r}")

    send_json()
    send_upload()
    return {
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": failures,
    }
