"""What this machine can do fast, measured once and cached: the basis of ``--precision auto``.

Why measure: CPUs differ from one machine to the next. On a Zen 4 with AVX-512 BF16 a bf16 matmul
runs ~4x faster than fp32; on a Zen 3 with AVX2 only it runs ~100x *slower* (oneDNN emulates it),
and oneDNN's bf16 LSTM does not run at all ("could not create a primitive descriptor"). A flag
list cannot be trusted to predict either, so :func:`capabilities` times the operations that
decide (a 256³ matmul in fp32 and bf16) and tries the one that can fail (a bf16 LSTM), in well
under a second, and caches the result per machine in ``~/.cache/archlab/capabilities/``.

Decisions derived from it (each recorded in a run's ``resolved_config.json``):

* :func:`resolve_precision`: ``auto`` is bf16 only where bf16 matmuls are measured at least
  :data:`BF16_MIN_SPEEDUP`× faster than fp32 (CUDA devices with bf16, CPUs with AMX or
  AVX512-BF16), else fp32. An explicit ``bf16`` is honoured; ops that cannot run in bf16 here
  (:func:`bf16_rnn_ok`) stay in fp32.
* :func:`attention_path`: the CPU kernel for attention under half-precision autocast: explicit
  bf16 matmuls around an fp32 softmax where bf16 matmuls are fast, else the fp32 fused kernel.
* :func:`physical_cores`: the default number of torch threads (hyper-threads share a core's
  vector units; more threads than cores only adds contention).

Tests force either branch by writing the cache file (:func:`cache_path`) or calling
:func:`set_capabilities`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BF16_MIN_SPEEDUP",
    "Capabilities",
    "attention_path",
    "available_memory",
    "bf16_rnn_ok",
    "cache_path",
    "capabilities",
    "cpu_flags",
    "fastest_threads",
    "physical_cores",
    "resolve_precision",
    "resolve_threads",
    "set_capabilities",
]

log = logging.getLogger(__name__)

BF16_MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this factor on the probe matmul to be chosen
PROBE_N = 256  # probe matmul side: 33.5 MFLOP, ~0.3 ms fp32 on a 2-core AVX2 CPU
FORMAT = 1  # bump when the probe changes: old cache files are then ignored
_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class Capabilities:
    """Measured facts about one device of this machine (plain data, JSON-serializable)."""

    device: str  # "cpu" or "cuda"
    name: str  # CPU model or GPU name
    flags: tuple[str, ...]  # the CPU flags that matter here (see _FLAGS_OF_INTEREST)
    fp32_gflops: float  # probe matmul, one thread (GFLOP/s, 2 FLOPs per multiply-add)
    bf16_gflops: float
    bf16_rnn: bool  # a bf16 LSTM forward runs (oneDNN has the primitive on this CPU)
    probe_s: float  # seconds the probe took
    source: str = "measured"  # "measured" | "cache" | "forced"

    @property
    def bf16_speedup(self) -> float:
        return self.bf16_gflops / self.fp32_gflops if self.fp32_gflops > 0 else 0.0

    @property
    def bf16_fast(self) -> bool:
        return self.bf16_speedup >= BF16_MIN_SPEEDUP

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flags"] = list(self.flags)
        d["bf16_speedup"] = round(self.bf16_speedup, 3)
        d["bf16_fast"] = self.bf16_fast
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capabilities:
        if not isinstance(d, dict):
            raise ValueError(f"capabilities must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["flags"] = tuple(str(f) for f in kw.get("flags", ()))
        caps = cls(**kw)  # TypeError when a field is missing
        for name in ("fp32_gflops", "bf16_gflops", "probe_s"):
            if not isinstance(getattr(caps, name), (int, float)):
                raise ValueError(f"capabilities.{name} is not a number")
        return caps


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError:
        return []


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is no such file)."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpu_name() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def available_memory() -> int:
    """Bytes this process can still allocate: the kernel's ``MemAvailable`` (free memory plus
    what it can reclaim), lowered to what an address-space limit (``ulimit -v``) leaves."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            avail = 1 << 62  # unknown: do not refuse
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status") as f:
                size = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
            avail = min(avail, max(0, soft - size))
    except (ImportError, OSError, StopIteration, ValueError):
        pass
    return avail


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (affinity), at least 1.

    From ``/proc/cpuinfo``'s (physical id, core id) pairs, so two hyper-threads of one core count
    once; without that file, the usable CPU count.
    """
    try:
        usable = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        usable = set(range(os.cpu_count() or 1))
    cores, proc, phys = set(), None, "0"
    for line in [*_cpuinfo(), ""]:
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "processor":
            proc = int(val)
        elif key == "physical id":
            phys = val
        elif key == "core id" and proc in usable:
            cores.add((phys, val))
    return max(1, len(cores) if cores else len(usable))


def resolve_threads(requested: int | None) -> int:
    """Torch intra-op threads: ``requested``, or the physical core count."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return requested
    return physical_cores()


def fastest_threads(most: int, repeats: int = 3) -> tuple[int, dict[str, float]]:
    """1 or ``most`` threads, whichever runs a small training-like workload faster *now*.

    Why: on a machine whose cores are busy with other processes, OpenMP threads that wait for a
    descheduled peer at every parallel region make small-model training several times slower
    with 2 threads than with 1 (measured here: 11.6 s vs 4.3 s for the same study experiment
    under a load of 4 on 2 cores); on a quiet machine 2 threads are ~1.7x faster. The workload
    (a small LSTM and a small conv net, forward and backward, ~50 ms on one core) is timed
    interleaved at both counts, best of ``repeats``; ``most`` wins only if it is >= 1.2x faster.
    """
    if most <= 1:
        return 1, {}
    g = torch.Generator().manual_seed(0)
    lstm = torch.nn.LSTM(128, 128, batch_first=True)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1),
    )
    xs, xi = torch.randn(32, 32, 128, generator=g), torch.randn(32, 16, 32, 32, generator=g)

    def work() -> None:
        lstm(xs)[0].sum().backward()
        conv(xi).sum().backward()

    prev = torch.get_num_threads()
    best = {1: float("inf"), most: float("inf")}
    try:
        for _ in range(repeats):
            for n in (1, most):
                torch.set_num_threads(n)
                best[n] = min(best[n], _best_seconds(work, 1, lambda: None))
            if best[most] > 3 * best[1]:  # clearly contended: do not wait for more evidence
                break
    finally:
        torch.set_num_threads(prev)
    pick = most if best[most] * 1.2 <= best[1] else 1
    return pick, {f"{n}_threads_s": round(t, 4) for n, t in best.items()}


def _device_type(device: str | torch.device) -> str:
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def _machine_key(device: str) -> str:
    flags = sorted(cpu_flags())
    name = _cpu_name() if device == "cpu" else torch.cuda.get_device_name(0)
    blob = json.dumps([FORMAT, device, name, flags, torch.__version__])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(device: str = "cpu") -> Path:
    """Where the probe result of ``device`` on this machine is cached."""
    dev = _device_type(device)
    return Path.home() / ".cache" / "archlab" / "capabilities" / f"{dev}-{_machine_key(dev)}.json"


def _best_seconds(fn, repeats: int, sync) -> float:
    fn()  # warm-up: packing, allocation, kernel selection
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _probe(device: str) -> Capabilities:
    t0 = time.perf_counter()
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    g = torch.Generator().manual_seed(0)
    a = torch.randn(PROBE_N, PROBE_N, generator=g).to(dev)
    b = torch.randn(PROBE_N, PROBE_N, generator=g).to(dev)
    flops = 2.0 * PROBE_N**3
    # One thread, fp32 and bf16 interleaved, best of each: the *ratio* is what decides, and on a
    # busy machine spinning OpenMP threads distort absolute times far more than one thread does.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ab, bb = a.bfloat16(), b.bfloat16()
        t32 = t16 = float("inf")
        for _ in range(3):
            t32 = min(t32, _best_seconds(lambda: a @ b, 3, sync))
            try:
                t16 = min(t16, _best_seconds(lambda: ab @ bb, 1, sync))
            except RuntimeError:  # no bf16 matmul at all on this device
                break
    finally:
        torch.set_num_threads(threads)
    bf16_gflops = flops / t16 / 1e9 if t16 < float("inf") else 0.0
    bf16_rnn = True
    if dev.type == "cpu":
        try:
            lstm = torch.nn.LSTM(8, 8, batch_first=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lstm(torch.randn(2, 3, 8))
        except RuntimeError:  # oneDNN: "could not create a primitive descriptor ..."
            bf16_rnn = False
    name = _cpu_name() if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    flags = cpu_flags()
    return Capabilities(
        device=dev.type,
        name=name,
        flags=tuple(f for f in _FLAGS_OF_INTEREST if f in flags),
        fp32_gflops=round(flops / t32 / 1e9, 2),
        bf16_gflops=round(bf16_gflops, 2),
        bf16_rnn=bf16_rnn,
        probe_s=round(time.perf_counter() - t0, 3),
    )


_CURRENT: dict[str, Capabilities] = {}


def set_capabilities(caps: Capabilities | None, device: str = "cpu") -> None:
    """Use ``caps`` for ``device`` in this process (tests force a branch); None forgets it."""
    dev = _device_type(device)
    if caps is None:
        _CURRENT.pop(dev, None)
    else:
        _CURRENT[dev] = dataclasses.replace(caps, device=dev, source="forced")
    bf16_rnn_ok.cache_clear()


def capabilities(device: str | torch.device = "cpu") -> Capabilities:
    """The measured capabilities of ``device`` (``cpu``, ``cuda``, ``auto``): from this process,
    else the machine's cache file, else a fresh probe (< 1 s) written to the cache."""
    dev = _device_type(device)
    if dev in _CURRENT:
        return _CURRENT[dev]
    path = cache_path(dev)
    try:
        caps = dataclasses.replace(
            Capabilities.from_dict(json.loads(path.read_text(encoding="utf-8"))), source="cache"
        )
    except (OSError, ValueError, TypeError, KeyError, RecursionError):  # absent or damaged
        caps = _probe(dev)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(caps.to_dict(), indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:  # a read-only home: fine, the answer is still right
            log.debug("cannot cache capabilities in %s: %s", path, e)
    _CURRENT[dev] = caps
    return caps


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> tuple[str, str]:
    """``(fp32 | bf16, why)`` for a requested ``auto | fp32 | bf16`` on ``device``."""
    if requested not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {requested!r}")
    if requested != "auto":
        return requested, "requested"
    caps = capabilities(device)
    verdict = "bf16" if caps.bf16_fast else "fp32"
    why = (
        f"bf16 matmul measured {caps.bf16_speedup:.2f}x fp32 on {caps.name} "
        f"({caps.bf16_gflops:g} vs {caps.fp32_gflops:g} GFLOP/s; bf16 needs >= "
        f"{BF16_MIN_SPEEDUP}x)"
    )
    return verdict, why


@functools.cache
def bf16_rnn_ok(device_type: str = "cpu") -> bool:
    """Whether the fused recurrent kernels (LSTM/GRU/RNN) run in bf16 on ``device_type``.

    On the CPU this needs oneDNN's bf16 primitives (AVX-512 and newer); on an AVX2-only CPU a
    bf16 LSTM raises, so the RNN language models keep their recurrent core in fp32 there.
    """
    if device_type != "cpu":
        return True
    if "cpu" in _CURRENT:
        return _CURRENT["cpu"].bf16_rnn
    try:
        lstm = torch.nn.LSTM(4, 4, batch_first=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.randn(1, 2, 4))
        return True
    except RuntimeError:
        return False


def attention_path(dtype: torch.dtype, device_type: str) -> str:
    """The attention kernel for ``dtype`` inputs on ``device_type``: ``"explicit"`` (bf16 matmuls
    around an fp32 softmax; short sequences only) or ``"sdpa"`` (the fused kernel, in fp32 on the
    CPU for half inputs). Explicit wins only where bf16 matmuls are fast (see layers.attention)."""
    if device_type != "cpu" or dtype not in (torch.bfloat16, torch.float16):
        return "sdpa"
    return "explicit" if capabilities("cpu").bf16_fast else "sdpa"
