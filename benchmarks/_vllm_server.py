"""A vLLM server for the step benchmark's server mode (``benchmarks/step_profile.py --vllm-mode server``).

One server per benchmark invocation serves every variant's run in turn: each run's first weight sync (``filesystem``:
safetensors written, ``/collective_rpc reload_weights``) loads that run's weights and resets the prefix cache, so a run
starts from the same engine state as on a fresh server. Started with ``python -m trl_igrpo.vllm.serve`` in its own
session and stopped by PID. Its memory is measured per run by resetting and reading the high-water mark of every
process of its tree (``/proc/<pid>/clear_refs``, ``VmHWM``); its prefix-cache counters come from ``/metrics``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def vllm_server(
    model_dir: str, max_model_len: int, log_path: Path, env: dict, timeout: float = 900.0, extra_args: tuple = ()
):
    """Serve ``model_dir`` on 127.0.0.1 until the block ends (``extra_args`` go to ``trl-igrpo serve``); yields
    ``(base_url, pid)``. Also the server fixture of ``tests/test_vllm.py``."""
    import requests

    port = _free_port()
    command = [
        sys.executable, "-m", "trl_igrpo.vllm.serve", "--model", model_dir, "--host", "127.0.0.1", "--port", str(port),
        "--max_model_len", str(max_model_len), "--gpu_memory_utilization", "0.3", *extra_args,
    ]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server not healthy after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield base_url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the API server, EngineCore and worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid``'s tree (the server's generation work)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def reset_peak_rss(pid: int) -> None:
    """Restart the resident-set high-water mark of every process of ``pid``'s tree."""
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{member}/clear_refs").write_text("5")


def peak_rss_bytes(pid: int) -> int:
    """Sum over ``pid``'s tree of each process's resident-set high-water mark since :func:`reset_peak_rss`."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{member}/status").read_text())
            total += int(match.group(1)) * 1024 if match else 0
    return total


def prefix_cache_counters(base_url: str) -> tuple[float, float]:
    """(prompt tokens looked up, tokens hit) in the server's prefix cache so far, from its Prometheus ``/metrics``."""
    import requests

    text = requests.get(f"{base_url}/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(float(m.group(1)) for m in re.finditer(rf"^vllm:{name}_total{{[^}}]*}} (\S+)$", text, re.M))

    return total("prefix_cache_queries"), total("prefix_cache_hits")
