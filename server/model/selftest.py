"""Which llama.cpp configuration runs on this machine, and which is fastest: measured, then cached.

Machines differ in ways no flag reveals. On VMs whose CPU advertises AMX but whose kernel does
not enable the tile state, llama.cpp's extra buffer types crash the process on its first decode;
elsewhere the same weight repacking is a speed-up, or a slow-down (prompt reading was up to 1.4x
faster with it off on one such VM). So the first use of a model on a machine runs each candidate
configuration in its own throwaway model process (a crash costs that process, nothing else),
measures prompt reading and generation speed, and keeps the fastest that ran. The decision is
cached per machine, llama-cpp-python build and model file; `infiller doctor` shows it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from server.model.llamacpp import EngineConfig
from server.model.process import SMALL_BATCH, ModelProcess, ModelProcessDied
from server.model.registry import ModelSpec
from server.model.runtime import model_threads

log = logging.getLogger(__name__)

# Bump when the measurement or the decision rule changes: old decisions are then re-measured.
CACHE_VERSION = 3
# A short prompt and a few tokens: enough for a stable rate, cheap enough for first use
# (about 4 s per configuration for the 1.5B on 2 cores, 4 configurations).
BENCH_PROMPT_TOKENS = 128
BENCH_GEN_TOKENS = 12
# What a typical completion costs: the new prompt tokens of a keystroke's request and the
# generated line. The configuration with the least time for this work wins.
TYPICAL_PROMPT_TOKENS = 256
TYPICAL_GEN_TOKENS = 24

# Reads just over SMALL_BATCH tokens are split (EngineConfig.small_batch) when one costs this many
# times a read of SMALL_BATCH: two half batches then cost about 1.2x one of SMALL_BATCH.
SMALL_BATCH_SPLIT_RATIO = 1.5

Report = Callable[[str, int, int], None]
"""report(phase, done, total), as registry.ProgressFn."""


@dataclass(frozen=True)
class Trial:
    config: EngineConfig
    ok: bool
    prompt_tps: float = 0.0
    gen_tps: float = 0.0
    error: str = ""
    # A read of SMALL_BATCH + 1 tokens over one of SMALL_BATCH (0: not measured).
    small_batch_ratio: float = 0.0

    @property
    def typical_ms(self) -> float:
        """Estimated milliseconds for a typical completion in this configuration."""
        if not self.ok or self.prompt_tps <= 0 or self.gen_tps <= 0:
            return float("inf")
        return 1000 * (TYPICAL_PROMPT_TOKENS / self.prompt_tps + TYPICAL_GEN_TOKENS / self.gen_tps)


@dataclass
class Decision:
    model: str
    config: EngineConfig
    trials: list[Trial] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            model=data["model"],
            config=EngineConfig(**data["config"]),
            trials=[Trial(**{**t, "config": EngineConfig(**t["config"])}) for t in data["trials"]],
            machine=dict(data["machine"]),
            cached=True,
        )


class NoWorkingConfiguration(RuntimeError):
    """llama.cpp crashed or failed in every configuration tried."""


def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, str]:
    """What the decision depends on: the CPU, its feature flags, the cores and the llama.cpp build."""
    import llama_cpp

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpus": str(os.cpu_count() or 1),
        "amx": "advertised" if {"amx_tile", "amx_int8"} & flags else "not advertised",
        "flags": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
        "llama_cpp_python": str(getattr(llama_cpp, "__version__", "?")),
        "llama_cpp_build": _file_stamp(Path(llama_cpp.__file__).parent),
    }


def _file_stamp(folder: Path) -> str:
    # A rebuilt llama.cpp (other flags, other CPU) is another build: its shared library changed.
    parts = []
    for lib in sorted(folder.glob("lib/*.so*")) + sorted(folder.glob("lib/*.dylib")):
        stat = lib.stat()
        parts.append(f"{lib.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def candidates(cpus: int | None = None) -> list[EngineConfig]:
    """Thread counts (one fewer than the CPUs, and all of them) x weight repacking on and off.

    Repacking on comes first for each thread count: if it crashes, that is known before the
    other configurations are measured, and its twin is skipped.
    """
    cpus = cpus or os.cpu_count() or 1
    threads = sorted({model_threads(0, cpus), max(1, min(cpus, 8))})
    return [EngineConfig(threads=t, extra_bufts=b) for t in threads for b in (True, False)]


def _cache_file(spec: ModelSpec, facts: dict[str, str]) -> Path:
    key = hashlib.sha256(
        json.dumps({"v": CACHE_VERSION, "sha": spec.sha256, **facts}, sort_keys=True).encode()
    ).hexdigest()[:20]
    base = os.environ.get("INFILLER_CACHE_DIR") or platformdirs.user_cache_dir("infiller")
    return Path(base) / "runtime" / f"{spec.name}-{key}.json"


def run_trial(path: Path, family: str, config: EngineConfig) -> Trial:
    """Load the model in a throwaway process with `config` and measure it; a crash is a result."""
    try:
        process = ModelProcess(path, family, config, n_ctx=BENCH_PROMPT_TOKENS + BENCH_GEN_TOKENS + 64)
    except ModelProcessDied as exc:
        return Trial(config, ok=False, error=str(exc))
    except Exception as exc:
        return Trial(config, ok=False, error=f"{type(exc).__name__}: {exc}")
    try:
        speeds = process.call(("bench", BENCH_PROMPT_TOKENS, BENCH_GEN_TOKENS))
        return Trial(
            config,
            ok=True,
            prompt_tps=speeds["prompt_tps"],
            gen_tps=speeds["gen_tps"],
            small_batch_ratio=speeds.get("small_batch_ratio", 0.0),
        )
    except ModelProcessDied as exc:
        return Trial(config, ok=False, error=str(exc))
    except Exception as exc:
        return Trial(config, ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        process.close()


def measure(spec: ModelSpec, path: Path, report: Report | None = None) -> Decision:
    """Try every candidate configuration and choose the fastest that ran."""
    configs = candidates()
    trials: list[Trial] = []
    crashed_repacking = False
    for i, config in enumerate(configs):
        if report is not None:
            report("self-test", i, len(configs))
        if config.extra_bufts and crashed_repacking:
            trials.append(Trial(config, ok=False, error="skipped: repacking crashed with fewer threads"))
            continue
        trial = run_trial(path, spec.family, config)
        if not trial.ok and config.extra_bufts:
            crashed_repacking = True
        log.info("self-test %s %s: %s", spec.name, config.describe(), trial)
        trials.append(trial)
    if report is not None:
        report("self-test", len(configs), len(configs))
    working = [t for t in trials if t.ok]
    if not working:
        errors = "; ".join(f"{t.config.describe()}: {t.error}" for t in trials)
        raise NoWorkingConfiguration(
            f"llama.cpp could not run {spec.name} on this machine in any configuration ({errors}). "
            "If llama-cpp-python was built on another machine, rebuild it here: "
            "pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python"
        )
    best = min(working, key=lambda t: t.typical_ms)
    split = SMALL_BATCH if best.small_batch_ratio > SMALL_BATCH_SPLIT_RATIO else 0
    config = dataclasses.replace(best.config, small_batch=split)
    return Decision(model=spec.name, config=config, trials=trials, machine=machine_facts())


def choose(spec: ModelSpec, path: Path, *, report: Report | None = None, retest: bool = False) -> Decision:
    """The cached decision for this model on this machine, measuring it on first use (or retest)."""
    facts = machine_facts()
    cache = _cache_file(spec, facts)
    if not retest and cache.exists():
        try:
            return Decision.from_dict(json.loads(cache.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable self-test cache %s: %s", cache, exc)
    decision = measure(spec, path, report)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(decision.as_dict(), indent=1))
        tmp.replace(cache)
    except OSError as exc:
        log.warning("could not cache the self-test in %s: %s", cache, exc)
    return decision


def configure(
    spec: ModelSpec, path: Path, *, threads: int | None = None, report: Report | None = None
) -> EngineConfig:
    """The configuration to run: the self-test's choice, with the user's thread count if set."""
    config = choose(spec, path, report=report).config
    if threads and threads > 0 and threads != config.threads:
        config = dataclasses.replace(config, threads=threads)
    return config
