"""The cost tab and POST /api/cost (archlab.lab.costs): every layer's JSON answer is exactly what
``archlab cost LAYER ... --json`` prints, the seed's numbers come out (60,200 / 60,400, 1,792),
the FLOPs curve is the engine's own formulas (its sum at n is the engine's total, its two parts
meet at the engine's n*), and bad requests are refused in one line."""

from __future__ import annotations

import json

import pytest

from archlab.cli import main
from archlab.commands.cost import LAYERS, OPTIONS
from archlab.errors import ArchlabError
from archlab.lab.costs import MAX_SIZE, cost_json, flops_vs_seq_len, layer_cost
from archlab.lab.views import cost_view

# The smallest complete request of each layer, plus sizes so FLOPs and memory are derived too.
REQUIRED = {
    "--in-features": 20,
    "--out-features": 30,
    "--num-embeddings": 50,
    "--embedding-dim": 8,
    "--input-size": 10,
    "--hidden-size": 20,
    "--in-channels": 3,
    "--out-channels": 16,
    "--kernel-size": 3,
    "--normalized-shape": 32,
    "--num-features": 16,
    "--d-model": 32,
    "--heads": 4,
    "--layers": 2,
    "--patch-size": 4,
}
SIZES = {"--seq-len": 7, "--batch-size": 2, "--image-size": 16}


def cli_json(capsys, layer: str, options: dict, flags: tuple[str, ...] = ()) -> dict:
    argv = ["cost", layer, *[x for k, v in options.items() for x in (k, str(v))], *flags, "--json"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def request(layer: str, options: dict, flags: tuple[str, ...] = ()) -> dict:
    body = {"layer": layer, **{k[2:].replace("-", "_"): v for k, v in options.items()}}
    return {**body, **{f[2:].replace("-", "_"): True for f in flags}}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_layer_answers_what_the_cli_prints(capsys, layer):
    opts = LAYERS[layer][2]
    options = {o: REQUIRED[o] for o in opts if OPTIONS[o].get("required")}
    options |= {o: v for o, v in SIZES.items() if o in opts}
    assert cost_json(request(layer, options)) == cli_json(capsys, layer, options)


@pytest.mark.parametrize(
    "layer,options,flags",
    [
        ("rnn", {"--input-size": 100, "--hidden-size": 200, "--convention": "keras"}, ()),
        ("lstm", {"--input-size": 10, "--hidden-size": 20, "--proj-size": 5, "--seq-len": 7}, ()),
        (
            "gru",
            {"--input-size": 10, "--hidden-size": 20, "--convention": "keras"},
            ("--no-reset-after", "--bidirectional"),
        ),
        (
            "conv2d",
            {
                "--in-channels": 3,
                "--out-channels": 64,
                "--kernel-size": "3x5",
                "--padding": "same",
                "--image-size": "32x24",
            },
            ("--no-bias",),
        ),
        (
            "transformer",
            {"--d-model": 512, "--heads": 8, "--layers": 6, "--seq-len": 1024},
            ("--causal", "--norm-first"),
        ),
    ],
)
def test_options_flags_and_conventions_match_the_cli(capsys, layer, options, flags):
    want = cli_json(capsys, layer, options, flags)
    assert cost_json(request(layer, options, flags)) == want


def test_the_seed_numbers():
    p3 = layer_cost({"layer": "rnn", "input_size": 100, "hidden_size": 200, "convention": "keras"})
    assert p3.params == 60_200
    assert layer_cost({"layer": "rnn", "input_size": 100, "hidden_size": 200}).params == 60_400
    p4 = {"layer": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": 3}
    assert layer_cost(p4).params == 1_792
    summary, text, fig = cost_view(
        {"layer": "rnn", "input_size": 100, "hidden_size": 200, "convention": "keras"}
    )
    assert "total: 20,000 + 40,000 + 200 = 60,200 params" in text
    assert 'data-params="60200"' in summary and "60,400" in summary and fig is None


def test_flops_curve_is_the_engines_formulas():
    cost = layer_cost(
        {"layer": "transformer", "d_model": 512, "heads": 8, "layers": 6, "seq_len": 1024}
    )
    curve = flops_vs_seq_len(cost, [64, 1024, 3072, 8192])
    assert curve.n_star == 3072 == 2 * 512 + 2048  # n* = 2d + d_ff (Part 5)
    assert curve.quadratic[1] + curve.linear[1] == cost.flops_forward_dense  # at the user's n
    assert curve.quadratic[2] == curve.linear[2]  # the two parts meet at n*
    assert curve.quadratic[0] < curve.linear[0] and curve.quadratic[3] > curve.linear[3]
    assert curve.quadratic[3] == curve.quadratic[1] * 64  # n**2 terms: 8x n, 64x FLOPs
    att = layer_cost({"layer": "attention", "d_model": 64, "heads": 4, "seq_len": 10})
    assert flops_vs_seq_len(att, [1, 2]).n_star == 128  # 8nd^2 = 4n^2 d  ->  n* = 2d
    lstm = layer_cost({"layer": "lstm", "input_size": 10, "hidden_size": 20, "seq_len": 7})
    c = flops_vs_seq_len(lstm, [7, 14])
    assert c.n_star is None and not any(c.quadratic) and c.linear[0] == lstm.flops_forward_dense


def test_cost_view_plots_flops_against_n_with_n_star():
    summary, text, fig = cost_view(
        {"layer": "transformer", "d_model": 512, "heads": 8, "layers": 6, "seq_len": 1024}
    )
    assert fig is not None and "3,072 tokens" in summary and "O(" in summary
    assert "Crossover" in text  # the CLI's derivation, unchanged


@pytest.mark.parametrize(
    "body,message",
    [
        ({"layer": "rnn", "input_size": 0, "hidden_size": 200}, "positive integer"),
        ({"layer": "rnn", "input_size": MAX_SIZE, "hidden_size": 200}, "too large"),
        (
            {"layer": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": [3, 10**12]},
            "too large",
        ),
        ({"layer": "rnn", "input_size": "100", "hidden_size": 200}, "integer"),
        ({"layer": "rnn", "input_size": 1.5, "hidden_size": 200}, "integer"),
        ({"layer": "rnn", "hidden_size": 200}, "input_size is required"),
        (
            {"layer": "rnn", "input_size": 1, "hidden_size": 2, "kernel_size": 3},
            "takes no kernel_size",
        ),
        ({"layer": "rnn", "input_size": 1, "hidden_size": 2, "bidirectional": "yes"}, "flag"),
        ({"layer": "rnn", "input_size": 1, "hidden_size": 2, "nonlinearity": "gelu"}, "one of"),
        ({"layer": "rnn", "input_size": 1, "hidden_size": 2, "convention": "tf"}, "convention"),
        ({"layer": "attention", "d_model": 10, "heads": 3}, "divide"),
        ({"layer": "mamba"}, "unknown layer"),
        ({}, "give the layer"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_requests_are_one_line_errors(body, message):
    with pytest.raises(ArchlabError, match=message) as e:
        cost_json(body)
    assert "\n" not in str(e.value)
