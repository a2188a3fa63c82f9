"""Fashion-MNIST: the README's commands, cnn >= 93.0% test accuracy in 120 s, vit >= 91.0% in 600 s.

Issue 13, item 5. Each row runs exactly what a user types — ``archlab train image --arch A
--data fashion-mnist --out RUN`` (the recipe for A on Fashion-MNIST: ``cnn-fmnist`` 120 s,
``vit-fmnist`` 600 s, ``mlp-100`` 30 s; precision auto, threads = physical cores) — then
``archlab eval RUN --split test --json`` on the 10,000 official test images. The JSON records the
command, the resolved recipe with each value's origin, what ``auto`` chose and why, the machine
(CPU model and flags) and the load average when each run started.

Trials of other ViT recipes (shapes, SPT/LSA, a conv stem, distillation) that led to the
recipes are kept in ``image_fmnist_trials.py`` and ``results/image_fmnist.json``'s history.

Run: ``PYTHONPATH=src python benchmarks/image_fmnist.py [--data-root ../shared/data]
[--models cnn,vit,mlp]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_average, machine_record, run_cli, set_data_root, write_result

TARGETS = {"cnn": 0.930, "vit": 0.910, "mlp": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", help="folder with fashion-mnist/ (default $ARCHLAB_DATA)")
    ap.add_argument("--models", default="cnn,vit,mlp")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/image_fmnist_cli.json)")
    args = ap.parse_args()
    data_root = set_data_root(args.data_root)
    from archlab.hardware import capabilities, physical_cores

    machine = machine_record(physical_cores())
    print(f"machine: {machine['cpu']}, flags {machine['cpu_flags'][:80]}…")
    out = Path(args.out) if args.out else RESULTS / "image_fmnist_cli.json"
    rows = json.loads(out.read_text()).get("rows", {}) if out.exists() else {}
    for arch in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            cmd = [
                "train",
                "image",
                "--arch",
                arch,
                "--data",
                "fashion-mnist",
                "--out",
                str(run),
                "--no-progress",
                "--json",
            ]
            load = load_average()
            trained = json.loads(run_cli(cmd, timeout=3600)["stdout"].strip().splitlines()[-1])
            test = json.loads(run_cli(["eval", str(run), "--split", "test", "--json"])["stdout"])
            rc = json.loads((run / "resolved_config.json").read_text())
        acc = test["accuracy"]
        target = TARGETS.get(arch)
        met = None if target is None else acc >= target
        n_train = rc["data"]["train"]
        rows[arch] = {
            "command": f"archlab train image --arch {arch} --data fashion-mnist --out RUN",
            "recipe": rc["recipe"],
            "budget_s": rc["train"]["max_time"],
            "precision": rc["train"]["precision"],
            "precision_why": rc["hardware"]["precision"]["why"],
            "threads": rc["train"]["threads"],
            "load_average_at_start": load,
            "steps": trained["step"],
            "train_s": round(trained["elapsed_s"], 1),
            "images_per_s": round(trained["units_per_s"], 1),
            "epochs": round(trained["step"] * rc["train"]["batch_size"] / n_train, 2),
            "test_accuracy": acc,
            "target": target,
            "target_met": met,
            "origins": rc["origins"],
        }
        print(
            f"{arch}: {acc:.2%} test in {trained['elapsed_s']:.0f} s "
            f"({rows[arch]['epochs']} epochs, {trained['units_per_s']:,.0f} img/s, "
            f"{rc['train']['precision']})"
            + ("" if met is None else f" -> {'MET' if met else 'NOT MET'} (target {target:.1%})")
        )
    write_result(
        "image_fmnist_cli",
        {
            "benchmark": "Fashion-MNIST, the README's commands",
            "machine": {**machine, "capabilities": capabilities().to_dict()},
            "data_root": data_root,
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
