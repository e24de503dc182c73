"""`infiller doctor`: what this machine can run, measured: llama.cpp's configuration and the sandbox."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from server.cli.common import PhaseBar, fail
from server.model.registry import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="check this machine: the fastest llama.cpp configuration that runs, the sandbox"
    )
    p.add_argument("--model", help="registry model name (default: the registry default)")
    p.add_argument("--retest", action="store_true", help="measure again instead of using the cached result")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from server.model.llamacpp import system_info
    from server.model.registry import load_registry, resolve
    from server.model.selftest import NoWorkingConfiguration, choose

    try:
        spec = load_registry().get(args.model)
        path = resolve(spec)
    except ModelError as exc:
        return fail(str(exc))
    bar = PhaseBar(enabled=sys.stderr.isatty() and not args.json)
    try:
        decision = choose(spec, path, report=bar, retest=args.retest)
    except NoWorkingConfiguration as exc:
        bar.close()
        return fail(str(exc))
    bar.close()
    sandbox_ok, sandbox_why = _sandbox()
    if args.json:
        payload = {
            **decision.as_dict(),
            "cached": decision.cached,
            "python": platform.python_version(),
            "system_info": system_info(),
            "sandbox": {"available": sandbox_ok, "detail": sandbox_why},
        }
        print(json.dumps(payload, indent=2))
        return 0
    facts = decision.machine
    print(f"machine     {facts['cpu']}, {facts['cpus']} CPUs, AMX {facts['amx']}")
    print(f"llama.cpp   llama-cpp-python {facts['llama_cpp_python']}; {system_info()}")
    state = "cached result" if decision.cached else "measured now"
    print(f"model       {decision.model} ({path})")
    print(f"self-test   ({state}; `infiller doctor --retest` measures again)")
    header = f"{'threads':>7}  {'repacking':<9}  {'prompt tok/s':>12}  {'gen tok/s':>9}  {'typical ms':>10}"
    print(f"  {header}  result")
    for trial in decision.trials:
        config = trial.config
        if trial.ok:
            row = f"{trial.prompt_tps:12.1f}  {trial.gen_tps:9.1f}  {trial.typical_ms:10.0f}  ok"
        else:
            row = f"{'-':>12}  {'-':>9}  {'-':>10}  {trial.error}"
        picked = (config.threads, config.extra_bufts) == (
            decision.config.threads,
            decision.config.extra_bufts,
        )
        chosen = "  <- chosen" if picked else ""
        print(f"  {config.threads:>7}  {'on' if config.extra_bufts else 'off':<9}  {row}{chosen}")
    chosen_config = (decision.config.threads, decision.config.extra_bufts)
    best = next(
        (t for t in decision.trials if t.ok and (t.config.threads, t.config.extra_bufts) == chosen_config),
        None,
    )
    if best is not None and best.small_batch_ratio:
        small = decision.config.small_batch
        split = f"reads of {small + 1}-{2 * small} tokens split in two" if small else "not split"
        print(f"  small reads: {best.small_batch_ratio:.1f}x the time for one more token; {split}")
    print(f"sandbox     {'available' if sandbox_ok else 'NOT available'}: {sandbox_why}")
    return 0


def _sandbox() -> tuple[bool, str]:
    try:
        from server.actions.sandbox import isolation_available
    except ImportError:
        return False, "no isolation check in this build"
    ok, why = isolation_available()
    return bool(ok), str(why)
