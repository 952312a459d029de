"""`python -m pipelines chat`: answer the last user message of a conversation file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_sampling_flags,
    emit_json,
    quiet_stdout,
    sampling_from_args,
)
from pipelines.engine import chat, models


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("chat", help=help_text)
    parser.add_argument("--messages", required=True, metavar="FILE.json", help="a JSON list of {role, content}")
    parser.add_argument("--adapter", default=None, help="name of an adapter under <data>/adapters")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_capsule_flag(parser)
    add_sampling_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    params = sampling_from_args(args)
    path = Path(args.messages)
    if not path.is_file():
        raise UsageError(f"--messages: no such file {args.messages!r}")
    messages = chat.import_json(path.read_bytes())
    with quiet_stdout(args.json):
        handle = models.get_handle()
        shown = 0
        result = None
        for result in chat.stream_reply(handle, messages, params, adapter=args.adapter):
            if not args.json:
                sys.stdout.write(result[0].text[shown:])
                sys.stdout.flush()
                shown = len(result[0].text)
    assert result is not None
    completion, prompt = result
    if args.capsule:
        from pipelines.replay import capsules, record

        capsules.write(args.capsule, record.chat(handle, messages, completion, prompt, adapter=args.adapter))
    if args.json:
        emit_json(chat.reply_json(completion, prompt))
    else:
        sys.stdout.write("\n")
        note = f", {prompt.notice()}" if prompt.notice() else ""
        print(f"[{prompt.prompt_tokens} prompt + {len(completion.tokens)} reply tokens{note}]", file=sys.stderr)
    return 0
