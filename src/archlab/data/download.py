"""Checksum-verified, atomic downloads of the named datasets.

``ensure_dataset(name)`` returns the folder holding the dataset's files, downloading what is
missing into ``download_root()/<folder>/`` (see :mod:`archlab.data.paths`). Every download:

* streams into a hidden temporary file *in the destination folder* (``.NAME.XXXX.part``) while
  hashing, shows a tqdm progress bar on a terminal, verifies the published checksum, and only then
  links the file into place; the temporary file is removed on any failure, so no partial or
  unverified file is ever left under the final name;
* never overwrites an existing file (``os.link`` fails if the name exists);
* tries each canonical URL in turn. ``ARCHLAB_MIRROR=URL`` (or ``mirror=``) replaces them with
  ``URL/<folder>/<filename>`` (for an internal mirror, and for tests on 127.0.0.1);
* with ``ARCHLAB_OFFLINE=1``, or when every URL fails, raises :class:`ArchlabError` with one line
  saying which files to put where.

``.tar.gz`` archives (CIFAR-10) are verified, then only the listed members are extracted (regular
files, by exact name — no path from the archive is trusted) and the archive is deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from archlab.data.paths import (
    DatasetSpec,
    RemoteFile,
    candidate_dirs,
    download_root,
    find_file,
    get_spec,
    locate,
)
from archlab.errors import ArchlabError

__all__ = ["download_file", "ensure_dataset", "missing_message", "offline"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20  # bytes per read


def offline() -> bool:
    """True when ``ARCHLAB_OFFLINE`` is set to something other than ``""``/``0``."""
    return os.environ.get("ARCHLAB_OFFLINE", "") not in ("", "0")


def _urls(spec: DatasetSpec, remote: RemoteFile, mirror: str | None) -> tuple[str, ...]:
    mirror = mirror or os.environ.get("ARCHLAB_MIRROR") or None
    if mirror:
        return (f"{mirror.rstrip('/')}/{spec.folder}/{remote.filename}",)
    return remote.urls


def missing_message(spec: DatasetSpec, reason: str = "not found") -> str:
    """One line: what is missing, where to put it, where it comes from, where we looked."""
    target = download_root() / spec.folder
    urls = " ".join(r.urls[0] for r in spec.remotes)
    bases = {r.urls[0].rsplit("/", 1)[0] for r in spec.remotes}
    if len(spec.remotes) > 1 and len(bases) == 1:
        urls = bases.pop() + "/"
    names = ", ".join(spec.files)
    looked = ", ".join(str(d) for d in candidate_dirs(spec))
    if any(r.extract for r in spec.remotes):
        where = f"download {urls} and extract it so that {target}/ holds {names}"
    else:
        where = f"put {names} in {target}/ (from {urls})"
    return (
        f"{spec.name}: {reason}; {where}, or set ARCHLAB_DATA=DIR with the files in "
        f"DIR/{spec.folder}/; searched: {looked}"
    )


@contextmanager
def _tempfile_in(folder: Path, name: str) -> Iterator[Path]:
    """A hidden temp file next to the destination; removed unless the caller renamed it away."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).name}.", suffix=".part", dir=folder)
    os.close(fd)
    path = Path(tmp)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _publish(tmp: Path, dest: Path) -> None:
    """Give ``tmp`` the name ``dest`` atomically, never replacing an existing ``dest``."""
    try:
        os.link(tmp, dest)  # fails with FileExistsError instead of overwriting
    except FileExistsError:
        log.info("%s appeared meanwhile; keeping the existing file", dest)
    except OSError:  # filesystems without hard links
        if not dest.exists():
            os.replace(tmp, dest)


def _fetch(url: str, tmp: Path, label: str, progress: bool, timeout: float) -> tuple[str, str]:
    """Stream ``url`` into ``tmp``; returns (sha256, md5) of the bytes."""
    from tqdm.auto import tqdm

    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
        total = resp.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=label,
            disable=None if progress else True,  # None: only on a terminal
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                bar.update(len(chunk))
        if total is not None and f.tell() != int(total):
            raise OSError(f"connection closed after {f.tell()} of {total} bytes")
    return sha.hexdigest(), md5.hexdigest()


def _gunzip_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as g:
            while chunk := g.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"not a complete gzip file ({e})") from None
    return h.hexdigest()


def _verify(remote: RemoteFile, tmp: Path, sha: str, md5: str) -> None:
    """Raise ValueError (message = why) unless ``tmp`` matches every checksum ``remote`` lists."""
    if remote.sha256 and sha != remote.sha256:
        raise ValueError(f"sha256 {sha[:12]}… != expected {remote.sha256[:12]}…")
    if remote.md5 and md5 != remote.md5:
        raise ValueError(f"md5 {md5[:12]}… != expected {remote.md5[:12]}…")
    if remote.content_sha256:
        got = _gunzip_sha256(tmp)
        if got != remote.content_sha256:
            raise ValueError(
                f"decompressed sha256 {got[:12]}… != expected {remote.content_sha256[:12]}…"
            )


def _extract(archive: Path, members: tuple[str, ...], folder: Path) -> None:
    """Extract exactly ``members`` (regular files) from a .tar.gz into ``folder``, each one
    atomically."""
    wanted = set(members)
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            if m.name not in wanted or not m.isfile():
                continue
            dest = folder / m.name
            if dest.exists():
                wanted.discard(m.name)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None  # regular file
            with _tempfile_in(dest.parent, dest.name) as tmp:
                with open(tmp, "wb") as f:
                    while chunk := src.read(_CHUNK):
                        f.write(chunk)
                _publish(tmp, dest)
            wanted.discard(m.name)
    if wanted:
        raise ValueError(f"archive lacks {', '.join(sorted(wanted))}")


def download_file(
    spec: DatasetSpec,
    remote: RemoteFile,
    folder: Path,
    *,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> None:
    """Download ``remote`` into ``folder`` (verified, atomic); ArchlabError if no URL works."""
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in _urls(spec, remote, mirror):
        log.info("downloading %s from %s", remote.filename, url)
        with _tempfile_in(folder, remote.filename) as tmp:
            try:
                sha, md5 = _fetch(url, tmp, remote.filename, progress, timeout)
                _verify(remote, tmp, sha, md5)
                if remote.extract:
                    _extract(tmp, remote.extract, folder)
                else:
                    _publish(tmp, folder / remote.filename)
                return
            except urllib.error.HTTPError as e:
                errors.append(f"{url}: HTTP {e.code} {e.reason}")
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                OSError,
                ValueError,
                tarfile.TarError,
            ) as e:
                reason = getattr(e, "reason", None) or e
                errors.append(f"{url}: {reason}".replace("\n", " "))
    raise ArchlabError(missing_message(spec, f"download failed ({'; '.join(errors)})"))


def ensure_dataset(
    name: str,
    *,
    download: bool = True,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """The folder holding every file of dataset ``name``, downloading missing files if allowed.

    Raises :class:`ArchlabError` (one line: which files, where to put them) when the data is absent
    and ``download`` is False, ``ARCHLAB_OFFLINE`` is set, or every URL fails.
    """
    spec = get_spec(name)
    found = locate(spec)
    if found is not None:
        return found
    if not download or offline():
        raise ArchlabError(missing_message(spec, "not found and downloads are off"))
    folder = download_root() / spec.folder
    for remote in spec.remotes:
        have = (
            all(find_file(folder, m) for m in remote.extract)
            if remote.extract
            else find_file(folder, remote.filename, spec.gz_optional)
        )
        if not have:
            download_file(spec, remote, folder, mirror=mirror, progress=progress, timeout=timeout)
    found = locate(spec)
    if found is None:  # e.g. the root cannot be written
        raise ArchlabError(missing_message(spec, f"files still missing after download to {folder}"))
    return found
