"""Example images for the image tab: one Fashion-MNIST test image per class, as PNG files.

Taken from the subset that ships with archlab (its test split, never seen in training) and
written once beside the default models, so the page can offer them as clickable examples.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_images"]


def example_images(root: Path) -> list[Path]:
    """``root/examples/<class>-<name>.png`` for each of the ten classes (written if missing)."""
    from PIL import Image

    from archlab.data import load_image_dataset

    folder = root / "examples"
    found = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if len(found) == 10:
        return found
    ds = load_image_dataset("fashion-mnist-subset", val_size=1000)
    x, y = ds.split("test")  # (N, 1, 28, 28) uint8, (N,)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for c, name in enumerate(ds.class_names):
        i = int((y == c).nonzero()[0, 0])  # the first test image of the class
        path = folder / f"{c}-{name.replace('/', '-').replace(' ', '-').lower()}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(x[i, 0].numpy()).save(tmp, format="PNG")
        tmp.replace(path)
        out.append(path)
    return out
