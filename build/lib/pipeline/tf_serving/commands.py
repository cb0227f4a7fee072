"""The ``export`` and ``query-serving`` commands (registered in pipeline.cli). Imports nothing
heavy until a command runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


class ServingCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


# ---------------------------------------------------------------- export


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", default=None, help="run whose encoders to export (default: the index's run, or latest)"
    )
    parser.add_argument(
        "--index",
        default=None,
        help="also export a retriever over this index (name under saved_models/index, or a path)",
    )
    parser.add_argument("-k", type=int, default=10, help="results the retriever returns per query (default 10)")
    parser.add_argument("--out", type=Path, default=None, help="model root (default: saved_models/)")


def run_export(args: argparse.Namespace) -> int:
    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.run_artifacts import IncompatibleRun
    from pipeline.tf_serving.export import CONTAINER_ROOT, ExportError, export_for_serving

    try:
        result = export_for_serving(args.run, args.index, args.out, args.k)
    except (ExportError, IndexProblem, IncompatibleRun) as error:
        raise ServingCommandError(str(error)) from None
    print(f"version {result.version}:")
    for name, path in result.models.items():
        print(f"  {name + ':':15s}{path}")
    print(f"  {'models.config:':15s}{result.models_config}")
    root = result.models_config.parent.resolve()
    print(
        f"\nServe them: docker run -p 8501:8501 -p 8500:8500 -v {root}:{CONTAINER_ROOT} tensorflow/serving "
        f"--model_config_file={CONTAINER_ROOT}/models.config"
    )
    return 0


# ---------------------------------------------------------------- query-serving


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="*", help="words: the retriever's top-k ids and scores")
    parser.add_argument(
        "--url", default="http://localhost:8501", help="TF Serving's REST address (default http://localhost:8501)"
    )
    parser.add_argument("--image", type=Path, default=None, help="an image: its embedding from image_encoder")
    parser.add_argument(
        "--audio", type=Path, default=None, help="a sound (WAV, FLAC, OGG): its embedding from audio_encoder"
    )
    parser.add_argument(
        "--index",
        default=None,
        help="a local index: show the retriever's hits with their captions, and search it with an image or audio embedding",
    )
    parser.add_argument("-k", type=int, default=10, help="results shown (default 10)")
    parser.add_argument("--version", type=int, default=None, help="model version to ask for (default: the served one)")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print JSON")


def run_query(args: argparse.Namespace) -> int:
    from pipeline.tf_serving.client import ServingClient, ServingError

    text = " ".join(args.query).strip()
    given = [name for name, value in (("words", text), ("--image", args.image), ("--audio", args.audio)) if value]
    if len(given) != 1:
        raise ServingCommandError(
            "give exactly one query: words, --image PATH or --audio PATH"
            + (f" (got {', '.join(given)})" if given else "")
        )
    client = ServingClient(args.url, timeout=args.timeout, version=args.version)
    index = None
    if args.index:
        from pipeline.retrieval.index_store import IndexProblem, SearchIndex

        try:
            index = SearchIndex.open(args.index)
        except IndexProblem as error:
            raise ServingCommandError(str(error)) from None
    try:
        if text:
            hits = client.retrieve([text])[0][: args.k]
            answer = {"query": text, "model": "retriever", "hits": [{"item_id": i, "score": s} for i, s in hits]}
        else:
            model, vector = (
                ("image_encoder", client.embed_images([args.image]))
                if args.image
                else ("audio_encoder", client.embed_audio([args.audio]))
            )
            answer = {"query": str(args.image or args.audio), "model": model, "embedding": vector[0].round(6).tolist()}
            if index is not None:
                from pipeline.retrieval.searcher import QueryError, Searcher

                try:
                    response = Searcher(index).search_vector(vector, args.k)
                except QueryError as error:
                    raise ServingCommandError(
                        f"the served {model}'s embedding does not fit index {index.name}: {error}"
                    ) from None
                answer["hits"] = [{"item_id": h.item_id, "score": h.score} for h in response.hits]
    except ServingError as error:
        raise ServingCommandError(str(error)) from None
    if index is not None:
        for hit in answer.get("hits", []):
            row = index.row_of.get(hit["item_id"])
            if row is not None:
                hit["caption"], hit["modality"] = index.columns["caption"][row], index.columns["modality"][row]
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"{answer['model']} at {args.url}: {answer['query']}")
    if "embedding" in answer:
        values = answer["embedding"]
        print(f"embedding ({len(values)} values): {', '.join(f'{v:.4f}' for v in values[:6])}, ...")
    for rank, hit in enumerate(answer.get("hits", []), 1):
        extra = f"  [{hit['modality']}] {hit['caption']}" if "caption" in hit else ""
        print(f"{rank:3d}. {hit['score']:.4f}  {hit['item_id']}{extra}")
    return 0
