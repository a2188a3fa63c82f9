"""Every verdict rule on synthetic metrics, once for each outcome it can give.

The metrics start from the tiny fixture (so they have the real shape) and are edited to the case.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from archlab.study.claim import get_claim

FIXTURE = Path(__file__).parent / "golden" / "study_results.json"


@pytest.fixture(scope="module")
def base() -> dict[str, dict]:
    return {c["id"]: c["metrics"] for c in json.loads(FIXTURE.read_text())["claims"]}


def ms(v: float, std: float = 0.0) -> dict:
    return {"mean": v, "std": std, "min": v - std, "max": v + std, "n": 3}


def verdict(cid: str, m: dict):
    return get_claim(cid).verdict(m)


# ---- T1 -----------------------------------------------------------------------------------------
def _t1(base, accs: dict[str, list[float]]) -> dict:
    m = copy.deepcopy(base["T1"])
    m["distances"] = [10, 20, 40, 80]
    for a, row in accs.items():
        m["recall"][a]["accuracy"] = [ms(x) for x in row]
    return m


@pytest.mark.parametrize(
    "accs,status,text",
    [
        (
            {"gpt": [1, 1, 1, 1], "rnn": [0.2] * 4, "lstm": [0.5] * 4, "gru": [0.6] * 4},
            "supported",
            "",
        ),
        (
            {"gpt": [1, 1, 1, 1], "rnn": [0.2] * 4, "lstm": [1, 0.95, 0.5, 0.3], "gru": [0.3] * 4},
            "conditional",
            "from distance 40",
        ),
        (
            {"gpt": [0.3] * 4, "rnn": [0.2] * 4, "lstm": [1] * 4, "gru": [0.3] * 4},
            "not supported",
            "LSTM",
        ),
        (
            {"gpt": [1] * 4, "rnn": [0.2] * 4, "lstm": [0.3] * 4, "gru": [0.97] * 4},
            "conditional",
            "GRU",
        ),
    ],
)
def test_t1(base, accs, status, text):
    v = verdict("T1", _t1(base, accs))
    assert v.status == status and text in v.label + v.reason


# ---- T2 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ratios,ttt,status,text",
    [
        ([0.5, 0.4, 0.3], 0.5, "supported", ""),
        ([1.2, 1.5, 3.0], 2.0, "conditional", "not faster at any"),
        ([1.5, 0.5, 0.2], 0.9, "conditional", "only for n in [16, 32]"),
    ],
)
def test_t2(base, ratios, ttt, status, text):
    m = copy.deepcopy(base["T2"])
    m["timing"]["gpt_over_lstm_step"] = [ms(r, 0.05) for r in ratios]
    m["timing"]["gpt_over_lstm_time_to_target"] = [ms(ttt), ms(ttt)]
    v = verdict("T2", m)
    assert v.status == status and text in v.label


# ---- T3 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tn,mem_naive,mem_sdpa,status,text",
    [
        (1.1, 2.0, 1.0, "not supported", "did not grow"),
        (2.0, 2.0, 1.9, "supported", ""),
        (2.0, 1.95, 1.0, "conditional", "only for naive"),
        (2.0, 1.2, 1.0, "conditional", "memory is not"),
    ],
)
def test_t3(base, tn, mem_naive, mem_sdpa, status, text):
    m = copy.deepcopy(base["T3"])
    m["timing"]["core_time_exponent"] = {"naive": ms(tn), "sdpa": ms(tn)}
    m["memory_exponent"] = {"naive": mem_naive, "sdpa": mem_sdpa}
    v = verdict("T3", m)
    assert v.status == status and text in v.label + v.reason


# ---- R1 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rnn_diff,lstm,sin,status,text",
    [
        (0.5, 1.0, 1.3, "not supported", ""),
        (1e-7, 1.0, 1.3, "conditional", "only past it"),
        (1e-7, 1.0, 1.02, "conditional", "only learned positions"),
        (1e-7, 1.3, 1.3, "conditional", "neither"),
    ],
)
def test_r1(base, rnn_diff, lstm, sin, status, text):
    m = copy.deepcopy(base["R1"])
    m["padding"]["lstm"]["packed_outputs"] = rnn_diff
    m["extrapolation"]["LSTM"]["beyond_over_within"] = ms(lstm)
    m["extrapolation"]["GPT (sinusoidal pos.)"]["beyond_over_within"] = ms(sin)
    v = verdict("R1", m)
    assert v.status == status and text in v.label


# ---- R2 -----------------------------------------------------------------------------------------
def _r2(base, inf_exp, tr_exp, tr_last):
    m = copy.deepcopy(base["R2"])
    m["inference_exponent"] = {"LSTM state": inf_exp[0], "GPT KV cache": inf_exp[1]}
    keys = ("LSTM (BPTT)", "GPT, naive attention", "GPT, SDPA")
    m["training_exponent"] = dict(zip(keys, tr_exp, strict=True))
    for k, v in zip(keys, tr_last, strict=True):
        m["training_bytes"][k][-1] = v
    return m


@pytest.mark.parametrize(
    "inf_exp,tr_exp,tr_last,status,text",
    [
        ((1.0, 1.0), (1, 2, 1), (100, 200, 200), "not supported", ""),
        ((0.0, 1.0), (0.5, 2, 1), (100, 400, 200), "supported", ""),
        ((0.0, 1.0), (1.0, 2, 1), (100, 400, 200), "conditional", "not O(1)"),
        ((0.0, 1.0), (1.0, 2, 1), (300, 400, 200), "conditional", "at inference only"),
    ],
)
def test_r2(base, inf_exp, tr_exp, tr_last, status, text):
    v = verdict("R2", _r2(base, inf_exp, tr_exp, tr_last))
    assert v.status == status and text in v.label


# ---- R3 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rates,status,text",
    [
        ({"GPT": 0.5}, "not supported", ""),
        (
            {"LSTM (PyTorch init)": 0.8, "LSTM forget bias 0": 0.8, "LSTM forget bias 1": 0.85},
            "supported",
            "",
        ),
        ({"LSTM (PyTorch init)": 0.59, "LSTM forget bias 1": 0.79}, "conditional", "forget bias 1"),
    ],
)
def test_r3(base, rates, status, text):
    m = copy.deepcopy(base["R3"])
    for k, d in m["variants"].items():
        d["decay_per_step"] = ms({"tanh RNN": 0.45, "GRU": 0.6, "GPT": 1.0}.get(k, 0.6))
    for k, r in rates.items():
        m["variants"][k]["decay_per_step"] = ms(r)
    v = verdict("R3", m)
    assert v.status == status and text in v.label


# ---- P3 / P4 / P5 -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seed,keras,pt,engine_pt,status",
    [
        (60_200, 60_200, 60_400, 60_400, "conditional"),
        (60_400, 60_400, 60_400, 60_400, "supported"),
        (60_200, 60_200, 60_400, 60_000, "not supported"),
        (99, 60_200, 60_400, 60_400, "not supported"),
    ],
)
def test_p3(base, seed, keras, pt, engine_pt, status):
    m = {
        **base["P3"],
        "seed_answer": seed,
        "engine_keras": keras,
        "torch_numel": pt,
        "engine_pytorch": engine_pt,
    }
    assert verdict("P3", m).status == status


@pytest.mark.parametrize("torch_numel,status", [(1792, "supported"), (1793, "not supported")])
def test_p4(base, torch_numel, status):
    assert verdict("P4", {**base["P4"], "torch_numel": torch_numel}).status == status


@pytest.mark.parametrize(
    "mismatch,pred,meas,status",
    [
        (True, 1.8, 1.8, "not supported"),
        (False, None, None, "supported"),
        (False, 1.8, 1.7, "supported"),
        (False, 1.8, 0.9, "conditional"),
        (False, 1.8, 2.6, "conditional"),
    ],
)
def test_p5(base, mismatch, pred, meas, status):
    m = copy.deepcopy(base["P5"])
    if mismatch:
        m["flop_checks"][0]["flop_counter"] += 2
    m["predicted_exponent_above_nstar"] = pred
    m["timing"]["measured_exponent_above_nstar"] = None if meas is None else ms(meas)
    assert verdict("P5", m).status == status


@pytest.mark.parametrize(
    "below,above,status,text",
    [(0.3, None, "not supported", "straddle"), (0.3, 1.2, "not supported", ""),
     (1.8, 2.0, "supported", ""), (0.3, 2.0, "conditional", "quadratic only beyond")],
)  # fmt: skip
def test_v3(base, below, above, status, text):  # V3 is claims/v3_quadratic_patches (issue 6)
    m = copy.deepcopy(base["V3"])
    m["timing"]["exponent_below"] = ms(below)
    m["timing"]["exponent_above"] = None if above is None else ms(above)
    v = verdict("V3", m)
    assert v.status == status and text in v.label + v.reason


@pytest.mark.parametrize(
    "ratio,status,text",
    [(1.5, "supported", ""), (0.3, "conditional", "slower per image"),
     (1.0, "conditional", "no faster than a CNN")],
)  # fmt: skip
def test_v4(base, ratio, status, text):  # V4 is claims/v4_parallel_processing (issue 6)
    m = copy.deepcopy(base["V4"])
    m["timing"]["training"]["vit_over_cnn_images_per_s"] = ms(ratio)
    v = verdict("V4", m)
    assert v.status == status and text in v.label


def test_verdicts_are_pure(base):
    """Same metrics in, same verdict out; the metrics are not modified."""
    for cid, m in base.items():
        before = json.dumps(m, sort_keys=True)
        assert verdict(cid, m) == verdict(cid, m)
        assert json.dumps(m, sort_keys=True) == before
