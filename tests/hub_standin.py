"""A stand-in for the Hugging Face Hub's HTTP API, on loopback: just what `huggingface_hub` uses to
create a dataset repository, commit files to it and download them.

The Hub cannot be reached from the test machines; the playground's backup code runs unchanged
against this server through `huggingface_hub` itself (its preupload, commit and resolve requests),
so the client library's real requests are what get checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class Hub:
    """The repositories' files (newest commit) and every commit made, in memory."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: list[dict] = []
        self.fail_commits = 0  # answer this many commits with 503 (a Hub outage)
        self.refuse_downloads = False  # answer downloads 403 (a token without read access, a broken proxy)
        self.lock = threading.Lock()


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, document: object) -> None:
            self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json"})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self) -> None:  # noqa: N802
            path = unquote(self.path.split("?")[0])
            body = self._body()
            if path == "/api/repos/create":
                request = json.loads(body)
                repo = f"{request.get('organization') or 'me'}/{request['name']}"
                with hub.lock:
                    hub.repos.setdefault(repo, {})
                self._json(200, {"url": f"http://{self.headers['Host']}/datasets/{repo}", "name": repo})
                return
            parts = path.split("/")  # /api/datasets/<ns>/<name>/<preupload|commit>/<revision>
            if len(parts) >= 7 and parts[:3] == ["", "api", "datasets"]:
                repo, action = f"{parts[3]}/{parts[4]}", parts[5]
                if repo not in hub.repos:
                    self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
                    return
                if action == "preupload":
                    files = json.loads(body)["files"]
                    self._json(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                    return
                if action == "commit":
                    with hub.lock:
                        if hub.fail_commits:
                            hub.fail_commits -= 1
                            self._json(503, {"error": "the stand-in Hub is down"})
                            return
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    files = {
                        entry["value"]["path"]: base64.b64decode(entry["value"]["content"])
                        for entry in lines
                        if entry["key"] == "file"
                    }
                    header = next(entry["value"] for entry in lines if entry["key"] == "header")
                    with hub.lock:  # one commit: all its files at once
                        hub.repos[repo].update(files)
                        hub.commits.append({"repo": repo, "summary": header.get("summary"), "files": sorted(files)})
                        oid = hashlib.sha1(str(len(hub.commits)).encode()).hexdigest()
                    host = self.headers["Host"]
                    self._json(200, {"commitUrl": f"http://{host}/datasets/{repo}/commit/{oid}", "commitOid": oid})
                    return
            self._send(404, b"{}")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            parts = unquote(self.path.split("?")[0]).split("/")  # /datasets/<ns>/<name>/resolve/<rev>/<file…>
            if len(parts) < 7 or parts[1] != "datasets" or parts[4] != "resolve":
                self._send(404, b"{}")
                return
            repo, filename = f"{parts[2]}/{parts[3]}", "/".join(parts[6:])
            if hub.refuse_downloads:
                self._send(403, b'{"error": "forbidden"}')
                return
            with hub.lock:
                files = hub.repos.get(repo)
                content = None if files is None else files.get(filename)
                commit = hashlib.sha1(str(len(hub.commits)).encode()).hexdigest()
            if files is None:
                self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
                return
            if content is None:
                self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"})
                return
            self._send(
                200,
                content,
                {"ETag": f'"{hashlib.sha256(content).hexdigest()}"', "X-Repo-Commit": commit},
            )

    return Handler


@contextmanager
def running() -> Iterator[tuple[str, Hub]]:
    """A stand-in Hub on a free loopback port: (its endpoint URL, its state)."""
    hub = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hub
    finally:
        server.shutdown()
        server.server_close()
