"""What each tab shows (archlab.lab.views, archlab.lab.html), checked as HTML without a browser:
one card per model with the API's numbers, the strips' colour scales, the shift plot's data, the
CNN's stages and the ViT's layers, the progress line, and the study tab's verdicts."""

from __future__ import annotations

import re

import pytest
from lab_fixtures import study_dir, trained_models

from archlab.lab import html as H
from archlab.lab.defaults import TrainingProgress
from archlab.lab.service import next_words
from archlab.lab.state import Lab
from archlab.lab.views import (
    CLAIMS,
    TAB_NAMES,
    image_view,
    next_word_view,
    status_view,
    study_verdicts,
    study_view,
)

pytestmark = pytest.mark.usefixtures("one_thread")
PROBS = re.compile(r'data-prob="([0-9.]+)"')


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return Lab(trained_models(), study_dir(tmp_path_factory.mktemp("views")))


def cards(page: str) -> dict[str, str]:
    parts = re.split(r'<div class="lab-card" data-model="', page)[1:]
    return {p.split('"', 1)[0]: p for p in parts}


def test_next_word_cards_show_the_apis_top_k_and_the_right_strips(lab):
    prompt = "ROMEO:\nWhat light"
    page = next_word_view(lab, prompt, top_k=5, max_new_tokens=20, seed=3)
    shown = cards(page)
    assert list(shown) == ["rnn", "lstm", "gru", "gpt"]
    api = next_words(lab, prompt, 5)
    for name, html in shown.items():
        probs = [float(p) for p in PROBS.findall(html)]
        assert probs == pytest.approx([t["prob"] for t in api[name]], abs=1e-6)
        assert 0 < sum(probs) <= 1 + 1e-6
        assert 'data-kind="loss"' in html and 'data-kind="saliency"' in html
        assert ('data-kind="attention"' in html) == (name == "gpt")
        assert html.count("<span style=") >= 2 * len(prompt)  # loss and saliency, every token


def test_next_word_errors_are_shown_not_raised(lab):
    assert "empty" in next_word_view(lab, "")
    assert "lab-error" in next_word_view(lab, "x" * 100_000)


def test_strip_colour_scales():
    linear = H.strip(["a", "b", "c"], [None, 0.0, 2.0], "loss", "nats", top=2.0)
    assert "transparent" in linear and "rgb(255,255,255)" in linear and "rgb(214,39,40)" in linear
    log = H.strip(["a", "b", "c"], [1e-3, 1e-2, 1.0], "saliency", "grad norm", decades=3)
    colours = re.findall(r"background:(rgb\([0-9,]+\))", log)
    assert colours[0] == "rgb(255,255,255)" and colours[2] == "rgb(31,119,180)"
    assert colours[1] not in (colours[0], colours[2])  # one decade up: a third of the way
    assert H.visible(" \n", space=True) == "␣⏎" and H.visible(" \n") == " ⏎"


def test_image_view_cards_plot_feature_maps_and_attention(lab):
    from archlab.lab.examples import example_images

    root = trained_models()[0].run.path.parent
    data = example_images(root)[9].read_bytes()  # an ankle boot from the test split
    top, fig, maps, attn = image_view(lab, data, dx=2, dy=-1, top_k=3)
    assert list(cards(top)) == ["cnn", "vit"] and top.count("data-prob") == 6
    lines = fig.axes[0].get_lines()
    curves = [ln for ln in lines if len(ln.get_xdata()) == 17]
    assert len(curves) == 2 and all(0 <= y <= 1 for ln in curves for y in ln.get_ydata())
    assert maps.count("stage ") == 3 and maps.count("<img") == 3 * 8  # 3 stages x 8 channels
    assert "layer 1/4" in attn and attn.count("<img") == 1 + 4  # the chosen layer + all four
    assert image_view(lab, None)[1] is None
    assert "not an image" in image_view(lab, b"text")[0]


def test_status_view_while_training_and_when_ready(lab):
    p = TrainingProgress(runs=["rnn", "lstm"], current="lstm", index=2, fraction=0.4)
    training = status_view(Lab([], lab.study_dir, p))
    assert 'id="lab-training"' in training and "2/2" in training and "40%" in training
    assert 'id="lab-ready"' in status_view(lab) and "gpt (lm" in status_view(lab)
    failed = TrainingProgress(runs=["rnn"], error="disk full", done=True)
    assert "disk full" in status_view(Lab([], lab.study_dir, failed))


def test_study_tab_links_every_claim_and_shows_the_report(lab, tmp_path):
    verdicts = study_verdicts(lab)
    assert set(verdicts) == set(CLAIMS) and all(verdicts.values())
    assert {c.tab for c in CLAIMS.values()} <= set(TAB_NAMES)
    assert 'src="/study/report.html"' in study_view(lab)
    empty = Lab([], tmp_path)
    assert study_verdicts(empty) == {} and "archlab study" in study_view(empty)
