"""RAG tab: collections and documents, ask with citations beside a no-retrieval answer, evaluate."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.access import get_policy
from pipelines.engine import models
from pipelines.rag import answer, attribution, chunking, embedder, evaluate, parsing, retrieval, store
from pipelines.replay import record
from pipelines.store import personal_data

from . import capsule_files, history
from .controls import (
    MODEL_EVENTS,
    STOPS,
    Throttle,
    cleared_first,
    how_it_works,
    stoppable,
    to_params,
    waiting_note,
)
from .errors import UserError
from .guard import admin_only, signed_in
from .pickers import FIRST, LiveDropdown
from .sidebar import Shared, selected_adapter, signed_in_user
from .spec_controls import build_spec, control

UI_UPDATE_SECONDS = 0.1
MAX_FILES_PER_UPLOAD = 20
ALLOWED = tuple(parsing.KINDS)


@signed_in("create collections")
def create_collection(name: str, chunk_size: float, overlap: float, request: gr.Request | None = None):
    chunks = build_spec(chunking.ChunkSpec, {"chunk_size": chunk_size, "overlap": overlap})  # refusals name the control
    store.create((name or "").strip(), chunk_size=chunks.chunk_size, overlap=chunks.overlap)
    gr.Info(f"Collection {name!r} created.")
    return gr.update(choices=store.collection_names(), value=name.strip())


@admin_only("delete data")
def delete_collection(name: str | None, request: gr.Request | None = None):
    if not name:
        raise UserError("Choose a collection.")
    store.delete(name)
    names = store.collection_names()
    return gr.update(choices=names, value=names[0] if names else None)


def documents_table(name: str | None) -> pd.DataFrame:
    columns = ["id", "file", "type", "pages", "chunks", "characters", "added", "by"]
    if not name:
        return pd.DataFrame(columns=columns)
    generation = store.load(name)
    return pd.DataFrame(
        [
            [
                d.id,
                d.name,
                d.kind,
                d.pages or "",
                d.chunks,
                d.characters,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(d.added)),
                d.added_by,
            ]
            for d in generation.documents
        ],
        columns=columns,
    )


def collection_summary(name: str | None) -> str:
    if not name:
        return "Create a collection, then upload documents."
    if name not in store.collection_names():
        return f"⚠️ There is no collection named {html.escape(name)!r} (any more): choose another."
    meta, generation = store.meta(name), store.load(name)
    return (
        f"**{html.escape(name)}** — {len(generation.documents)} documents, {len(generation.chunks)} chunks of "
        f"{meta['chunk_size']} tokens (overlap {meta['overlap']}), {generation.index_kind} index, embedder `{meta['embedder']}`."
    )


@signed_in("change a collection's settings")
def set_personal_data_policy(name: str | None, refuse: bool, request: gr.Request | None = None) -> tuple[str, bool]:
    """The collection's policy for documents holding personal data, from now on (and the box as kept)."""
    if not name:  # said in the panel, and the box unticked: no policy was kept
        return "⚠️ Choose or create a collection first: the policy belongs to a collection.", False
    store.set_refuse_personal_data(name, bool(refuse))
    if refuse:
        said = f"**{html.escape(name)}** now refuses documents that hold personal data (those already in it stay)."
    else:
        said = f"**{html.escape(name)}** indexes documents that hold personal data, and reports what each holds."
    return said, bool(refuse)


def refuses_personal_data(name: str | None) -> bool:
    return bool(name) and store.refuses_personal_data(str(name))


@signed_in("upload documents")
def ingest_files(name: str | None, files: list[str] | None, request: gr.Request | None = None):
    """Ingest uploads; every file gets a line saying what happened, and what personal data it holds."""
    if not name:
        raise UserError("Choose or create a collection first.")
    if not files:
        raise UserError("Choose one or more files to upload.")
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise UserError(f"At most {MAX_FILES_PER_UPLOAD} files per upload.")
    report = store.ingest_uploads(
        name,
        files,
        added_by=signed_in_user(request) or "",
        max_bytes=parsing.MAX_FILE_BYTES,
        allowed_suffixes=ALLOWED,
    )
    lines: list[str] = []
    for item in report.ingested:
        lines.append(f"✅ {html.escape(item['file'])}: {item['chunks']} chunks")
        if "personal_data" in item:
            lines.append(
                f"⚠️ {html.escape(item['file'])} holds personal data, now served to whoever asks this collection: "
                f"{html.escape(personal_data.described(item['personal_data']))}. Remove the document if it should "
                "not be, or tick *Refuse documents with personal data* before ingesting."
            )
    lines += [
        f"↺ {html.escape(i['file'])}: already in the collection (same content), skipped" for i in report.unchanged
    ]
    lines += [f"❌ {html.escape(e['file'])}: {html.escape(e['error'])}" for e in report.errors]
    return "  \n".join(lines), documents_table(name), collection_summary(name)


INJECTION_DEMO = Path(__file__).resolve().parent.parent / "assets" / "documents" / "prompt_injection_demo.md"


INJECTION_COLLECTION = "injection-demo"


def ingest_injection_demo(name: str | None, request: gr.Request | None = None):
    """Add the bundled prompt-injection document: a product FAQ with an instruction hidden in it,
    to show that retrieved text reaches the model with the same authority as the question. With no
    collection chosen (a fresh install has none) it makes its own and selects it (issue 42)."""
    if not name:
        name = INJECTION_COLLECTION
        if name not in store.collection_names():
            create_collection(name, chunking.DEFAULT_CHUNK_TOKENS, chunking.DEFAULT_OVERLAP_TOKENS, request=request)
    report, docs, summary = ingest_files(name, [str(INJECTION_DEMO)], request=request)
    return report, docs, summary, gr.update(choices=store.collection_names(), value=name)


@signed_in("remove documents")
def remove_document(name: str | None, doc_id: str, request: gr.Request | None = None):
    """Admins may remove any document; a signed-in user the ones they uploaded."""
    if not name or not doc_id:
        raise UserError("Choose a collection and a document id (from the table).")
    user = signed_in_user(request)
    doc = store.remove_document(name, doc_id.strip(), allowed=lambda d: get_policy().may_remove(user, d.added_by))
    return f"Removed {html.escape(doc.name)}.", documents_table(name), collection_summary(name)


@signed_in("re-index collections")
def reindex_collection(name: str | None, request: gr.Request | None = None) -> str:
    if not name:
        raise UserError("Choose a collection.")
    n = store.reindex(name)
    return f"Re-embedded {n} chunks with {embedder.EMBEDDER_NAME}."


def _hits_frame(hits: list[retrieval.Hit]) -> pd.DataFrame:
    return pd.DataFrame(
        [[f"[{h.rank}]", round(h.score, 4), h.chunk.source, h.chunk.page or "", h.chunk.text[:300]] for h in hits],
        columns=["#", "score", "source", "page", "passage"],
    )


def _linked(escaped: str, numbers: list[int]) -> str:
    for number in numbers:  # link each [n] the model wrote to its passage below
        escaped = escaped.replace(f"[{number}]", f"<a href='#passage-{number}'>[{number}]</a>")
    return escaped


def _sources_line(label: str, numbers: list[int], hits: list[retrieval.Hit]) -> str:
    return f"{label}: " + ", ".join(f"[{n}] {html.escape(hits[n - 1].chunk.source)}" for n in numbers)


def _source_links(numbers: list[int], title: str) -> str:
    return "".join(
        f" <a class='attributed' href='#passage-{n}' title='{html.escape(title, quote=True)}'>[{n}]</a>"
        for n in numbers
    )


def _answer_md(text: str, hits: list[retrieval.Hit], supports: list[attribution.SentenceSupport] | None = None) -> str:
    """The answer with [n] linked to passages; once finished (`supports` given), each sentence is
    marked with the passages that support it and sentences nothing supports are underlined."""
    if supports is None:
        cited = answer.citations(text, len(hits))
        footer = f"  \n<span class='muted'>{_sources_line('Cites', cited, hits)}</span>" if cited else ""
        return _linked(html.escape(text), cited) + footer
    parts, cursor, missing = [], 0, []
    for item in supports:
        parts.append(html.escape(text[cursor : item.start]))
        body = _linked(html.escape(item.sentence), item.cited)
        if item.claim and not item.passages:
            why = f"no passage supports this ({item.word_support:.0%} of its words are in the passages)"
            body = f"<span class='unsupported' title='{html.escape(why, quote=True)}'>{body}</span>"
        added = [n for n in item.passages if n not in item.cited]
        if added:
            body += _source_links(
                added,
                f"found by checking: {item.word_support:.0%} of its words are in the passage, similarity {item.similarity:.2f}",
            )
        if item.passages:
            missing += [w for w in item.unsupported_words if w not in missing]
        parts.append(body)
        cursor = item.end
    parts.append(html.escape(text[cursor:]))
    lines = []
    sources = attribution.supporting_passages(supports)
    if sources:
        lines.append(_sources_line("Sources", sources, hits))
    claims = [i for i in supports if i.claim]
    if any(n not in i.cited for i in supports for n in i.passages):
        lines.append(
            "[n] with a dotted underline were added by checking each sentence against the passages (shared words "
            "and embedding similarity), not written by the model."
        )
    unsupported = [i for i in claims if not i.passages]
    if unsupported:
        lines.append(
            f"⚠️ {len(unsupported)} of {len(claims)} statements are not supported by the passages (wavy underline)."
        )
    if missing:
        lines.append(
            "Words in supported statements that the passages do not contain: "
            + ", ".join(html.escape(w) for w in missing[:12])
        )
    return "".join(parts) + "".join(f"  \n<span class='muted'>{line}</span>" for line in lines)


def passages_html(hits: list[retrieval.Hit]) -> str:
    blocks = []
    for h in hits:
        where = html.escape(h.chunk.source) + (f", page {h.chunk.page}" if h.chunk.page else "")
        blocks.append(
            f"<div class='passage' id='passage-{h.rank}'><b>[{h.rank}]</b> <span class='muted'>{where} · characters "
            f"{h.chunk.start}–{h.chunk.end} · score {h.score:.4f}</span><br>{html.escape(h.chunk.text)}</div>"
        )
    return "".join(blocks)


def ask(name: str | None, question: str, mode: str, k: float, adapter: str | None = None, **sampling: Any):
    """Retrieve, then stream the grounded answer and the answer without retrieval side by side."""
    if not name:
        raise UserError("Choose a collection with documents first.")
    if not question or not question.strip():
        raise UserError("Type a question.")
    params = to_params(sampling)
    search = build_spec(retrieval.SearchSpec, {"mode": mode, "k": k})
    hits = retrieval.search(name, question, k=search.k, mode=search.mode)
    if not hits:
        gr.Warning("Nothing in the collection matched; the model will say the documents do not cover it.")
    frame, passages = _hits_frame(hits), passages_html(hits)
    throttle = Throttle(UI_UPDATE_SECONDS)
    supports = None
    handle, chosen = models.get_handle(), selected_adapter(adapter)
    for grounded, plain, prompt in answer.stream_answers(handle, question, hits, params, adapter=chosen):
        if grounded.done and supports is None:
            supports = attribution.supports(grounded.text, prompt.hits)
        rows = [grounded] if plain is None else [grounded, plain]
        finished = grounded.done and (plain is None or plain.done)
        if throttle.due(final=finished, rows=rows):
            notice = waiting_note(rows) or (
                f"⚠️ {prompt.notice}." if prompt.notice else f"All {len(prompt.hits)} passages fit in the prompt."
            )
            capsule = gr.skip()
            if finished:  # the answer's replay capsule, for Save capsule
                found = answer.Answered(list(hits), prompt, grounded)
                capsule = record.rag(
                    handle, name, question, search, found, adapter=chosen, with_baseline=plain is not None
                )
            yield (
                frame,
                _answer_md(grounded.text, prompt.hits, supports),
                plain.text if plain else "",
                notice,
                passages,
                capsule,
            )


def evaluate_questions(name: str | None, file: str | None, k: float, run_id: str | None = None):
    """recall@k and MRR per retrieval mode; Stop (run_id) ends it between questions."""
    if not name:
        raise UserError("Choose a collection.")
    if not file:
        raise UserError('Upload a JSONL file of {"question", "source"} rows.')
    rows, errors = evaluate.load_questions(file)
    if not rows:
        raise UserError(
            "No usable questions in the file" + (f": line {errors[0]['line']}: {errors[0]['error']}" if errors else ".")
        )
    report = evaluate.evaluate(name, rows, k=int(k), should_stop=lambda: STOPS.stopped(run_id))
    if report is None:
        return gr.skip(), gr.skip(), "⏹ Stopped: nothing was measured (a partial run would mix modes unevenly)."
    key = f"recall@{int(k)}"
    table = pd.DataFrame(
        [[m, round(report[m][key], 3), round(report[m]["mrr"], 3)] for m in retrieval.MODES],
        columns=["mode", key, "MRR"],
    )
    details = pd.DataFrame(report["details"])
    note = f"{report['n']} questions" + (
        f"; {len(errors)} rows skipped: " + "; ".join(f"line {e['line']}: {e['error']}" for e in errors[:5])
        if errors
        else ""
    )
    return table, details, note


def keep_answer(
    collection: str | None,
    question: str,
    mode: str,
    k: Any,
    hits: Any,
    grounded: str,
    plain: str,
    notice: str,
    passages: str,
    stored: Any,
) -> list:
    """The history with this question and its answers newest (the passages' table as rows)."""
    if not question or not isinstance(grounded, str) or not grounded:
        return history.entries(stored)
    table = hits if isinstance(hits, pd.DataFrame) else pd.DataFrame()
    data = {
        "collection": collection or "",
        "question": question,
        "mode": mode,
        "k": k,
        "hits": {
            "headers": [str(c) for c in table.columns],
            "data": table.astype(object).where(table.notna(), None).values.tolist(),
        },
        "grounded": grounded,
        "plain": plain or "",
        "notice": notice or "",
        "passages": passages or "",
    }
    return history.pushed(stored, f"{question} ({collection})", history.bounded(data, shed=("passages", "hits")))


def restore_answer(data: dict[str, Any]) -> list[Any]:
    table = history.part(data, "hits")
    headers, rows = table.get("headers") or [], table.get("data") or []
    return [
        history.text(data.get("question")),
        data.get("mode") if data.get("mode") in retrieval.MODES else gr.update(),
        data.get("k") if isinstance(data.get("k"), int) else gr.update(),
        pd.DataFrame(rows, columns=headers) if headers else pd.DataFrame(),
        history.text(data.get("grounded")),
        history.text(data.get("plain")),
        history.text(data.get("notice")),
        history.text(data.get("passages")),
    ]


def load_capsule_file(file: str | None) -> list[Any]:
    """A RAG capsule's collection, question, retrieval settings, sampling values and adapter: Ask then gives
    the same answer while the collection gives the same passages (the replay checks that they do)."""
    document = capsule_files.opened(file, "rag", "RAG")
    settings, notes = capsule_files.settings_of(document, "Ask")
    inputs = document["inputs"]
    name = inputs.get("collection")
    here = name in store.collection_names()
    if not here:
        notes.append(f"Its collection **{name}** is not here: ingest the same documents into it to ask again.")
    search = build_spec(retrieval.SearchSpec, dict(inputs.get("retrieval") or {}))
    return [
        gr.update(value=name) if here else gr.update(),
        history.text(inputs.get("question")),
        search.mode,
        search.k,
        *settings,
        "  \n".join(notes),
    ]


def build(demo: gr.Blocks, shared: Shared) -> dict[str, Any]:
    """Lay out the tab; returns what a lesson step may set here (the question)."""
    names = store.collection_names()  # what exists at start (opens "New collection" when there is nothing)
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("#### Collections and documents")
            collection = LiveDropdown(
                store.collection_names, fallback=FIRST, label="Collection", elem_id="rag-collection"
            )
            summary = gr.Markdown()
            with gr.Accordion("New collection", open=not names):
                new_name = gr.Textbox(label="Name", placeholder="e.g. handbook")
                with gr.Row():
                    chunk_size = control(chunking.ChunkSpec, "chunk_size")
                    overlap = control(chunking.ChunkSpec, "overlap")
                create_button = gr.Button("Create")
            # no file_types: gradio would refuse the whole batch for one bad file; each file is checked and reported instead
            files = gr.File(
                label="Upload PDF, DOCX, HTML, Markdown or text",
                file_count="multiple",
                type="filepath",
                elem_id="rag-files",
            )
            refuse_personal = gr.Checkbox(
                label="Refuse documents with personal data",
                info="this collection's policy: e-mail addresses, phone numbers, card numbers and people's names are "
                "found before indexing and always reported; ticked, such a document is not indexed",
                elem_id="rag-refuse-personal",
            )
            with gr.Row():
                ingest_button = gr.Button("Ingest", variant="primary", scale=2)
                injection_button = gr.Button("Add the prompt-injection demo", size="sm", scale=1)
            report = gr.Markdown()
            docs = gr.Dataframe(interactive=False, wrap=True, max_height=260, label="Documents")
            with gr.Row():
                doc_id = gr.Textbox(label="Document id to remove", scale=3)
                remove_button = gr.Button("Remove", scale=1)
            with gr.Row():
                reindex_button = gr.Button("Re-index", size="sm")
                delete_button = gr.Button("Delete collection", variant="stop", size="sm")
        with gr.Column(scale=2):
            gr.Markdown("#### Ask")
            question = gr.Textbox(label="Question", lines=2)
            with gr.Row():
                mode = control(retrieval.SearchSpec, "mode", scale=2)
                k = control(retrieval.SearchSpec, "k", scale=2)
                ask_button = gr.Button("Ask", variant="primary")
            notice = gr.Markdown()
            with gr.Row():
                with gr.Column():
                    gr.Markdown("**With retrieval** (grounded, cited)")
                    grounded = gr.Markdown(elem_classes=["answer-box"], elem_id="rag-grounded")
                with gr.Column():
                    gr.Markdown("**Without retrieval** (the model's memory)")
                    plain = gr.Textbox(show_label=False, lines=8, interactive=False)
            hits = gr.Dataframe(interactive=False, wrap=True, label="Retrieved passages", elem_id="rag-hits")
            with gr.Accordion("Passages in full (click a citation to jump here)", open=True):
                passages = gr.HTML()
            kept = history.build("rag")
            save_capsule, load_capsule, capsule_file, capsule_note = capsule_files.build("rag-capsule")
    with gr.Accordion("Evaluate retrieval on your questions", open=False):
        gr.Markdown(
            'Upload JSONL rows `{"question": ..., "source": "<file name>", "page": <optional>}`; recall@k and MRR per mode. '
            f"At most {evaluate.MAX_QUESTIONS:,} questions of {evaluate.MAX_QUESTION_CHARS:,} characters, "
            f"{evaluate.MAX_FILE_BYTES // 1_000_000} MB."
        )
        with gr.Row():
            questions = gr.File(label="Questions (JSONL)", file_types=[".jsonl", ".json"], type="filepath", scale=2)
            eval_k = control(retrieval.SearchSpec, "k", label="k", info=None, scale=1)
            eval_button = gr.Button("Evaluate", scale=1)
            eval_stop = gr.Button("Stop", elem_classes=["stop-quiet"], scale=0, min_width=90)
        eval_note = gr.Markdown()
        eval_table = gr.Dataframe(interactive=False)
        eval_details = gr.Dataframe(interactive=False, wrap=True, max_height=300)
    how_it_works("rag")

    doc_outputs = [report, docs, summary]
    gr.on(
        [collection.change, demo.load],
        lambda n: (documents_table(n), collection_summary(n), refuses_personal_data(n)),
        collection,
        [docs, summary, refuse_personal],
        api_visibility="private",
    )
    refuse_personal.input(
        set_personal_data_policy, [collection, refuse_personal], [report, refuse_personal], api_name="rag_policy"
    )
    create_button.click(create_collection, [new_name, chunk_size, overlap], collection, api_name="rag_create")
    delete_button.click(delete_collection, collection, collection, api_name="rag_delete")
    cleared_first([ingest_button.click], [report]).then(
        ingest_files, [collection, files], doc_outputs, api_name="rag_ingest"
    )
    cleared_first([injection_button.click], [report]).then(
        ingest_injection_demo, collection, [*doc_outputs, collection], api_name="rag_injection_demo"
    )
    remove_button.click(remove_document, [collection, doc_id], doc_outputs, api_name="rag_remove_document")
    reindex_button.click(reindex_collection, collection, report, api_name="rag_reindex")
    made = gr.State(None)  # the last finished answer's replay capsule
    asked = gr.on(
        [ask_button.click, question.submit],
        ask,
        [collection, question, mode, k, shared.adapter],
        [hits, grounded, plain, notice, passages, made],
        inputs_kwargs=shared.sampling.kwargs(),
        api_name="rag_ask",
        **MODEL_EVENTS,
    )
    answer_parts = [question, mode, k, hits, grounded, plain, notice, passages]
    history.remember(kept, asked, keep_answer, [collection, *answer_parts], only_success=True)
    history.reopen(demo, kept, restore_answer, answer_parts)
    save_capsule.click(
        lambda document: capsule_files.saved(document, "answer"), made, capsule_file, api_name="save_rag_capsule"
    )
    load_capsule.upload(
        load_capsule_file,
        load_capsule,
        [collection, question, mode, k, *shared.sampling.inputs, shared.adapter, capsule_note],
        api_name="load_rag_capsule",
    )
    eval_started, eval_id = stoppable([eval_button.click], eval_stop)
    eval_started.success(
        evaluate_questions,
        [collection, questions, eval_k, eval_id],
        [eval_table, eval_details, eval_note],
        api_name="rag_eval",
    )
    return {"rag_question": question}
