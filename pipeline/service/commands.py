"""The ``serve`` command (registered in pipeline.cli): the search service over an index."""

from __future__ import annotations

import argparse
import os

TOKEN_VARIABLE = "PIPELINE_API_TOKEN"


class ServeCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", default="default", help="index to serve (name under saved_models/index, or a path; default: default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body, in MB (default 10)")
    parser.add_argument("--max-k", type=int, default=100, help="most results a search may ask for (default 100)")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.run_artifacts import IncompatibleRun
    from pipeline.service.app import create_app
    from pipeline.service.state import ServiceConfig

    token = os.environ.get(TOKEN_VARIABLE) or None
    config = ServiceConfig(index=args.index, api_token=token, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_k=args.max_k)
    try:
        app = create_app(config)
    except (IndexProblem, IncompatibleRun) as error:
        raise ServeCommandError(str(error)) from None
    if token is None:
        print(f"note: {TOKEN_VARIABLE} is not set, so feedback and new items are refused (401); searches work.")
    print(f"serving index {args.index} at http://{args.host}:{args.port}/  (API docs: /docs, metrics: /metrics)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
