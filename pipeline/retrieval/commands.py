"""The ``index`` and ``search`` commands (registered in pipeline.cli). Imports nothing heavy
until a command runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


class RetrievalCommandError(Exception):
    """Printed without a traceback by the CLI, exit status 2."""


def _filters(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        column, sep, wanted = value.partition("=")
        if not sep or not column:
            raise RetrievalCommandError(f"--where takes COLUMN=VALUE (e.g. modality=audio or label=dog), got {value!r}")
        out[column.strip()] = wanted.strip()
    return out


# ---------------------------------------------------------------- index


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.retrieval.vector_index import index_kinds

    parser.add_argument(
        "action",
        nargs="?",
        default="build",
        choices=("build", "add", "remove", "compact", "info"),
        help="build (default) a new index, add a dataset's items to one, remove items by id, compact one (fold "
        "its changes into a new base), or describe one",
    )
    parser.add_argument("ids", nargs="*", help="item ids (remove)")
    parser.add_argument("--name", default="default", help="index name under saved_models/index (default: default)")
    parser.add_argument("--run", default="latest", help="run whose encoders embed the items (build; default: latest)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset folder (build, add; default for build: the run's training data)",
    )
    parser.add_argument("--format", default=None, help="dataset layout (default: detected)")
    parser.add_argument("--split", default=None, help="index only this split (default: every item)")
    parser.add_argument(
        "--kind", default="exact", choices=list(index_kinds()), help="search structure (default: exact)"
    )
    parser.add_argument(
        "--milvus-uri",
        default=None,
        metavar="URI",
        help="kind milvus: a Milvus server, e.g. http://host:19530 (default: Milvus Lite, a database file in the index folder)",
    )
    parser.add_argument(
        "--milvus-index",
        default="FLAT",
        type=str.upper,
        choices=("FLAT", "HNSW", "IVF_FLAT"),
        help="kind milvus: the collection's vector index (default: FLAT, exact)",
    )
    parser.add_argument(
        "--from-embeddings",
        type=Path,
        default=None,
        metavar="DIR",
        help="build from the vectors `python -m pipeline embed` wrote to DIR instead of embedding the items again",
    )
    parser.add_argument(
        "--ranking",
        default=None,
        choices=("dense", "nb", "weighted", "rrf"),
        help="default ranking of text queries (default: measured on the data's dev items: a hybrid only where it beats dense)",
    )
    parser.add_argument("--weight", type=float, default=None, help="dense weight of a hybrid ranking, 0..1")
    parser.add_argument(
        "--withhold-captions",
        action="store_true",
        help="the items' own captions do not feed the Naive Bayes stage (evaluation: captions are the queries)",
    )


def kind_params(args: argparse.Namespace) -> dict:
    """The index kind's parameters from the command line (its other parameters keep their defaults)."""
    if args.kind != "milvus":
        if args.milvus_uri:
            raise RetrievalCommandError(f"--milvus-uri is for --kind milvus (this index is {args.kind})")
        return {}
    return {"uri": args.milvus_uri, "milvus_index": args.milvus_index}


def run_index(args: argparse.Namespace) -> int:
    from pipeline.data.adapters import load_dataset
    from pipeline.data.manifest import ManifestError
    from pipeline.inference import Encoder
    from pipeline.retrieval.index_builder import add_to_index, build_index
    from pipeline.retrieval.index_store import IndexProblem, SearchIndex
    from pipeline.retrieval.vector_index import BackendUnavailable
    from pipeline.run_artifacts import IncompatibleRun, read_run_info

    params = kind_params(args)
    try:
        if args.action == "build" and args.from_embeddings is not None:
            given = [flag for flag, value in (("--data", args.data), ("--split", args.split)) if value]
            given += ["--withhold-captions"] if args.withhold_captions else []
            if given:
                raise RetrievalCommandError(
                    f"{', '.join(given)} cannot go with --from-embeddings: the shards hold what `embed` wrote "
                    "(run embed with --split for one split)"
                )
            from pipeline.batch_embed.shards import EmbeddingShards, ShardProblem
            from pipeline.retrieval.index_builder import build_index_from_shards

            try:
                shards = EmbeddingShards.open(args.from_embeddings)
                encoder = Encoder.from_run(args.run if args.run != "latest" else shards.record.run)
                index = build_index_from_shards(
                    encoder, shards, args.name, kind=args.kind, params=params, ranking=args.ranking, weight=args.weight
                )
            except ShardProblem as error:
                raise RetrievalCommandError(str(error)) from None
        elif args.action == "build":
            encoder = Encoder.from_run(args.run)
            data = args.data or Path(read_run_info(encoder.run_dir).data.root)
            manifest = load_dataset(data, args.format)
            index = build_index(
                encoder,
                manifest,
                args.name,
                kind=args.kind,
                split=args.split,
                params=params,
                ranking=args.ranking,
                weight=args.weight,
                withhold_captions=args.withhold_captions,
            )
        elif args.action == "add":
            if args.data is None:
                raise RetrievalCommandError("index add needs --data PATH (the dataset whose items to add)")
            from pipeline.retrieval.searcher import Searcher

            searcher = Searcher.open(
                args.name
            )  # the index's own run, checked: new vectors must come from the same model
            index = add_to_index(searcher.index, searcher.encoder, load_dataset(args.data, args.format), args.split)
        elif args.action == "remove":
            if not args.ids:
                raise RetrievalCommandError("index remove needs the ids of the items to remove")
            from pipeline.data.item_ids import item_id_problem

            problem = next(filter(None, map(item_id_problem, args.ids)), None)
            if problem is not None:
                raise RetrievalCommandError(str(problem))
            index = SearchIndex.open(args.name).removed(args.ids)
        elif args.action == "compact":
            index = SearchIndex.open(args.name)
            pending = len(index.log.files)
            index = index.compacted()
            print(f"compacted: {pending} change file(s) folded into a new base")
        else:
            index = SearchIndex.open(args.name)
    except (IndexProblem, IncompatibleRun, ManifestError, BackendUnavailable) as error:
        raise RetrievalCommandError(str(error)) from None
    counts = index.metadata["modality"].value_counts().to_dict()
    print(f"index:    {index.folder}")
    print(f"items:    {len(index)} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})")
    ranking = index.record.ranking
    weight = "" if ranking.method in ("dense", "nb") else f" (dense weight {ranking.weight:.2f})"
    print(f"kind:     {index.record.kind}   dimension: {index.dim}   ranking of text queries: {ranking.method}{weight}")
    if ranking.why:
        print(f"          ({ranking.why})")
    print(f"run:      {index.record.model.run}")
    if index.log.files:
        print(
            f"changes:  {len(index.log.files)} change file(s) since the base ({index.tail.count} row(s) added, "
            f"{len(index.removed_rows)} removed); fold them in with: python -m pipeline index compact --name {index.name}"
        )
    print(
        f"words:    {len(index.naive_bayes.vocabulary)} in the Naive Bayes vocabulary; "
        f"{(index.metadata['words_from'] == 'predicted').sum()} item(s) have predicted words"
    )
    print(f'search:   python -m pipeline search --index {index.name} "your words" -k 10')
    return 0


# ---------------------------------------------------------------- search


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.modalities import file_modalities

    parser.add_argument("query", nargs="?", default=None, help="the words to search for")
    parser.add_argument("--index", default="default", help="index name or folder (default: default)")
    parser.add_argument("-k", type=int, default=10, help="results to show (default: 10)")
    for m in file_modalities():  # --image PATH, --audio PATH, and one per registered file modality
        parser.add_argument(
            f"--{m.name}", type=Path, default=None, metavar="PATH", help=f"search with {m.noun} instead of words"
        )
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="only items whose metadata match, e.g. --where modality=audio --where label=dog (repeatable)",
    )
    parser.add_argument(
        "--ranking",
        default=None,
        choices=("dense", "nb", "weighted", "rrf"),
        help="override the index's ranking of text queries",
    )
    parser.add_argument("--weight", type=float, default=None, help="dense weight of a hybrid ranking, 0..1")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run_search(args: argparse.Namespace) -> int:
    from pipeline.modalities import file_modalities
    from pipeline.retrieval.index_store import IndexProblem
    from pipeline.retrieval.searcher import QueryError, Searcher, format_response
    from pipeline.retrieval.vector_index import BackendUnavailable

    files = {m.name: getattr(args, m.name, None) for m in file_modalities()}
    given = [q for q in (args.query, *files.values()) if q is not None]
    if len(given) != 1:
        flags = " or ".join(f"--{name} PATH" for name in files)
        raise RetrievalCommandError(f'give exactly one query: words ("a dog on the beach"), {flags}')
    try:
        searcher = Searcher.open(args.index)
        filters = _filters(args.where)
        by_file = next(((name, path) for name, path in files.items() if path is not None), None)
        if by_file is not None:
            response = searcher.search_file(by_file[1], by_file[0], args.k, filters)
        else:
            response = searcher.search_text(args.query, args.k, filters, args.ranking, args.weight)
    except (IndexProblem, QueryError, BackendUnavailable) as error:
        raise RetrievalCommandError(str(error)) from None
    print(json.dumps(response.to_dict(), indent=2) if args.json else format_response(response))
    return 0
