"""Helpers shared by the benchmarks: child-process peak RSS, medians, result files."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time

import psutil


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd`; return wall seconds and the peak RSS (bytes) of it and its children,
    sampled every 20 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    output, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{output[-3000:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_bytes": peak, "output": output[-500:]}


def median(values):
    return statistics.median(values)


def machine() -> dict:
    return {"platform": platform.platform(), "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def write_results(out_dir: str | pathlib.Path, name: str, results: dict, table: str) -> None:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(table + "\n")
    print(table)
