"""Downloads against a real HTTP server on 127.0.0.1: verified, atomic, never overwriting."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from functools import partial
from pathlib import Path

import pytest

from archlab.data import download as dl
from archlab.data.paths import DatasetSpec, RemoteFile, data_roots, download_root
from archlab.errors import ArchlabError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class _ShortRead(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes, sends 10, hangs up: a dropped connection mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")

    def log_message(self, *args):
        pass


def _serve(handler):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture
def server(tmp_path):
    """(served folder, base URL) of a static file server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    srv, url = _serve(partial(_Quiet, directory=str(root)))
    yield root, url
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no env leaking in: HOME is a temp dir."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("ARCHLAB_DATA", "ARCHLAB_MIRROR", "ARCHLAB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    return f"http://127.0.0.1:{port}"


def _spec(remote: RemoteFile, files: tuple[str, ...] | None = None) -> DatasetSpec:
    return DatasetSpec("toy", "toy", files or (remote.filename,), (remote,))


def _publish_file(root: Path, name: str, data: bytes) -> None:
    (root / "toy").mkdir(exist_ok=True)
    (root / "toy" / name).write_bytes(data)


def test_roots_order_and_download_root(tmp_path, monkeypatch):
    home = Path.home()
    assert data_roots() == [home / ".cache" / "archlab"]
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path / "d"))
    assert data_roots() == [tmp_path / "d", home / ".cache" / "archlab"]
    assert download_root() == home / ".cache" / "archlab"  # not a directory yet
    (tmp_path / "d").mkdir()
    assert download_root() == tmp_path / "d"
    (tmp_path / "d").chmod(0o555)  # marked read-only: never written, even by root
    try:
        assert download_root() == home / ".cache" / "archlab"
    finally:
        (tmp_path / "d").chmod(0o755)


def test_good_file_verified_and_cached(server, tmp_path):
    root, url = server
    data = b"hello archlab\n" * 1000
    _publish_file(root, "a.txt", data)
    r = RemoteFile("a.txt", ("unused",), sha256=hashlib.sha256(data).hexdigest())
    dest = tmp_path / "cache"
    dl.download_file(_spec(r), r, dest, mirror=url, progress=False)
    assert (dest / "a.txt").read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]  # no temp file left


def test_wrong_checksum_leaves_no_file(server, tmp_path):
    root, url = server
    _publish_file(root, "a.txt", b"tampered")
    r = RemoteFile("a.txt", ("unused",), sha256="0" * 64)
    dest = tmp_path / "cache"
    with pytest.raises(ArchlabError) as e:
        dl.download_file(_spec(r), r, dest, mirror=url, progress=False)
    assert "sha256" in str(e.value) and "\n" not in str(e.value)
    assert list(dest.iterdir()) == []


def test_md5_checked(server, tmp_path):
    root, url = server
    _publish_file(root, "a.bin", b"x")
    r = RemoteFile("a.bin", ("unused",), md5=hashlib.md5(b"y").hexdigest())
    with pytest.raises(ArchlabError, match="md5"):
        dl.download_file(_spec(r), r, tmp_path / "c", mirror=url, progress=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_server_down_one_line_error_says_where(tmp_path):
    r = RemoteFile("a.txt", (_dead_url() + "/a.txt",), sha256="0" * 64)
    with pytest.raises(ArchlabError) as e:
        dl.download_file(_spec(r), r, tmp_path / "c", progress=False, timeout=5)
    msg = str(e.value)
    assert "\n" not in msg and "download failed" in msg
    assert f"put a.txt in {Path.home() / '.cache' / 'archlab' / 'toy'}/" in msg
    assert list((tmp_path / "c").iterdir()) == []


def test_missing_on_server_and_dropped_connection(server, tmp_path):
    _, url = server
    r = RemoteFile("absent.txt", ("unused",), sha256="0" * 64)
    with pytest.raises(ArchlabError, match="HTTP 404"):
        dl.download_file(_spec(r), r, tmp_path / "c", mirror=url, progress=False)
    srv, short = _serve(_ShortRead)
    try:
        with pytest.raises(ArchlabError):
            dl.download_file(_spec(r), r, tmp_path / "c", mirror=short, progress=False)
    finally:
        srv.shutdown()
        srv.server_close()
    assert list((tmp_path / "c").iterdir()) == []


def test_gzip_verified_on_decompressed_content(server, tmp_path):
    root, url = server
    content = bytes(range(256)) * 100
    gz = gzip.compress(content, mtime=0)
    _publish_file(root, "x.gz", gz)
    r = RemoteFile("x.gz", ("unused",), content_sha256=hashlib.sha256(content).hexdigest())
    dl.download_file(_spec(r), r, tmp_path / "ok", mirror=url, progress=False)
    assert gzip.decompress((tmp_path / "ok" / "x.gz").read_bytes()) == content
    _publish_file(root, "x.gz", gz[: len(gz) // 2])  # truncated in transit
    with pytest.raises(ArchlabError, match="gzip"):
        dl.download_file(_spec(r), r, tmp_path / "bad", mirror=url, progress=False)
    assert list((tmp_path / "bad").iterdir()) == []


def test_archive_extracts_only_listed_members(server, tmp_path):
    root, url = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("d/keep.bin", b"k"), ("../evil.txt", b"e"), ("d/other", b"o")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    _publish_file(root, "a.tar.gz", blob)
    r = RemoteFile(
        "a.tar.gz", ("unused",), md5=hashlib.md5(blob).hexdigest(), extract=("d/keep.bin",)
    )
    dest = tmp_path / "c"
    dl.download_file(_spec(r, ("d/keep.bin",)), r, dest, mirror=url, progress=False)
    assert (dest / "d" / "keep.bin").read_bytes() == b"k"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "c/d/keep.bin",
        "www/toy/a.tar.gz",
    ]  # no archive, no temp file, nothing outside the folder


def test_existing_file_is_never_overwritten(server, tmp_path):
    root, url = server
    _publish_file(root, "a.txt", b"new")
    dest = tmp_path / "c"
    dest.mkdir()
    (dest / "a.txt").write_bytes(b"user's own")
    r = RemoteFile("a.txt", ("unused",), sha256=hashlib.sha256(b"new").hexdigest())
    dl.download_file(_spec(r), r, dest, mirror=url, progress=False)
    assert (dest / "a.txt").read_bytes() == b"user's own"
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]


def test_ensure_dataset_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("ARCHLAB_OFFLINE", "1")
    monkeypatch.setenv("ARCHLAB_MIRROR", _dead_url())
    with pytest.raises(ArchlabError) as e:
        dl.ensure_dataset("tinyshakespeare")
    msg = str(e.value)
    assert "\n" not in msg and "downloads are off" in msg
    assert "input.txt" in msg and "karpathy/char-rnn" in msg
    with pytest.raises(ArchlabError, match="unknown dataset"):
        dl.ensure_dataset("imagenet")


def test_ensure_tinyshakespeare_from_mirror(server, shared_data, monkeypatch):
    """The real file served locally: checked against SOURCES.md's sha256, cached, then reused."""
    root, url = server
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "input.txt").write_bytes(
        (shared_data / "tinyshakespeare" / "input.txt").read_bytes()
    )
    monkeypatch.setenv("ARCHLAB_MIRROR", url)
    folder = dl.ensure_dataset("tinyshakespeare", progress=False)
    assert folder == Path.home() / ".cache" / "archlab" / "tinyshakespeare"
    assert (folder / "input.txt").stat().st_size == 1_115_394
    # Cached: found again with the server gone and downloads off.
    monkeypatch.setenv("ARCHLAB_MIRROR", _dead_url())
    monkeypatch.setenv("ARCHLAB_OFFLINE", "1")
    assert dl.ensure_dataset("tinyshakespeare") == folder
    from archlab.data import describe_sources

    assert describe_sources()["tinyshakespeare"]["files"] == [str(folder / "input.txt")]
