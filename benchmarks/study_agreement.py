"""Quick vs standard: no verdict of the quick profile may be contradicted by the standard one.

The rule (issue 12, item 6): for every claim, the quick profile either gives the same status as
the standard profile or says "inconclusive" (it may decide less, never decide differently). A
quick "supported" against a standard "supported within scope" is a disagreement too: the quick
verdict claimed more than the standard run found.

Run (after both profiles):

    archlab study --profile quick --out study-quick
    archlab study --profile standard --out study-standard
    PYTHONPATH=src python benchmarks/study_agreement.py study-quick study-standard

Prints the verdict table (markdown, for the README) and exits 1 on a disagreement. With
``--write`` it also stores the table in ``benchmarks/results/study_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(folder: Path) -> dict:
    return json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))


def compare(quick: dict, standard: dict) -> list[dict]:
    q = {c["id"]: c for c in quick["claims"]}
    s = {c["id"]: c for c in standard["claims"]}
    rows = []
    for cid in s:
        qs = q[cid]["verdict"]["short"] if cid in q else "not run"
        ss = s[cid]["verdict"]["short"]
        ok = qs == ss or qs.startswith("inconclusive") or qs == "not run"
        rows.append(
            {"id": cid, "title": s[cid]["title"], "quick": qs, "standard": ss, "agrees": ok}
        )
    return rows


def wall_s(folder: Path, results: dict) -> float:
    """The run's wall time: RUN.json's ``wall_s`` where the folder has one (a run whose report was
    rebuilt afterwards by an ``--only`` rerun, which times only itself), else results.json's."""
    run = Path(folder) / "RUN.json"
    if run.is_file():
        rec = json.loads(run.read_text(encoding="utf-8"))
        if isinstance(rec.get("wall_s"), (int, float)):
            return float(rec["wall_s"])
    return float(results["timing"]["elapsed_s"])


def table(rows: list[dict], quick_s: float, standard_s: float) -> str:
    out = [
        f"| claim | quick ({quick_s / 60:.1f} min) | standard ({standard_s / 60:.1f} min) |",
        "|---|---|---|",
    ]
    for r in rows:
        mark = "" if r["agrees"] else " **(disagrees)**"
        out.append(f"| {r['id']} {r['title']} | {r['quick']} | {r['standard']}{mark} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("quick", type=Path, help="folder of a quick-profile study")
    ap.add_argument("standard", type=Path, help="folder of a standard-profile study")
    ap.add_argument("--write", action="store_true", help="store the comparison in results/")
    args = ap.parse_args()
    quick, standard = load(args.quick), load(args.standard)
    if quick["profile"] != "quick" or standard["profile"] != "standard":
        print("expected a quick and a standard results.json", file=sys.stderr)
        return 2
    rows = compare(quick, standard)
    q_s, s_s = wall_s(args.quick, quick), wall_s(args.standard, standard)
    print(table(rows, q_s, s_s))
    bad = [r["id"] for r in rows if not r["agrees"]]
    if args.write:
        RESULTS.mkdir(exist_ok=True)
        rec = {
            "rows": rows,
            "disagreements": bad,
            "quick_s": q_s,
            "standard_s": s_s,
            "machine": standard["machine"],
        }
        (RESULTS / "study_agreement.json").write_text(json.dumps(rec, indent=1) + "\n")
    print(f"\n{len(rows) - len(bad)}/{len(rows)} agree" + (f"; disagree: {bad}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
