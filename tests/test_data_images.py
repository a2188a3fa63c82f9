"""Image data: parsers on generated files in the real formats, splits, normalization,
augmentation."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.data import (
    FASHION_MNIST_CLASSES,
    Normalization,
    augment_batch,
    describe_sources,
    load_image_dataset,
)
from archlab.data.image_formats import load_image_file, read_cifar_batch, read_idx
from archlab.data.images import stratified_order
from archlab.errors import ArchlabError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FMNIST_SHA = {  # decompressed, from shared/data/SOURCES.md
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ARCHLAB_OFFLINE", "1")
    monkeypatch.delenv("ARCHLAB_DATA", raising=False)


def idx_bytes(a: np.ndarray, magic: int) -> bytes:
    """IDX as LeCun specifies: magic (big-endian), one big-endian uint32 per dimension, data."""
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.astype(np.uint8).tobytes()


def write_mnist(root: Path, name: str, n_train: int, n_test: int, gz: bool = True) -> np.ndarray:
    """A small IDX dataset; image i's first two pixels encode i (to identify images later)."""
    rng = np.random.default_rng(0)
    folder = root / name
    folder.mkdir(parents=True)
    labels = rng.integers(0, 10, n_train + n_test)
    labels[:20] = np.arange(20) % 10  # every class present
    images = rng.integers(0, 256, (n_train + n_test, 28, 28)).astype(np.uint8)
    images[:, 0, 0], images[:, 0, 1] = (
        np.arange(n_train + n_test) // 256,
        np.arange(len(labels)) % 256,
    )
    for split, sl in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
        for kind, arr, magic in (
            ("images-idx3", images[sl], 2051),
            ("labels-idx1", labels[sl], 2049),
        ):
            data = idx_bytes(arr, magic)
            path = folder / f"{split}-{kind}-ubyte"
            if gz:
                Path(str(path) + ".gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                path.write_bytes(data)
    return labels


def image_ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist()


# --- parsers ------------------------------------------------------------------------------


def test_idx_roundtrip_gz_and_raw(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "i").write_bytes(idx_bytes(a, 2051))
    (tmp_path / "i.gz").write_bytes(gzip.compress(idx_bytes(a, 2051)))
    for p in (tmp_path / "i", tmp_path / "i.gz"):
        assert np.array_equal(read_idx(p, 2051), a)
    sha = hashlib.sha256(idx_bytes(a, 2051)).hexdigest()
    assert read_idx(tmp_path / "i.gz", 2051, sha).shape == (2, 3, 4)
    with pytest.raises(ArchlabError, match="sha256"):
        read_idx(tmp_path / "i.gz", 2051, "0" * 64)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b[:3] + b"\x01" + b[4:], "magic"),  # 2049 where 2051 is expected
        (lambda b: b[:-1], "file has"),  # one byte short of the header's size
        (lambda b: b + b"\x00", "file has"),
        (lambda b: b[:10], "truncated IDX header|file has"),
        (lambda b: gzip.compress(b)[:-20], "gzip"),  # truncated gzip stream
        (lambda b: b"", "too short"),
    ],
)
def test_idx_corrupt_is_one_line(tmp_path, mutate, match):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8), 2051)
    p = tmp_path / "x-ubyte"
    p.write_bytes(mutate(good))
    with pytest.raises(ArchlabError, match=match) as e:
        read_idx(p, 2051)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def cifar_records(labels: list[int]) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (len(labels), 3, 32, 32)).astype(np.uint8)
    recs = b"".join(bytes([lab]) + img[i].tobytes() for i, lab in enumerate(labels))
    return recs, img


def test_cifar_records_layout(tmp_path):
    recs, img = cifar_records([3, 9, 0])
    (tmp_path / "b.bin").write_bytes(recs)
    x, y = read_cifar_batch(tmp_path / "b.bin")
    assert y.tolist() == [3, 9, 0] and x.shape == (3, 3, 32, 32)
    # byte 1 + c*1024 + h*32 + w of record i is pixel (c, h, w): planes R, G, B, row-major
    raw = np.frombuffer(recs, np.uint8)
    assert x[1, 2, 5, 7] == raw[3073 + 1 + 2 * 1024 + 5 * 32 + 7]
    assert np.array_equal(x, img)
    (tmp_path / "short.bin").write_bytes(recs[:-1])
    with pytest.raises(ArchlabError, match="3073-byte"):
        read_cifar_batch(tmp_path / "short.bin")
    (tmp_path / "lab.bin").write_bytes(cifar_records([10])[0])
    with pytest.raises(ArchlabError, match="label 10"):
        read_cifar_batch(tmp_path / "lab.bin")


def test_cifar10_dataset_from_generated_binary(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(
            cifar_records([(i + k) % 10 for k in range(10)])[0]
        )
    (folder / "test_batch.bin").write_bytes(cifar_records(list(range(10)))[0])
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    ds = load_image_dataset("cifar10", val_size=5)
    assert (ds.channels, ds.image_size, ds.num_classes) == (3, 32, 10)
    assert ds.class_names == tuple(names) and ds.flip_ok
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (45, 5, 10)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64


def test_missing_dataset_message(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    with pytest.raises(ArchlabError) as e:
        load_image_dataset("mnist")
    msg = str(e.value)
    assert "\n" not in msg and f"in {tmp_path / 'mnist'}/" in msg
    assert "ossci-datasets.s3.amazonaws.com/mnist/" in msg
    with pytest.raises(ArchlabError, match="unknown image dataset"):
        load_image_dataset("imagenet")


# --- splits, normalization, augmentation on generated MNIST-format data ---------------------


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    write_mnist(tmp_path, "mnist", 500, 50, gz=False)  # uncompressed files are accepted too
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    return tmp_path


def test_val_split_deterministic_and_disjoint(mnist_root):
    a = load_image_dataset("mnist", val_size=0.2)
    b = load_image_dataset("mnist", val_size=100)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    tr, va = image_ids(a.train_x), image_ids(a.val_x)
    assert len(va) == 100 and sorted(tr + va) == list(range(500))  # a partition of train
    assert image_ids(a.test_x) == list(range(500, 550))  # test untouched, in file order
    assert a.class_names == tuple("0123456789") and not a.flip_ok
    assert load_image_dataset("mnist", val_size=0).val_x.shape[0] == 0
    for bad in (500, -1, 1.0):
        with pytest.raises(ArchlabError, match="val size"):
            load_image_dataset("mnist", val_size=bad)


def test_train_size_stratified_and_nested(mnist_root):
    full = load_image_dataset("mnist", val_size=100)
    counts = torch.bincount(full.train_y, minlength=10).double()
    prev: set[int] = set()
    for n in (10, 50, 137, 400):
        ds = load_image_dataset("mnist", val_size=100, train_size=n)
        got = torch.bincount(ds.train_y, minlength=10).double()
        assert len(ds.train_y) == n
        assert (got - counts * n / counts.sum()).abs().max() <= 1.0  # each class keeps its share
        ids = set(image_ids(ds.train_x))
        assert prev <= ids  # nested: larger subsets contain smaller ones
        prev = ids
        assert ids.isdisjoint(image_ids(ds.val_x))
    with pytest.raises(ArchlabError, match="train size"):
        load_image_dataset("mnist", val_size=100, train_size=401)


def test_stratified_order_prefixes():
    labels = torch.tensor([0] * 90 + [1] * 10)
    order = stratified_order(labels)
    assert sorted(order.tolist()) == list(range(100))
    assert int(labels[order[:10]].sum()) == 1 and int(labels[order[:50]].sum()) == 5


def test_normalization_exact_and_serializable():
    x = torch.randint(0, 256, (20, 3, 5, 5), dtype=torch.uint8)
    n = Normalization.fit(x)
    ref = (x.double() / 255).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(torch.tensor(n.mean, dtype=torch.float64), ref.mean(1), atol=1e-12)
    assert torch.allclose(
        torch.tensor(n.std, dtype=torch.float64), ref.std(1, unbiased=False), atol=1e-12
    )
    z = n(x)
    assert z.dtype == torch.float32 and torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert Normalization.from_dict(n.to_dict()) == n


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """img shifted so out[h, w] = img[h + dy, w + dx], zeros outside (the crop definition)."""
    c, h, w = img.shape
    out = torch.zeros_like(img)
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    out[:, ys, xs] = img[:, ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx]
    return out


def test_augment_is_padded_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 2, 6, 6), dtype=torch.uint8)  # no zeros: padding is visible
    for flip in (False, True):
        out = augment_batch(x, g, pad=2, flip=flip)
        assert out.shape == x.shape and out.dtype == torch.uint8
        flipped = 0
        for i in range(len(x)):
            cands = [x[i], x[i].flip(-1)] if flip else [x[i]]
            match = [
                (k, dy, dx)
                for k, img in enumerate(cands)
                for dy in range(-2, 3)
                for dx in range(-2, 3)
                if torch.equal(out[i], _shift(img, dy, dx))
            ]
            assert match, f"image {i} is not a padded crop"
            flipped += match[0][0]
        assert (flipped > 10) == flip  # ~half flipped when allowed, none otherwise


def test_batches_seeded_cover_split_and_no_flip_for_digits(mnist_root):
    ds = load_image_dataset("mnist", val_size=100)
    seen = []
    for x, y in ds.batches("train", 64, shuffle=True, generator=torch.Generator().manual_seed(3)):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.int64
        seen.append(y)
    assert len(seen) == 7 and torch.equal(
        torch.sort(torch.cat(seen)).values, ds.train_y.sort().values
    )
    again = [
        y
        for _, y in ds.batches(
            "train", 64, shuffle=True, generator=torch.Generator().manual_seed(3)
        )
    ]
    assert all(torch.equal(a, b) for a, b in zip(seen, again, strict=True))
    assert len(list(ds.batches("train", 64, drop_last=True))) == 6
    with pytest.raises(ValueError, match="generator"):
        next(ds.batches("train", 8, shuffle=True))
    # mnist: augmentation never mirrors (a flipped digit is another symbol)
    assert ds.default_pad() == 3 and not ds.flip_ok
    x0 = ds.norm(ds.train_x[:32])
    xa, _ = next(ds.batches("train", 32, augment=True, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(xa, x0)
    for i in range(32):
        raw = ds.train_x[i]
        assert any(
            torch.equal(xa[i], ds.norm(_shift(raw, dy, dx)[None])[0])
            for dy in range(-3, 4)
            for dx in range(-3, 4)
        )


def test_corrupt_dataset_file_one_line(mnist_root):
    p = mnist_root / "mnist" / "train-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ArchlabError, match="train-labels") as e:
        load_image_dataset("mnist")
    assert "\n" not in str(e.value)


def test_embedded_subset_loads_offline_and_is_balanced(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no data anywhere but the package
    monkeypatch.setenv("ARCHLAB_OFFLINE", "1")
    ds = load_image_dataset("fashion-mnist-subset", val_size=0)
    assert (ds.channels, ds.image_size) == (1, 28) and ds.class_names == FASHION_MNIST_CLASSES
    assert (len(ds.train_y), len(ds.test_y)) == (12_000, 2_000) and ds.flip_ok
    assert torch.bincount(ds.train_y).tolist() == [1200] * 10
    assert torch.bincount(ds.test_y).tolist() == [200] * 10
    # stored in stratified order: every prefix is balanced (±1 per class)
    for n in (10, 375, 1500):
        counts = torch.bincount(ds.train_y[:n], minlength=10)
        assert int(counts.max() - counts.min()) <= 1


def test_embedded_subset_is_the_full_datasets_stratified_prefix(monkeypatch):
    if not (SHARED / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data is not present")
    from archlab.data.images import stratified_order

    monkeypatch.setenv("ARCHLAB_DATA", str(SHARED))
    full = load_image_dataset("fashion-mnist", val_size=0)
    sub = load_image_dataset("fashion-mnist-subset", val_size=0)
    keep = stratified_order(full.train_y)[:12_000]
    assert torch.equal(sub.train_x, full.train_x[keep]) and torch.equal(
        sub.train_y, full.train_y[keep]
    )
    keep = stratified_order(full.test_y)[:2_000]
    assert torch.equal(sub.test_x, full.test_x[keep]) and torch.equal(sub.test_y, full.test_y[keep])


def test_embedded_file_damage_is_one_line(monkeypatch, tmp_path):
    import shutil

    from archlab.data import embedded

    copy = tmp_path / "embedded"
    shutil.copytree(embedded.EMBEDDED_DIR, copy)
    f = copy / "fashion-mnist-subset" / "t10k-labels-idx1-ubyte.xz"
    f.write_bytes(f.read_bytes()[:-8])  # truncated xz
    monkeypatch.setattr(embedded, "EMBEDDED_DIR", copy)
    with pytest.raises(ArchlabError, match="t10k-labels") as e:
        load_image_dataset("fashion-mnist-subset")
    assert "\n" not in str(e.value)


# --- the real Fashion-MNIST (../shared/data) ----------------------------------------------


@pytest.fixture(scope="module")
def fmnist():
    if not (SHARED / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data is not present")
    mp = pytest.MonkeyPatch()
    mp.setenv("ARCHLAB_DATA", str(SHARED))
    try:
        yield load_image_dataset("fashion-mnist", val_size=5000)  # sha256-verified on load
    finally:
        mp.undo()


def test_fashion_mnist_real(fmnist):
    ds = fmnist
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (55000, 5000, 10000)
    assert ds.train_x.shape[1:] == (1, 28, 28) and ds.class_names == FASHION_MNIST_CLASSES
    assert ds.class_names[9] == "Ankle boot" and ds.flip_ok
    for y in (ds.train_y, ds.val_y, ds.test_y):
        assert int(y.min()) == 0 and int(y.max()) == 9
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10  # the published balanced test set
    all_train = Normalization.fit(torch.cat([ds.train_x, ds.val_x]))
    assert abs(all_train.mean[0] - 0.2860) < 1e-4 and abs(all_train.std[0] - 0.3530) < 1e-4
    assert [Path(s).name for s in ds.sources][0] == "train-images-idx3-ubyte.gz"


def test_fashion_mnist_checksums(fmnist):
    for stem, sha in FMNIST_SHA.items():
        data = gzip.decompress((SHARED / "fashion-mnist" / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == sha


def test_describe_sources_lists_roots(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    d = describe_sources()
    assert d["mnist"]["status"] == "missing"
    assert d["fashion-mnist-subset"]["status"] == "builtin"
    assert d["fashion-mnist"]["searched"][-1] == "/usr/share/datasets/fashion-mnist"
    assert d["mnist"]["searched"][0] == str(tmp_path / "mnist")


def test_load_image_file(tmp_path):
    from PIL import Image

    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :10, 0] = 255  # left half red
    Image.fromarray(rgb).save(tmp_path / "a.png")
    a = load_image_file(tmp_path / "a.png", 3, 8)
    assert a.shape == (3, 8, 8) and a.dtype == np.uint8
    assert a[0, :, 0].min() > 200 and a[0, :, -1].max() < 50 and a[1].max() < 50
    g = load_image_file(tmp_path / "a.png", 1, 28)
    assert g.shape == (1, 28, 28) and abs(int(g[0, 5, 0]) - 76) <= 2  # luma of pure red
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for p in ("bad.png", "missing.png"):
        with pytest.raises(ArchlabError) as e:
            load_image_file(tmp_path / p, 1, 28)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("damage", ["truncated", "bad magic"])
def test_corrupt_dataset_through_cli_is_one_line_exit_2(tmp_path, cli, damage):
    """The user's view of a damaged file: `archlab train image` says which file, exits 2."""
    root = tmp_path / "data"
    write_mnist(root, "mnist", 64, 16, gz=False)
    p = root / "mnist" / "train-images-idx3-ubyte"
    raw = p.read_bytes()
    p.write_bytes(raw[:-100] if damage == "truncated" else (1234).to_bytes(4, "big") + raw[4:])
    env = {"ARCHLAB_DATA": str(root), "ARCHLAB_OFFLINE": "1", "HOME": str(tmp_path / "home")}
    r = cli(
        "train",
        "image",
        "--arch",
        "mlp",
        "--data",
        "mnist",
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "run"),
        env=env,
    )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "train-images" in r.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()
