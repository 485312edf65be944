"""Fair under load: 03's distillation step alone and as two processes at once, with the workbench's core sharing
(``workbench.core.threads.CoreShare``, the default) and without it (``WORKBENCH_SHARE_CORES=0``: a fixed thread
count, what every process did before; ``--policy`` for another setting, e.g. ``OMP_WAIT_POLICY=PASSIVE``).

Four worker processes start first and stay up, so start-up is never timed: A and B without sharing, A' and B'
with the workbench's default (nothing set: ``import workbench`` installs the sharing, the path every workbench
process takes). Each round then times, in this order, A alone, A' alone, A and B at once, A' and B' at once: the
variants alternate, so a change in the machine's other load hits both alike. Each measurement is ``--steps``
training steps after one untimed step, a pause of ``PAUSE_S`` first (a trainer's claim on its share of the cores
runs out within 2 s of its last step, so a measurement alone is alone); a pair starts both on the same signal.
Prints every time, the thread counts each worker ran with, then per variant the median over rounds of

- pair / alone: each of the pair's time over the same worker's time alone (fair sharing of the cores: 2x;
  target with sharing: at most 2.2x);
- alone with sharing / alone without (target: within 5 %),

with the spin count libgomp read in each worker (``OMP_DISPLAY_ENV=VERBOSE``), the CPU model and ``uptime``.

    python benchmarks/contention.py [--rounds 2] [--steps 20]
    python benchmarks/contention.py --policy OMP_WAIT_POLICY=PASSIVE   # another "with" setting against the fixed one
    # another configuration (the options of benchmarks/distill_step.py)
    python benchmarks/contention.py --student vit_small_patch16_224 --image-size 224 --batch 32 --steps 3
"""
# first: the workers' own policy comes from importing workbench before torch loads (workbench/core/threads.py)
import workbench  # noqa: F401

# isort: split
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from distill_step import build_step

# a fixed thread count and libgomp's own spin count, explicit: the workbench leaves a user's choice alone
DEFAULT = {"WORKBENCH_SHARE_CORES": "0", "GOMP_SPINCOUNT": "300000"}
VARIANTS = {"fixed threads": DEFAULT, "shared cores": {}}
PAUSE_S = 3.0  # longer than a trainer's claim on its share (CoreShare.busy_s) lasts after its last step


def worker(args) -> None:
    """A worker process: build the step, warm it up, then each time it reads "go", one step untimed and
    ``--steps`` timed."""
    step, _ = build_step(args, "step", fused=True, precision="fp32")
    step(0)
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    i = 1
    for line in sys.stdin:
        if line.strip() != "go":
            break
        step(i)  # untimed: caches and pages back after the idle wait (the first step after one is slower)
        i += 1
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step(i)
            i += 1
        print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                          "threads": torch.get_num_threads()}), flush=True)


class Worker:
    def __init__(self, args, extra_env: dict[str, str]):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "WORKBENCH_SHARE_CORES")}
        env.update(extra_env, OMP_DISPLAY_ENV="VERBOSE")
        cmd = [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--batch", str(args.batch),
               "--student", args.student, "--teachers", args.teachers, "--ladder", args.ladder,
               "--image-size", str(args.image_size), "--device", args.device]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a worker failed:\n{self.proc.communicate()[1][-3000:]}")
        return json.loads(line)

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> str:
        """End the worker; the spin count its libgomp read."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        err = self.proc.communicate()[1]
        found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", err)
        return found.group(1) if found else "?"


def timed(workers: list[Worker]) -> tuple[list[float], list[int]]:
    """After the pause, start every worker's steps on one signal; each one's wall time and thread count at the end."""
    time.sleep(PAUSE_S)
    for w in workers:
        w.go()
    done = [w.read() for w in workers]
    return [d["wall_s"] for d in done], [d["threads"] for d in done]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the four measurements (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement (default 20)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--student", default="wb_vitc_tiny_patch8_32")
    parser.add_argument("--teachers", default="world_colour,world_shape")
    parser.add_argument("--ladder", default="all")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="", help="the 'shared cores' workers' environment instead of the "
                        "workbench's default, e.g. OMP_WAIT_POLICY=PASSIVE (comma-separated KEY=VALUE)")
    args = parser.parse_args()
    if args.policy:
        VARIANTS["shared cores"] = dict(kv.split("=", 1) for kv in args.policy.split(","))
    if args.worker:
        worker(args)
        return

    print(f"cpu        {cpu_model()}, {os.cpu_count()} cores, {len(os.sched_getaffinity(0))} usable")
    print(f"config     03's default step: student {args.student}, teachers {args.teachers}, batch {args.batch}, "
          f"{args.image_size} px, ladder {args.ladder}; {args.steps} steps per measurement, {args.rounds} rounds")
    print(f"variants   shared cores: {VARIANTS['shared cores'] or 'the workbench default'}; fixed threads: {DEFAULT}")
    print(f"before     {uptime()}")
    workers = {name: (Worker(args, env), Worker(args, env)) for name, env in VARIANTS.items()}
    for pair in workers.values():  # each one ready (built and warmed up)
        for w in pair:
            w.read()
    alone = {name: [] for name in VARIANTS}
    ratios = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, pair in workers.items():
            (t,), (n,) = timed([pair[0]])
            alone[name].append(t)
            print(f"round {r + 1}  {name:14s} alone   {t:7.2f} s   {n} threads")
        for name, pair in workers.items():
            times, ns = timed(list(pair))
            ratios[name] += [t / alone[name][-1] for t in times]
            print(f"round {r + 1}  {name:14s} pair    {times[0]:7.2f} s  {times[1]:7.2f} s   "
                  f"{max(times) / alone[name][-1]:.2f}x alone   {ns} threads   "
                  f"({uptime().split('load average: ')[-1]})")
    spins = {name: [w.close() for w in pair] for name, pair in workers.items()}

    print()
    for name in VARIANTS:
        print(f"{name:14s} libgomp spin count {spins[name]}: alone {statistics.median(alone[name]):.2f} s, "
              f"pair / alone {statistics.median(ratios[name]):.2f}x (worst {max(ratios[name]):.2f}x; fair sharing 2x, "
              "target with sharing <= 2.2x)")
    ratio = [w / o for w, o in zip(alone["shared cores"], alone["fixed threads"])]
    print(f"alone, shared / fixed: best {min(alone['shared cores']) / min(alone['fixed threads']):.3f}, "
          f"median of rounds {statistics.median(ratio):.3f}  (rounds: " + ", ".join(f"{x:.3f}" for x in ratio)
          + "; target within 5 %: the best of each is the least disturbed by other jobs)")
    print(f"after      {uptime()}")


if __name__ == "__main__":
    main()
