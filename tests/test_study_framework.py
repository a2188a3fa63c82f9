"""archlab study: every claim at the tiny profile, caching, --only, determinism, output safety."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from archlab.errors import ArchlabError
from archlab.study.claim import Claim, Verdict, get_claim, ledger
from archlab.study.runner import MARKER, StudyOptions, run_study, strip_timing

PART1 = ["T1", "T2", "T3", "R1", "R2", "R3", "P3", "P4", "P5"]
ALL = [c.id for c in ledger()]  # Part 1 + the Part 2 claims plugged in so far
SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_a68e1cf689097445.txt"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("study")
    return run_study(StudyOptions(profile="tiny", out=out, seeds=3, progress=False)), out


def test_ledger_has_every_part1_claim_with_all_profiles():
    assert [i for i in ALL if i in PART1] == PART1
    assert {"V3", "V4"} <= set(ALL)  # Part 2 claims plug in the same way
    for c in ledger():
        assert set(c.sizes) >= {"tiny", "quick", "full"}
        assert c.seed_quote and c.method


@pytest.mark.skipif(not SEED_FILE.exists(), reason="the seed file is not beside the checkout")
def test_quotes_are_verbatim_from_the_seed():
    seed = " ".join(SEED_FILE.read_text().split())
    for c in ledger():
        for piece in c.seed_quote.split(" … "):  # quotes elide with " … "
            assert " ".join(piece.split()) in seed, (c.id, piece)


def test_every_claim_runs_at_tiny_size(tiny):
    results, out = tiny
    assert [c["id"] for c in results["claims"]] == ALL
    assert results["not_run"] == []
    for c in results["claims"]:
        assert c["verdict"]["status"] in ("supported", "not supported", "conditional")
        assert c["verdict"]["reason"]
        assert c["seeds"] == [0, 1, 2]
    for name in ("results.json", "report.md", "report.html", MARKER):
        assert (out / name).is_file()
    assert len(list((out / "cache").glob("*.json"))) == len(ALL)
    assert {p.stem for p in (out / "figures").glob("*.png")} == set(ALL)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["machine"]["versions"]["torch"] == torch.__version__
    assert on_disk["data"]["source"]


def test_exact_answers_at_tiny(tiny):
    m = {c["id"]: c["metrics"] for c in tiny[0]["claims"]}
    assert m["P3"]["torch_numel"] == 60_400 and m["P3"]["engine_keras"] == 60_200
    assert m["P4"]["torch_numel"] == 1_792
    assert all(r["flop_counter"] == r["formula"] for r in m["P5"]["flop_checks"])
    # memory is measured from tensors: KV cache = 2·L·n·d·4 bytes, RNN state constant
    r2 = m["R2"]
    assert r2["inference_bytes"] == r2["inference_formula_bytes"]
    assert len(set(r2["inference_bytes"]["LSTM state"])) == 1
    # SDPA saves O(n) for backward: doubling n doubles the bytes exactly
    sd = m["T3"]["saved_bytes"]["sdpa"]
    assert sd[1] == 2 * sd[0] and sd[2] == 2 * sd[1]
    # padding equivalence is exact to float rounding
    pad = m["R1"]["padding"]
    assert max(pad[k]["packed_outputs"] for k in ("rnn", "lstm", "gru")) < 1e-5
    assert pad["gpt"]["masked_outputs"] < 1e-5 < pad["gpt"]["unmasked_outputs"]


def test_only_reruns_one_claim_and_keeps_the_rest(tiny, tmp_path):
    _, out = tiny
    again = run_study(
        StudyOptions(profile="tiny", out=out, seeds=3, progress=False, only=["R3"], use_cache=False)
    )
    cached = {c["id"]: c["timing"]["from_cache"] for c in again["claims"]}
    assert cached.pop("R3") is False
    assert all(cached.values()) and len(cached) == len(ALL) - 1


def test_only_runs_dependencies_into_an_empty_folder(tmp_path):
    r = run_study(StudyOptions(profile="tiny", out=tmp_path, seeds=1, progress=False, only=["P5"]))
    assert [c["id"] for c in r["claims"]] == ["T3", "P5"]
    assert set(r["not_run"]) == set(ALL) - {"T3", "P5"}


def test_same_seed_same_results_except_timing(tiny, tmp_path):
    first, _ = tiny
    second = run_study(
        StudyOptions(profile="tiny", out=tmp_path, seeds=3, progress=False, use_cache=False)
    )
    a, b = strip_timing(copy.deepcopy(first)), strip_timing(second)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert '"timing":' not in json.dumps(a)


def test_strip_timing_removes_timing_and_timing_verdicts():
    doc = {
        "claims": [
            {"timing_verdict": True, "verdict": {}, "metrics": {"timing": 1, "x": 2}},
            {"timing_verdict": False, "verdict": {"status": "supported"}},
        ],
        "timing": {},
    }
    assert strip_timing(doc) == {
        "claims": [
            {"timing_verdict": True, "metrics": {"x": 2}},
            {"timing_verdict": False, "verdict": {"status": "supported"}},
        ]
    }


def test_refuses_a_foreign_nonempty_folder(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(ArchlabError, match="not made by 'archlab study'"):
        run_study(StudyOptions(profile="tiny", out=tmp_path, progress=False, only=["P4"]))
    assert (tmp_path / "thesis.tex").read_text() == "mine"
    assert not (tmp_path / "results.json").exists()


def test_bad_options():
    with pytest.raises(ArchlabError, match="profile"):
        StudyOptions(profile="huge")
    with pytest.raises(ArchlabError, match="seeds"):
        StudyOptions(seeds=0)
    with pytest.raises(ArchlabError, match="unknown claim 'X9'"):
        get_claim("X9")


def test_cli_one_line_errors(cli, tmp_path):
    r = cli("study", "--only", "Z1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Z1" in r.stderr
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "notes.txt").write_text("x")
    r = cli("study", "--only", "P4", "--out", str(tmp_path / "f"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_runs_only_cheap_claims(cli, tmp_path):
    r = cli("study", "--only", "P3,P4", "--out", str(tmp_path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "P3" in r.stdout and "report:" in r.stdout
    assert json.loads((tmp_path / "results.json").read_text())["profile"] == "quick"


def test_verdict_and_claim_validation():
    with pytest.raises(ValueError, match="condition"):
        Verdict("conditional", "why")
    with pytest.raises(ValueError, match="condition"):
        Verdict("supported", "why", condition="x")
    assert Verdict("conditional", "why", "on CPU").label == "conditional: on CPU"
    base = get_claim("P4")
    with pytest.raises(ValueError, match="sizes"):
        Claim(**{**base.__dict__, "sizes": {"quick": {}}})
