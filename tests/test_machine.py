import json

import torch

from archlab.machine import describe_machine, measure_matmul_peak


def test_describe_machine_is_json_and_names_versions():
    d = json.loads(json.dumps(describe_machine()))
    assert d["torch"] == torch.__version__
    assert d["cpu_count"] >= 1 and d["cpu"]


def test_matmul_peak_is_a_plausible_rate():
    # 2*n^3 FLOPs in at least a nanosecond and at most a few seconds: a rate between 1e6 and 1e16.
    r = measure_matmul_peak(torch.float32, n=64, seconds=0.01)
    assert 1e6 < r < 1e16
