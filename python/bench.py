"""Throughput of the Python module against the store's own iterator and against JSON.

    python python/bench.py [--events 1000000] [--payload 64] [--runs 3]

Writes a log of N events of P-byte payloads to a temporary directory, then times, best
of R runs each, in this one process:

- the store's verified iterator (checksums and order checked, each payload touched),
  through `evstream._count_verified`: Rust only, no Python object per event;
- `LogReader.to_arrow()`: the same verified iteration building the Arrow buffers, plus
  the hand-over to pyarrow; a log of more than 262,144 events is split by time between
  up to 4 threads (one a core), so its CPU time is printed beside the wall time;
- iterating `Event` objects from Python (`for e in reader: e.payload`);
- `json.loads` of each line of `evstream cat --format jsonl` of the same log (the CLI's
  output is read once beforehand and not timed; its time is reported on its own line).

The targets: `to_arrow` at least 0.5x the verified iterator's events/s; `Event`
iteration at least 2x `json.loads`. The CLI is `$EVSTREAM_BIN`, or `evstream` on PATH.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow

import evstream


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best(runs, fn):
    """The fastest of `runs` calls: (wall seconds, CPU seconds of all threads, result)."""
    times = []
    result = None
    for _ in range(runs):
        cpu = cpu_seconds()
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start, cpu_seconds() - cpu))
    wall, cpu = min(times)
    return wall, cpu, result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()

    cli = os.environ.get("EVSTREAM_BIN") or shutil.which("evstream")
    if not cli:
        print("bench: set EVSTREAM_BIN to the evstream binary (or put it on PATH)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="evstream-bench-") as tmp:
        path = os.path.join(tmp, "log")
        payload = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_" * 8)[: args.payload]
        base = 1_700_000_000_000_000_000
        with evstream.LogWriter.create(path, segment_size=64 << 20) as writer:
            for i in range(args.events):
                writer.append(base + i, payload)
        n = args.events

        rust_s, rust_cpu, counted = best(args.runs, lambda: evstream._count_verified(path))
        assert counted == n, counted
        reader = evstream.LogReader.open(path)
        arrow_s, arrow_cpu, table = best(args.runs, reader.to_arrow)
        assert table.num_rows == n

        def iterate():
            count = 0
            for event in reader:
                event.payload
                count += 1
            return count

        events_s, events_cpu, counted = best(args.runs, iterate)
        assert counted == n

        start = time.perf_counter()
        out = subprocess.run([cli, "cat", path, "--format", "jsonl"], check=True, stdout=subprocess.PIPE).stdout
        cat_s = time.perf_counter() - start
        lines = out.splitlines()
        assert len(lines) == n

        def loads():
            count = 0
            for line in lines:
                json.loads(line)["payload"]
                count += 1
            return count

        json_s, json_cpu, _ = best(args.runs, loads)

    rate = lambda seconds: n / seconds  # noqa: E731
    arrow_ratio = rate(arrow_s) / rate(rust_s)
    events_ratio = rate(events_s) / rate(json_s)
    load = os.getloadavg()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"Python {platform.python_version()}, pyarrow {pyarrow.__version__}")
    print(f"# {n:,} events of {args.payload} B, best of {args.runs}")
    print("| what | time | CPU time | events/s |")
    print("|---|---:|---:|---:|")
    rows = [
        ("Rust verified iterator (`evstream._count_verified`)", rust_s, rust_cpu),
        ("`LogReader.to_arrow()`", arrow_s, arrow_cpu),
        ("iterating `Event` objects", events_s, events_cpu),
        ("`json.loads` of `evstream cat --format jsonl` lines", json_s, json_cpu),
    ]
    for what, wall, cpu in rows:
        print(f"| {what} | {wall * 1e3:.0f} ms | {cpu * 1e3:.0f} ms | {rate(wall) / 1e6:.2f} M |")
    print(f"| (`evstream cat --format jsonl` itself, once, another process) | {cat_s * 1e3:.0f} ms | | {rate(cat_s) / 1e6:.2f} M |")
    ok_arrow = arrow_ratio >= 0.5
    ok_events = events_ratio >= 2
    print(f"to_arrow / Rust iterator: {arrow_ratio:.2f}x (target >= 0.5x) {'ok' if ok_arrow else 'MISSED'}")
    print(f"Event iteration / json.loads: {events_ratio:.2f}x (target >= 2x) {'ok' if ok_events else 'MISSED'}")
    return 1 if args.check and not (ok_arrow and ok_events) else 0


if __name__ == "__main__":
    sys.exit(main())
