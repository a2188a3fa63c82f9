"""Parsers for the two image file formats archlab reads; nothing is ever unpickled.

* IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/ "FILE FORMATS"): a big-endian header —
  two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then one uint32
  size per dimension — followed by the data in C order. Images are magic 2051 (0x00000803: ubyte,
  3 dims N×H×W), labels 2049 (0x00000801: ubyte, 1 dim N). Files may be gzipped (``.gz``) or
  xz-compressed (``.xz``, the data that ships inside the package).
* CIFAR-10 binary (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"): records of
  3073 bytes — 1 label byte, then 1024 red, 1024 green, 1024 blue bytes, each plane row-major
  32×32. ``batches.meta.txt`` lists the class names one per line.

Every structural problem (bad magic, size mismatch, truncated gzip, label out of range) raises
:class:`ArchlabError` with one line naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import zlib
from pathlib import Path

import numpy as np

from archlab.errors import ArchlabError

__all__ = [
    "CIFAR_RECORD_BYTES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "read_cifar_batch",
    "load_image_file",
    "read_cifar_meta",
    "read_compressed",
    "read_idx",
]

IDX_IMAGES_MAGIC = 2051  # 0x00000803
IDX_LABELS_MAGIC = 2049  # 0x00000801
CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32  # label byte + 3 planes of 32×32 bytes
MAX_IMAGE_PIXELS = 1 << 26  # an image to classify (Pillow's own bomb limit is ~179M pixels)


def read_compressed(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped or unxz-ed when they are gzip or xz data."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ArchlabError(f"cannot read {path}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ArchlabError(f"{path}: corrupt or truncated gzip ({e})") from None
    if raw[:6] == b"\xfd7zXZ\x00":  # xz magic
        try:
            return lzma.decompress(raw)
        except lzma.LZMAError as e:
            raise ArchlabError(f"{path}: corrupt or truncated xz ({e})") from None
    if path.suffix in (".gz", ".xz"):
        raise ArchlabError(f"{path}: named {path.suffix} but not {path.suffix[1:]} data")
    return raw


def read_idx(path: Path, magic: int, expect_sha256: str | None = None) -> np.ndarray:
    """Read an IDX file with the given magic (2051 images → (N, H, W), 2049 labels → (N,)) as uint8.

    ``expect_sha256`` is checked against the decompressed bytes.
    """
    data = read_compressed(path)
    if len(data) < 4:
        raise ArchlabError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise ArchlabError(
            f"{path}: IDX magic {got} (0x{got:08x}), expected {magic} (0x{magic:08x})"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ArchlabError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    n = int(np.prod(dims))
    if len(data) - header != n:
        raise ArchlabError(
            f"{path}: IDX header says {'×'.join(map(str, dims))} = {n} bytes of data, "
            f"file has {len(data) - header}"
        )
    if expect_sha256 is not None:
        sha = hashlib.sha256(data).hexdigest()
        if sha != expect_sha256:
            raise ArchlabError(
                f"{path}: decompressed sha256 {sha[:12]}…, expected {expect_sha256[:12]}…; "
                "delete it to re-download"
            )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_cifar_batch(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR binary batch → images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    data = read_compressed(path)
    if not data or len(data) % CIFAR_RECORD_BYTES:
        raise ArchlabError(
            f"{path}: {len(data)} bytes is not a whole number of {CIFAR_RECORD_BYTES}-byte "
            "CIFAR-10 records"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES)  # (N, 3073)
    labels = rec[:, 0].astype(np.int64)  # (N,)
    if labels.max() >= num_classes:
        raise ArchlabError(f"{path}: label {labels.max()} out of range 0..{num_classes - 1}")
    images = rec[:, 1:].reshape(-1, 3, 32, 32)  # (N, C, H, W): planes R, G, B, rows of 32
    return images, labels


def read_cifar_meta(path: Path) -> list[str]:
    """Class names from ``batches.meta.txt`` (one per line, blank lines ignored)."""
    try:
        names = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ArchlabError(f"cannot read {path}: {e}") from None
    return names


def load_image_file(path: Path, channels: int, image_size: int) -> np.ndarray:
    """A PNG/JPEG/… file as uint8 (channels, image_size, image_size), for classifying one image.

    Converted with Pillow to grayscale ("L", ITU-R 601 luma) for 1 channel or RGB for 3, then
    resized (bicubic) to a square of ``image_size`` pixels. No inversion or centering is done: the
    training sets have light objects on black (MNIST) or dark backgrounds (Fashion-MNIST), so a
    photo of dark ink on white paper must be inverted by the caller if wanted.

    Memory is bounded by :data:`MAX_IMAGE_PIXELS` (64 Mi pixels, a 48-megapixel photo fits):
    the size in a file's header is checked before any pixel is decoded, so a small file that
    claims 30,000 x 30,000 pixels is one line, not gigabytes.
    """
    from PIL import Image, UnidentifiedImageError  # optional heavy import

    if channels not in (1, 3):
        raise ValueError(f"channels: must be 1 or 3, got {channels}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise ArchlabError(
                    f"image {path} is {im.width}x{im.height} pixels, more than "
                    f"{MAX_IMAGE_PIXELS:,}; resize it first"
                )
            im = im.convert("L" if channels == 1 else "RGB")
            im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
            a = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ArchlabError(f"no image file {path}") from None
    except Image.DecompressionBombError as e:
        raise ArchlabError(f"image {path} is too large: {e}".split("\n")[0]) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ArchlabError(f"cannot read image {path}: {e}".split("\n")[0]) from None
    return a[None] if channels == 1 else a.transpose(2, 0, 1).copy()  # (C, H, W)
