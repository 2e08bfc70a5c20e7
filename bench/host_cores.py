"""How much a core of this host slows down while the other cores are busy too.

Run by hand from the repository root (not part of the test suite):

    .venv/bin/python bench/host_cores.py
    .venv/bin/python bench/host_cores.py --rounds 20 --processes 2
    .venv/bin/python bench/host_cores.py --rounds 20 --working-set-mb 64

The same CPU-bound Python loop (no I/O, no shared memory, no locks) runs in one
process, then in ``--processes`` processes at once, alternated ``--rounds``
times. Each process reports the CPU seconds the loop took. On a machine whose
cores are its own the loop takes as long either way; on a virtual machine whose
cores share the host's with their neighbours, or are hyper-threads of one core,
it takes longer when every core is busy.

That factor is part of what more worker processes lose in ``digest_scale.py``:
there a round's ratio is the cores the two runs kept busy times their CPU per
reader, and on average the second factor does no better than this loop. Prints
one line per round and ends with one line:
``RESULT processes=P rounds=K working_set_mb=W one_cpu_seconds=A many_cpu_seconds=B slowdown=X``.
"""

import argparse
import multiprocessing
import statistics
import time


def spin(iterations, working_set_mb, results):
    """A fixed amount of interpreter work: integer arithmetic and a small dict, as Python code does.

    With a working set, each step also joins two of its 1 KB strings, picked all over it, into a
    new one, as assembling a digest from the edition's rendered blocks does: the loop then
    reads memory beyond the core's own caches, which the cores share."""
    pool = [f"{n:08d}".ljust(1024, "x") for n in range(working_set_mb * 1024)]
    started = time.process_time()
    table, total = {}, 0
    for i in range(iterations):
        total += i * i % 7
        table[i & 1023] = total
        if pool:
            j = (i * 2654435761) % len(pool)
            table[i & 1023] = len("".join((pool[j], pool[-j])))
    results.put(time.process_time() - started)


def cpu_seconds_side_by_side(processes, iterations, working_set_mb):
    """The CPU seconds the loop took in each of ``processes`` processes started together."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    workers = [ctx.Process(target=spin, args=(iterations, working_set_mb, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    seconds = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--processes", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--iterations", type=int, default=20_000_000, help="loop length (about 2 s on one core)")
    parser.add_argument("--working-set-mb", type=int, default=0,
                        help="strings each process reads all over, in MB (0: none; the L3 cache is shared)")
    args = parser.parse_args(argv)

    alone, together, factors = [], [], []
    for number in range(1, args.rounds + 1):
        one = cpu_seconds_side_by_side(1, args.iterations, args.working_set_mb)[0]
        many = statistics.mean(cpu_seconds_side_by_side(args.processes, args.iterations, args.working_set_mb))
        alone.append(one)
        together.append(many)
        factors.append(many / one)
        print(f"ROUND {number} one_cpu_seconds={one:.2f} many_cpu_seconds={many:.2f} slowdown={many / one:.3f}",
              flush=True)
    print(f"   slowdown per round: {min(factors):.3f}-{max(factors):.3f}, {sum(f > 1 for f in factors)} of "
          f"{len(factors)} rounds slower with {args.processes} processes")
    print(f"RESULT processes={args.processes} rounds={args.rounds} working_set_mb={args.working_set_mb} "
          f"one_cpu_seconds={statistics.median(alone):.2f} "
          f"many_cpu_seconds={statistics.median(together):.2f} slowdown={statistics.median(factors):.3f}")


if __name__ == "__main__":
    main()
