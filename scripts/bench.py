#!/usr/bin/env python3
"""Benchmarks for opsctl: plan and apply of synthetic procedures of `noop` steps.

Each procedure has N steps in chains of 10 (every step depends on the one before it, except
every tenth, which starts a new chain). Prints wall time of `opsctl plan`, of
`opsctl apply --auto-approve` (with its durable journal), and peak memory (max RSS) of each;
then, for the 5,000-step procedure, `opsctl plan --out FILE`, `opsctl show --json FILE` and the
saved plan's size in bytes.

    scripts/bench.py [--opsctl PATH] [--sizes 1000,5000,10000] [--repeat 3]
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def generate(dirname: str, n: int) -> None:
    lines = []
    for i in range(n):
        if i % 10 == 0:
            lines.append(f'step "noop" "s{i}" {{}}\n')
        else:
            lines.append(f'step "noop" "s{i}" {{\n  depends_on = [step.noop.s{i - 1}]\n}}\n')
    with open(os.path.join(dirname, "main.hcl"), "w") as f:
        f.write("".join(lines))


def run(cmd, cwd):
    """Runs cmd; returns (seconds, max RSS in MiB of this child)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execv(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed ({status}): {' '.join(cmd)} in {cwd}")
    return elapsed, usage.ru_maxrss / 1024.0


def saved_plan_figures(opsctl: str, repeat: int, n: int = 5000) -> None:
    """Saved plans: `plan --out` and `show --json` of the n-step procedure, and the file size."""
    work = tempfile.mkdtemp(prefix=f"opsctl-bench-saved-{n}-")
    try:
        generate(work, n)
        outs, shows = [], []
        for _ in range(repeat):
            outs.append(run([opsctl, "plan", "--out", "plan.json"], work))
            shows.append(run([opsctl, "show", "--json", "plan.json"], work))
        size = os.path.getsize(os.path.join(work, "plan.json"))
        print(
            f"saved plan, {n} steps: plan --out {min(o[0] for o in outs):.3f} s "
            f"({max(o[1] for o in outs):.1f} MiB), show --json {min(s[0] for s in shows):.3f} s "
            f"({max(s[1] for s in shows):.1f} MiB), file {size} bytes"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/opsctl/target"))
    ap.add_argument("--opsctl", default=os.path.join(target, "release", "opsctl"))
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(args.opsctl):
        sys.exit(f"{args.opsctl} not found: build with `cargo build --release` first")
    print(f"opsctl: {args.opsctl}")
    print(f"{'steps':>6} {'plan s':>8} {'plan MiB':>9} {'apply s':>8} {'apply MiB':>10} {'us/step':>8}")
    results = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        work = tempfile.mkdtemp(prefix=f"opsctl-bench-{n}-")
        try:
            generate(work, n)
            plans, applies = [], []
            for r in range(args.repeat):
                plans.append(run([args.opsctl, "plan"], work))
                state = os.path.join(work, f"state-{r}")
                applies.append(run([args.opsctl, "apply", "--auto-approve", "--state-dir", state], work))
            plan_s = min(p[0] for p in plans)
            plan_m = max(p[1] for p in plans)
            apply_s = min(a[0] for a in applies)
            apply_m = max(a[1] for a in applies)
            results[n] = (plan_s, apply_s)
            print(f"{n:>6} {plan_s:>8.3f} {plan_m:>9.1f} {apply_s:>8.3f} {apply_m:>10.1f} {apply_s / n * 1e6:>8.0f}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    saved_plan_figures(args.opsctl, args.repeat)
    if 5000 in results and 10000 in results:
        p5, a5 = results[5000]
        p10, a10 = results[10000]
        print(f"scaling 10000/5000: plan {p10 / p5:.2f}x, apply {a10 / a5:.2f}x")


if __name__ == "__main__":
    main()
