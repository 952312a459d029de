"""`python -m pipelines rag ingest|query|eval`: document collections, headless."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_sampling_flags,
    add_spec_flags,
    emit_json,
    needs_action,
    quiet_stdout,
    sampling_from_args,
)
from pipelines.engine import models
from pipelines.rag import answer, chunking, evaluate, retrieval, store
from pipelines.replay import capsules, record
from pipelines.store import personal_data


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("rag", help=help_text)
    commands = parser.add_subparsers(dest="rag_command", metavar="ACTION", parser_class=type(parser))
    ingest = commands.add_parser("ingest", help="add files to a collection (created if missing)")
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("files", nargs="+", metavar="FILE")
    add_spec_flags(ingest, chunking.ChunkSpec, title="chunks (new collections)")
    ingest.set_defaults(**asdict(chunking.ChunkSpec()))
    ingest.add_argument(
        "--refuse-personal-data",
        action="store_true",
        help="do not index a file that holds e-mail addresses, phone numbers, card numbers or names "
        '(found either way, and reported per file as "personal_data")',
    )
    ingest.add_argument("--json", action="store_true")
    ingest.set_defaults(handler=run_ingest)
    query = commands.add_parser("query", help="retrieve passages and answer with citations")
    query.add_argument("--collection", required=True)
    query.add_argument("--question", required=True)
    add_spec_flags(query, retrieval.SearchSpec)
    query.add_argument("--no-generate", action="store_true", help="only retrieve")
    query.add_argument("--json", action="store_true")
    add_capsule_flag(query)
    add_sampling_flags(query)
    query.set_defaults(handler=run_query, temperature=0.0, **asdict(retrieval.SearchSpec()))
    ev = commands.add_parser("eval", help="recall@k and MRR for dense, BM25 and hybrid retrieval")
    ev.add_argument("--collection", required=True)
    ev.add_argument("--questions", required=True, metavar="FILE", help='JSONL of {"question", "source", "page"?}')
    add_spec_flags(ev, retrieval.SearchSpec, skip=("mode",))  # every mode is measured
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=run_eval, k=retrieval.SearchSpec().k)
    parser.set_defaults(handler=needs_action("rag", "ingest, query or eval"))


def _collection(name: str) -> None:
    try:
        store.meta(name)
    except store.CollectionError as error:
        raise UsageError(str(error)) from error


def run_ingest(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not Path(f).is_file()]
    with quiet_stdout(args.json):
        try:
            if not (store.collection_dir(args.collection) / "collection.json").exists():
                store.create(args.collection, chunk_size=args.chunk_size, overlap=args.overlap)
            report = store.ingest(
                args.collection,
                [(f, Path(f).name) for f in args.files if f not in missing],
                refuse_personal_data=True if args.refuse_personal_data else None,  # else the collection's policy
            )
        except store.CollectionError as error:
            raise UsageError(str(error)) from error
    report.errors[:0] = [{"file": Path(f).name, "error": "no such file"} for f in missing]
    if args.json:
        emit_json(report.to_json())
    else:
        for item in report.ingested:
            print(f"ingested {item['file']}: {item['chunks']} chunks")
            if "personal_data" in item:
                print(f"  personal data: {personal_data.described(item['personal_data'])}")
        for item in report.unchanged:
            print(f"unchanged {item['file']} (already in the collection)")
        for item in report.errors:
            print(f"error {item['file']}: {item['error']}", file=sys.stderr)
    return 0 if report.ingested or report.unchanged else 1


def run_query(args: argparse.Namespace) -> int:
    _collection(args.collection)
    params = sampling_from_args(args)
    search = retrieval.SearchSpec(mode=args.mode, k=args.k)
    try:
        with quiet_stdout(args.json):
            handle = models.get_handle()
            found = answer.answered(
                handle, args.collection, args.question, params, search, generate=not args.no_generate
            )
            report = answer.report(found, search)
            if args.capsule:
                capsules.write(args.capsule, record.rag(handle, args.collection, args.question, search, found))
    except (ValueError, store.CollectionError) as error:
        raise UsageError(str(error)) from error
    if args.json:
        emit_json(report)
        return 0
    for rank, chunk in enumerate(report["chunks"], 1):
        page = f" p.{chunk['page']}" if chunk["page"] else ""
        print(f"[{rank}] {chunk['score']:.3f} {chunk['source']}{page}: {chunk['text'][:160]}")
    if report["answer"] is not None:
        print(f"\n{report['answer']}")
        for item in report["support"]:
            mark = (
                "supported by " + ", ".join(f"[{n}]" for n in item["passages"])
                if item["passages"]
                else ("no claim" if not item["claim"] else "NOT SUPPORTED")
            )
            print(f"  - {mark}: {item['sentence']}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    _collection(args.collection)
    if not Path(args.questions).is_file():
        raise UsageError(f"--questions: no such file {args.questions!r}")
    rows, errors = evaluate.load_questions(args.questions)
    if not rows:
        raise UsageError(f"no usable questions in {args.questions}" + (f" ({errors[0]['error']})" if errors else ""))
    try:
        with quiet_stdout(args.json):
            report = evaluate.evaluate(args.collection, rows, k=args.k)
        assert report is not None  # only a should_stop ends it early
    except ValueError as error:
        raise UsageError(str(error)) from error
    report["errors"] = errors
    if args.json:
        emit_json(report)
    else:
        for mode in retrieval.MODES:
            print(f"{mode:7s} recall@{args.k} {report[mode][f'recall@{args.k}']:.3f}  MRR {report[mode]['mrr']:.3f}")
    return 0
