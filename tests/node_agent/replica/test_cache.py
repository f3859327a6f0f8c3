"""The node's model cache: content-addressed, sha256-verified, fetched once per machine
from a local path or a real HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from node_agent.replica import ChecksumError, FetchError, ModelCache

ROOT = Path(__file__).resolve().parents[3]
DATA = b"model bytes " * 100_000
DIGEST = hashlib.sha256(DATA).hexdigest()


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves DATA at /model (slowly, in chunks, so fetches overlap), 404 elsewhere."""

    gets: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).gets.append(self.path)
        if self.path != "/model":
            self.send_error(404, "no such model")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        chunks = [DATA[i : i + 100_000] for i in range(0, len(DATA), 100_000)]
        for chunk in chunks:
            self.wfile.write(chunk)
            threading.Event().wait(0.05)  # a slow link

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    _Files.gets = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_local_file_is_verified_and_kept_under_its_digest(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(DATA)
    cache = ModelCache(tmp_path / "cache")
    path = cache.get(str(source), DIGEST.upper())
    assert path == tmp_path / "cache" / "sha256" / DIGEST
    assert path.read_bytes() == DATA
    source.unlink()  # a hit does not go back to the source
    assert cache.get(f"file://{source}", DIGEST) == path


def test_a_mismatching_file_never_enters_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(DATA + b"tampered")
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ChecksumError, match=f"expected {DIGEST}, got") as caught:
        cache.get(str(source), DIGEST)
    assert caught.value.actual == hashlib.sha256(DATA + b"tampered").hexdigest()
    assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args  # it crosses Ray
    assert not cache.path(DIGEST).exists()
    assert list((tmp_path / "cache" / "incoming").iterdir()) == []


def test_fetch_failures_name_the_uri(tmp_path: Path, http_url: str) -> None:
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(FetchError, match="cannot read model file"):
        cache.get(str(tmp_path / "missing.onnx"), DIGEST)
    with pytest.raises(FetchError, match="HTTP 404"):
        cache.get(f"{http_url}/other", DIGEST)
    with pytest.raises(FetchError, match=r"no fetcher for 's3://bucket/m.onnx'"):
        cache.get("s3://bucket/m.onnx", DIGEST)
    with pytest.raises(ValueError, match="64 hex digits"):
        cache.get(str(tmp_path), "abc")


def test_processes_sharing_a_cache_fetch_a_model_once(tmp_path: Path, http_url: str) -> None:
    script = (
        "import sys; from pathlib import Path; from node_agent.replica import ModelCache; "
        "print(ModelCache(Path(sys.argv[1])).get(sys.argv[2], sys.argv[3]))"
    )
    argv = [sys.executable, "-c", script, str(tmp_path / "cache"), f"{http_url}/model", DIGEST]
    processes = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "cache" / "sha256" / DIGEST)}
    assert _Files.gets == ["/model"]
    assert (tmp_path / "cache" / "sha256" / DIGEST).read_bytes() == DATA
