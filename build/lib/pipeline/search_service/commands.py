"""The ``serve`` command (registered in pipeline.cli): the search service over an index."""

from __future__ import annotations

import argparse
import dataclasses
import os

TOKEN_VARIABLE = "PIPELINE_API_TOKEN"


class ServeCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", default="default", help="index to serve (name under saved_models/index, or a path; default: default)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body, in MB (default 10)")
    parser.add_argument("--max-k", type=int, default=100, help="most results a search may ask for (default 100)")
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=40.0,
        help="largest image (width x height, x frames for a GIF) an upload may declare, in megapixels (default 40)",
    )
    parser.add_argument(
        "--max-audio-seconds",
        type=float,
        default=60.0,
        help="longest sound an upload may declare, in seconds (default 60)",
    )


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.run_artifacts import IncompatibleRun
    from pipeline.search_service.app import create_app
    from pipeline.search_service.state import SERVICE_MEDIA_LIMITS, ServiceConfig

    token = os.environ.get(TOKEN_VARIABLE) or None
    try:
        limits = dataclasses.replace(
            SERVICE_MEDIA_LIMITS, max_pixels=int(args.max_megapixels * 1e6), max_audio_seconds=args.max_audio_seconds
        )
    except ValueError as error:
        raise ServeCommandError(f"--max-megapixels and --max-audio-seconds must be positive ({error})") from None
    config = ServiceConfig(
        index=args.index,
        api_token=token,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_k=args.max_k,
        limits=limits,
    )
    try:
        app = create_app(config)
    except (IndexProblem, IncompatibleRun) as error:
        raise ServeCommandError(str(error)) from None
    if token is None:
        print(f"note: {TOKEN_VARIABLE} is not set, so feedback and new items are refused (401); searches work.")
    print(f"serving index {args.index} at http://{args.host}:{args.port}/  (API docs: /docs, metrics: /metrics)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
