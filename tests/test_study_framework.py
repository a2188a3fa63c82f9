"""archlab study: the ledger at the tiny profile, the results schema, caching and its damage,
--only, determinism, model reuse across processes, data provenance, output safety."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from archlab.errors import ArchlabError
from archlab.study.claim import STATUSES, Claim, Effect, Verdict, get_claim, ledger
from archlab.study.runner import MARKER, StudyOptions, run_study, strip_timing

ALL = [c.id for c in ledger()]
SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_a68e1cf689097445.txt"


def _opts(out, **kw) -> StudyOptions:
    return StudyOptions(
        **{
            "profile": "tiny",
            "out": out,
            "progress": False,
            "offline": True,
            "threads": 1,
            "jobs": 1,
            **kw,
        }
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("study")
    return run_study(_opts(out)), out


def _comparable(res: dict) -> dict:
    res = strip_timing(copy.deepcopy(res))
    res.pop("machine")  # thread choice, versions: the run's circumstances, not its results
    return res


@pytest.mark.slow
def test_parallel_workers_give_the_same_results_as_one_process(tiny, tmp_path):
    """--jobs 2 trains Part 1's and Part 2's claims in two worker processes (one thread each)
    that fill the cache this process reads: results.json must equal the one-process run's."""
    res, _ = tiny
    par = run_study(_opts(tmp_path / "par", jobs=2))
    assert _comparable(par) == _comparable(res)
    # computed in this run (by its workers), not read from an earlier run's cache
    assert not any(c["timing"]["from_cache"] for c in par["claims"])
    assert (tmp_path / "par" / "results.json").exists()  # written once, by this process
    # the run's CPU time covers every claim's, its workers' included (the parent mostly waits)
    assert par["timing"]["cpu_s"] >= sum(c["timing"]["cpu_s"] for c in par["claims"])


def test_jobs_out_of_range_is_one_line():
    with pytest.raises(ArchlabError, match="--jobs must be in 1..64"):
        _opts(Path("unused"), jobs=0)


def test_ledger_covers_parts_1_to_5_with_every_profile():
    assert ALL == [
        "T1",
        "T2",
        "T3",
        "R1",
        "R2",
        "R3",
        "C1",
        "C2",
        "C3",
        "C4",
        "V1",
        "V2",
        "V3",
        "V4",
        "P3",
        "P4",
        "P5",
    ]
    for c in ledger():
        assert set(c.sizes) == {"tiny", "quick", "standard", "full"}
        assert c.seed_quote and callable(c.method)


@pytest.mark.skipif(not SEED_FILE.exists(), reason="the seed file is not beside the checkout")
def test_quotes_are_verbatim_from_the_seed():
    seed = " ".join(SEED_FILE.read_text().split())
    for c in ledger():
        for piece in c.seed_quote.split(" … "):  # quotes elide with " … "
            assert " ".join(piece.split()) in seed, (c.id, piece)


def test_results_schema(tiny):
    """results.json: every claim's verdict (status, label, reason), effect with its CI, checks
    with the positive control, literature; both data sources; method text from the real sizes."""
    results, out = tiny
    assert [c["id"] for c in results["claims"]] == ALL and results["not_run"] == []
    for c in results["claims"]:
        v = c["verdict"]
        assert v["status"] in STATUSES and v["label"] and v["reason"]
        e = c["effect"]
        assert set(e) >= {"name", "value", "ci95"} and len(e["ci95"]) == 2
        assert c["checks"]["positive_control"] in ("pass", "fail", "n/a")
        assert set(c["literature"]) == {"ref", "expected", "agrees"}
        if c["trains"]:
            assert c["checks"]["positive_control"] in ("pass", "fail") and len(c["seeds"]) >= 2
        assert c["method"] and "{" not in c["method"]
    img, txt = results["data"]["images"], results["data"]["text"]
    assert "Fashion-MNIST" in img["source"] and img["resolution"] == 28 and img["train"] == 12_000
    assert "Tiny Shakespeare" in txt["source"] and txt["train_chars"] == 1_003_854
    for name in ("results.json", "report.md", "report.html", MARKER):
        assert (out / name).is_file()
    assert {p.stem for p in (out / "figures").glob("*.png")} == set(ALL)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["machine"]["versions"]["torch"] == torch.__version__
    assert on_disk["machine"]["cpu_flags"]


def test_method_text_states_the_sizes_that_ran(tiny):
    c2 = next(c for c in tiny[0]["claims"] if c["id"] == "C2")
    n = c2["metrics"]["n_train"]
    assert f"first {n:,} training images" in c2["method"] and "embedded" in c2["method"]


def test_report_header_names_both_data_sources(tiny):
    _, out = tiny
    for name in ("report.md", "report.html"):
        head = (out / name).read_text()[:3000]
        assert "Tiny Shakespeare (the copy embedded in archlab)" in head
        assert "Fashion-MNIST subset embedded in archlab" in head


def test_exact_answers_at_tiny(tiny):
    m = {c["id"]: c["metrics"] for c in tiny[0]["claims"]}
    assert m["P3"]["torch_numel"] == 60_400 and m["P3"]["engine_keras"] == 60_200
    assert m["P4"]["torch_numel"] == 1_792
    assert all(r["flop_counter"] == r["formula"] for r in m["P5"]["flop_checks"])
    r2 = m["R2"]
    assert r2["inference_bytes"] == r2["inference_formula_bytes"]
    assert len(set(r2["inference_bytes"]["LSTM state"])) == 1
    assert m["T3"]["flops"] == m["T3"]["engine_flops"]
    pad = m["R1"]["padding"]
    assert max(pad[k]["packed_outputs"] for k in ("rnn", "lstm", "gru")) < 1e-5
    assert pad["gpt"]["masked_outputs"] < 1e-5 < pad["gpt"]["unmasked_outputs"]


def test_only_reruns_one_claim_and_keeps_the_rest(tiny):
    _, out = tiny
    again = run_study(_opts(out, only=["R2"], use_cache=False))
    cached = {c["id"]: c["timing"]["from_cache"] for c in again["claims"]}
    assert cached.pop("R2") is False
    assert all(cached.values()) and len(cached) == len(ALL) - 1


def test_a_second_process_reuses_the_trained_models(tiny, tmp_path):
    """Trained models are run directories: recomputing a claim loads them, it does not train."""
    from archlab.study import training

    _, out = tiny
    training.clear_memo()
    runs = sorted((out / "cache" / "runs").iterdir())
    assert runs and all((r / "model.safetensors").is_file() for r in runs)
    before = {r.name: (r / "model.safetensors").stat().st_mtime_ns for r in runs}
    run_study(_opts(out, only=["C3"], use_cache=False))
    after = {r.name: (r / "model.safetensors").stat().st_mtime_ns for r in runs}
    assert after == before  # loaded, not retrained


def test_damaged_cache_is_recomputed_with_a_notice(tiny, caplog):
    _, out = tiny
    path = next((out / "cache").glob("P4-*.json"))
    good = json.loads(path.read_text())
    for junk in ("not json {", "[1, 2]", json.dumps({**good, "metrics": {"x": 1}})):
        path.write_text(junk)
        caplog.clear()
        r = run_study(_opts(out, only=["P4"]))
        p4 = next(c for c in r["claims"] if c["id"] == "P4")
        assert p4["timing"]["from_cache"] is False and p4["verdict"]["status"] == "supported"
        assert "damaged" in caplog.text
        assert json.loads(path.read_text())["metrics"] == good["metrics"]  # rewritten whole


def test_damaged_cache_of_another_claim_does_not_break_a_run(tiny):
    _, out = tiny
    path = next((out / "cache").glob("P3-*.json"))
    path.write_text("garbage")
    r = run_study(_opts(out, only=["P4"]))
    assert "P3" in r["not_run"]  # left out this time, never a traceback


def test_only_runs_dependencies_into_an_empty_folder(tmp_path):
    r = run_study(_opts(tmp_path, only=["R3"]))
    assert [c["id"] for c in r["claims"]] == ["T1", "R3"]
    assert set(r["not_run"]) == set(ALL) - {"T1", "R3"}


def test_same_seed_same_results_except_timing(tiny, tmp_path):
    first, _ = tiny
    second = run_study(_opts(tmp_path, only=["T1", "C1", "P5"]))
    a = {c["id"]: c for c in strip_timing(copy.deepcopy(first))["claims"]}
    b = {c["id"]: c for c in strip_timing(second)["claims"]}
    for cid in ("T1", "C1", "P5"):
        assert json.dumps(a[cid], sort_keys=True) == json.dumps(b[cid], sort_keys=True), cid


def test_strip_timing_removes_timing_and_timing_verdicts():
    doc = {
        "claims": [
            {
                "timing_verdict": True,
                "verdict": {},
                "effect": {},
                "checks": {},
                "literature": {},
                "metrics": {"timing": 1, "x": 2},
            },
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
        run_study(_opts(tmp_path, only=["P4"]))
    assert (tmp_path / "thesis.tex").read_text() == "mine"
    assert not (tmp_path / "results.json").exists()


def test_bad_options():
    with pytest.raises(ArchlabError, match="profile"):
        StudyOptions(profile="huge")
    with pytest.raises(ArchlabError, match="seeds"):
        StudyOptions(seeds=0)
    with pytest.raises(ArchlabError, match="seeds"):
        StudyOptions(seeds=10**12)
    with pytest.raises(ArchlabError, match="seeds"):
        StudyOptions(profile="standard", seeds=3)  # standard needs >= 5
    with pytest.raises(ArchlabError, match="--only"):
        StudyOptions(only=[""])
    with pytest.raises(ArchlabError, match="unknown claim 'X9'"):
        get_claim("X9")
    if not torch.cuda.is_available():
        with pytest.raises(ArchlabError, match="--device cuda"):
            StudyOptions(device="cuda")
    assert StudyOptions().seeds == 3 and StudyOptions(profile="standard").seeds == 5


def test_cli_one_line_errors(cli, tmp_path):
    out = str(tmp_path / "o")
    cases = [
        ["--only", "Z1", "--out", out],
        ["--only", "", "--out", out],
        ["--seeds", "1000000000000", "--out", out],
        ["--only", "P3", "--out", "/proc/x"],
    ]
    for args in cases:
        r = cli("study", *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "notes.txt").write_text("x")
    r = cli("study", "--only", "P4", "--out", str(tmp_path / "f"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_runs_only_cheap_claims(cli, tmp_path):
    r = cli("study", "--only", "P3,P4", "--out", str(tmp_path), "--no-progress", "--offline")
    assert r.returncode == 0, r.stderr
    assert "P3" in r.stdout and "report:" in r.stdout and "images:" in r.stdout
    assert json.loads((tmp_path / "results.json").read_text())["profile"] == "quick"


def test_verdict_and_claim_validation():
    e = Effect("x", 0.1, (0.0, 0.2))
    with pytest.raises(ValueError, match="scope"):
        Verdict("supported within scope", "l", "r", e)
    with pytest.raises(ValueError, match="why_inconclusive"):
        Verdict("inconclusive", "l", "r", e)
    with pytest.raises(ValueError, match="why_inconclusive must be one of"):
        Verdict("inconclusive", "l", "r", e, why_inconclusive="bad luck")
    with pytest.raises(ValueError, match="failed positive control"):
        Verdict("supported", "l", "r", e, {"positive_control": "fail"})
    with pytest.raises(ValueError, match="outside its CI"):
        Effect("x", 1.0, (0.0, 0.5))
    v = Verdict("inconclusive", "l", "r", e, why_inconclusive="within noise")
    assert v.short == "inconclusive: within noise"
    with pytest.raises(ValueError, match="sizes"):
        Claim(**{**get_claim("P4").__dict__, "sizes": {"quick": {}}})


def test_claim_registry_is_reload_safe():
    import importlib

    import archlab.study.claims.p4_conv_params as p4

    importlib.reload(p4)
    assert [c.id for c in ledger()] == ALL
