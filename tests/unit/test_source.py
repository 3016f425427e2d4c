"""The MNIST download path against a local HTTP server: good, bad checksum, truncated, 404, timeout."""

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from resources.mnist_source import CANONICAL_MD5, CANONICAL_URL, MNIST_FILES, MnistSource, SourceError


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.truncate_first = 0  # how many requests of a file are cut short before a good one
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                mode, _, name = self.path.strip("/").partition("/")
                if mode == "slow":
                    time.sleep(1.5)
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if mode == "bad":
                    data = data[:-1] + bytes([data[-1] ^ 1])
                if mode == "broken" or (mode == "flaky" and server.truncate_first > 0):
                    server.truncate_first -= 1
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(synthetic_source: Path) -> Iterator[Server]:
    srv = Server(synthetic_source)
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()


def source(url: str, **kw: object) -> MnistSource:
    return MnistSource(location=url, attempts=2, backoff_seconds=0.01, **kw)  # type: ignore[arg-type]


def test_good_files_verified_with_own_md5sums(server: Server) -> None:
    src = source(f"{server.url}/ok/")
    sums = src.expected_checksums()
    assert set(sums) == set(MNIST_FILES)
    fetched = src.fetch(MNIST_FILES[0], sums[MNIST_FILES[0]])
    assert fetched.md5 == sums[MNIST_FILES[0]] and fetched.origin.endswith(MNIST_FILES[0])


def test_bad_checksum_names_file_and_both_md5s(server: Server) -> None:
    sums = source(f"{server.url}/ok/").expected_checksums()
    with pytest.raises(
        SourceError,
        match=rf"bad/{MNIST_FILES[1]}: checksum mismatch: expected md5 {sums[MNIST_FILES[1]]}, found [0-9a-f]{{32}}",
    ):
        source(f"{server.url}/bad/").fetch(MNIST_FILES[1], sums[MNIST_FILES[1]])


def test_truncated_download_is_retried_then_reported(server: Server) -> None:
    sums = source(f"{server.url}/ok/").expected_checksums()
    with pytest.raises(SourceError, match=r"failed after 2 attempts"):
        source(f"{server.url}/broken/").fetch(MNIST_FILES[0], sums[MNIST_FILES[0]])
    assert server.requests.count(f"/broken/{MNIST_FILES[0]}") == 2


def test_transient_truncation_recovers(server: Server) -> None:
    sums = source(f"{server.url}/ok/").expected_checksums()
    server.truncate_first = 1
    fetched = source(f"{server.url}/flaky/").fetch(MNIST_FILES[0], sums[MNIST_FILES[0]])
    assert fetched.md5 == sums[MNIST_FILES[0]]


def test_404_fails_at_once(server: Server) -> None:
    with pytest.raises(SourceError, match=r"/ok/nope.gz: not found \(HTTP 404\)"):
        source(f"{server.url}/ok/").fetch("nope.gz", "0" * 32)
    assert server.requests.count("/ok/nope.gz") == 1


def test_timeout(server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"failed after 2 attempts \((ReadTimeout|ConnectionError|Timeout)"):
        source(f"{server.url}/slow/", timeout_seconds=0.3).fetch(MNIST_FILES[3], "0" * 32)
    assert time.monotonic() - started < 5


def test_source_without_md5sums_is_refused(tmp_path: Path, synthetic_source: Path) -> None:
    for name in MNIST_FILES:
        (tmp_path / name).write_bytes((synthetic_source / name).read_bytes())
    with pytest.raises(SourceError, match=r"cannot verify source .*no md5sums file.*MNIST_SOURCE_CHECKSUMS"):
        source(str(tmp_path)).expected_checksums()


def test_explicit_checksums_override(tmp_path: Path) -> None:
    src = source(str(tmp_path), checksums=",".join(f"{n}={'a' * 32}" for n in MNIST_FILES))
    assert src.expected_checksums() == dict.fromkeys(MNIST_FILES, "a" * 32)
    with pytest.raises(SourceError, match=r"expected 'file=<32 hex md5>', found 'x=1'"):
        source(str(tmp_path), checksums="x=1").expected_checksums()


def test_md5sums_missing_an_entry(tmp_path: Path) -> None:
    (tmp_path / "md5sums").write_text(f"{'b' * 32}  {MNIST_FILES[0]}\n")
    with pytest.raises(SourceError, match=r"no checksum for train-labels"):
        source(str(tmp_path)).expected_checksums()


def test_local_directory_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"file not found"):
        source(str(tmp_path)).fetch(MNIST_FILES[0], "0" * 32)


def test_canonical_source_uses_published_md5s_without_network() -> None:
    assert MnistSource().location == CANONICAL_URL
    assert MnistSource().expected_checksums() == CANONICAL_MD5
