"""Uploads over HTTP with hostile file names and sizes: nothing escapes the data directory, limits hold server-side."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from pipelines.rag import store

pytestmark = pytest.mark.api

HOSTILE = ["../../escape.md", "/etc/passwd.md", "nul\x00byte.md", "a" * 400 + ".md", "..\\..\\win.md", ".hidden.md"]


def _upload(base: str, name: str, content: bytes) -> httpx.Response:
    return httpx.post(f"{base}/gradio_api/upload", files=[("files", (name, content, "text/markdown"))], timeout=30)


def _call(base: str, api: str, data: list) -> str:
    """Gradio's two-step call API; returns the raw event stream text."""
    event = httpx.post(
        f"{base}/gradio_api/call/{api}", json={"data": data, "session_hash": "hostile-uploads"}, timeout=30
    ).json()["event_id"]
    return httpx.get(f"{base}/gradio_api/call/{api}/{event}", timeout=300).text


def test_hostile_names_stay_inside_the_collection(app_url, data_dir, tmp_path):
    base = app_url.rstrip("/")
    assert "event: complete" in _call(base, "rag_create", ["uploads", 200, 40])
    before = set(Path("/").glob("*"))
    paths = []
    for index, name in enumerate(HOSTILE):
        response = _upload(base, name, f"Document {index} mentions the keeper Ada.".encode())
        assert response.status_code == 200, response.text
        paths.append(response.json()[0])
    for path in paths:  # Gradio keeps uploads in its own cache under a sanitised name
        assert ".." not in Path(path).parts and "\x00" not in path and os.path.isfile(path)
    files = [{"path": p, "meta": {"_type": "gradio.FileData"}} for p in paths]
    stream = _call(base, "rag_ingest", ["uploads", files])
    assert "event: complete" in stream, stream[-500:]
    store._cache.clear()
    names = [d.name for d in store.load("uploads").documents]
    assert len(names) == len(HOSTILE) and all(
        "/" not in n and "\\" not in n and "\x00" not in n and len(n) <= 100 for n in names
    )
    collection = store.collection_dir("uploads").resolve()
    for written in collection.rglob("*"):
        assert written.resolve().is_relative_to(collection)
    assert not (data_dir.parent / "escape.md").exists() and not Path("/escape.md").exists()
    assert set(Path("/").glob("*")) == before


def test_oversized_upload_is_refused_by_the_server(use_tiny, monkeypatch):
    import app as app_module
    from pipelines import config
    from tests.helpers import free_port

    monkeypatch.setenv("PLAYGROUND_MAX_UPLOAD_MB", "1")
    config.reset_settings()
    demo = app_module.build_app(use_tiny.name)
    demo.queue()
    kwargs = app_module.launch_kwargs()
    kwargs.update(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(**kwargs)
    try:
        response = _upload(url.rstrip("/"), "big.md", b"x" * 1_500_000)
        assert response.status_code == 413 or "size" in response.text.lower()
        assert _upload(url.rstrip("/"), "small.md", b"fine").status_code == 200
    finally:
        demo.close()
