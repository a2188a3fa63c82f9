"""Oracles for the image tab's views (archlab.lab.vision): the shift is an exact zero-filled
translation, uploads decode exactly as ``archlab classify`` reads a file (same probabilities),
the shift curve at dx=0 is the plain prediction, CNN stage outputs are the feature stack's own
activations before each pooling, and the ViT's map is its class-token attention row."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from lab_fixtures import tiny_image
from PIL import Image

from archlab.errors import ArchlabError
from archlab.lab.vision import (
    NotAnImage,
    decode_image,
    feature_maps,
    predict,
    shift,
    shift_curve,
    vit_attention,
)
from archlab.train.inference import classify_image

pytestmark = pytest.mark.usefixtures("one_thread")


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def sample(seed: int = 0) -> np.ndarray:
    """A 28 x 28 uint8 'object': a bright blob on black, off-centre."""
    rng = np.random.default_rng(seed)
    a = np.zeros((28, 28), np.uint8)
    a[6:20, 9:17] = rng.integers(120, 255, (14, 8))
    return a


@pytest.mark.parametrize("dx,dy", [(0, 0), (3, 0), (0, -2), (-5, 4), (27, -27)])
def test_shift_is_a_zero_filled_translation(dx, dy):
    x = torch.arange(1, 28 * 28 + 1, dtype=torch.float32).view(1, 1, 28, 28)
    s = shift(x, dx, dy)
    for i in range(28):
        for j in range(28):
            src_i, src_j = i - dy, j - dx
            inside = 0 <= src_i < 28 and 0 <= src_j < 28
            assert s[0, 0, i, j] == (x[0, 0, src_i, src_j] if inside else 0)


def test_shift_rejects_moves_off_the_image():
    x = torch.zeros(1, 28, 28)
    with pytest.raises(ArchlabError, match="whole pixels"):
        shift(x, 28, 0)
    with pytest.raises(ArchlabError, match="whole pixels"):
        shift(x, 1.5, 0)


def test_upload_bytes_classify_as_archlab_classify_reads_the_file(tmp_path):
    m = tiny_image("cnn", channels=(8, 16), convs_per_stage=1)
    m.run.path = tmp_path
    a = sample()
    f = tmp_path / "x.png"
    f.write_bytes(png(a))
    image = decode_image(f.read_bytes(), 1, 28, invert="no")
    assert image.shape == (1, 28, 28) and (image[0] == a).all()
    ours = predict(m, image).top(3)
    ref = classify_image(m.run, f, 3)
    assert [t["label"] for t in ours] == [t["label"] for t in ref]
    np.testing.assert_allclose([t["prob"] for t in ours], [t["prob"] for t in ref], rtol=1e-6)


def test_dark_on_light_drawings_are_inverted_automatically():
    a = 255 - sample()  # dark ink on white paper
    assert (decode_image(png(a), 1, 28)[0] == sample()).all()
    assert (decode_image(png(a), 1, 28, invert="no")[0] == a).all()
    assert (decode_image(png(sample()), 1, 28)[0] == sample()).all()  # light on black stays
    big = np.kron(sample(), np.ones((10, 10), np.uint8))  # 280 x 280, resized like classify
    assert decode_image(png(big), 1, 28).shape == (1, 28, 28)
    blob = np.full((28, 28), 255, np.uint8)
    blob[2:26, 2:26] = 0  # a drawing that covers most of a white canvas: still dark on light
    assert decode_image(png(blob), 1, 28)[0, 14, 14] == 255


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\nbroken"])
def test_non_images_are_refused_in_one_line(data):
    with pytest.raises(NotAnImage) as e:
        decode_image(data, 1, 28)
    assert "\n" not in str(e.value)


def test_shift_curve_at_zero_is_the_plain_prediction():
    m = tiny_image("vit", patch_size=7, d_model=16, layers=2, heads=2)
    a = sample()[None]
    label, probs = shift_curve(m, a, [-2, 0, 3], dy=1)
    p0 = predict(m, a, 0, 1)
    top = predict(m, a).top(1)[0]
    assert label == top["label"]
    c = p0.names.index(label)
    np.testing.assert_allclose(probs[1], float(p0.probs[c]), rtol=1e-5)
    np.testing.assert_allclose(probs[0], float(predict(m, a, -2, 1).probs[c]), rtol=1e-5)


def test_cnn_feature_maps_are_each_stages_last_activation():
    m = tiny_image("cnn", channels=(4, 8, 16), convs_per_stage=2)
    a = sample()[None]
    stages = feature_maps(m, a)
    assert [tuple(s.shape) for s in stages] == [(4, 28, 28), (8, 14, 14), (16, 7, 7)]
    # reference: walk the feature stack and keep the input of each pooling, and the last output
    norm = m.run.config["data"]["normalization"]
    x = (torch.tensor(a, dtype=torch.float32)[None] / 255 - norm["mean"][0]) / norm["std"][0]
    ref = []
    with torch.no_grad():
        for layer in m.run.model.features:
            if isinstance(layer, torch.nn.MaxPool2d):
                ref.append(x[0].clone())
            x = layer(x)
    ref.append(x[0])
    for got, want in zip(stages, ref, strict=True):
        torch.testing.assert_close(got, want)


def test_feature_maps_are_refused_for_a_vit():
    with pytest.raises(ArchlabError, match="not a CNN"):
        feature_maps(tiny_image("vit", patch_size=7, d_model=16, layers=1, heads=2), sample()[None])


def test_vit_attention_is_the_class_token_row_over_the_patch_grid():
    m = tiny_image("vit", patch_size=7, d_model=16, layers=3, heads=2)
    a = sample()[None]
    maps = vit_attention(m, a)  # (L, nh, 4, 4)
    assert maps.shape == (3, 2, 4, 4)
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(3, 2))
    norm = m.run.config["data"]["normalization"]
    x = (torch.tensor(a, dtype=torch.float32)[None] / 255 - norm["mean"][0]) / norm["std"][0]
    with torch.no_grad():
        _, attns = m.run.model(x, return_attn=True)
    for layer, att in enumerate(attns):
        row = att[0, :, 0, 1:]  # (nh, 16): class token's query over the patches
        torch.testing.assert_close(maps[layer].flatten(1), row / row.sum(-1, keepdim=True))
    mean_pool = tiny_image("vit", patch_size=7, d_model=16, layers=1, heads=2, pool="mean")
    assert vit_attention(mean_pool, a).shape == (1, 2, 4, 4)
