"""Benchmark: many labelers, logged in, voting through the launched app at once.

    python -m bench.labelers                                   # 20 labelers for 60 s, the bundled model
    python -m bench.labelers --labelers 1 2 4 20 --import-prompts 200000

Starts `app.py` with logins on (a users file with an admin and one login per simulated labeler), then for each
level in `--labelers`: waits for a full queue, and runs that many labelers, each its own `gradio_client`
session, for `--seconds`: look at the pair for `--think` seconds (uniform, human pace), vote left or right,
fetch the next pair. Vote → next pair is timed from sending the vote to holding the next pair. With
`--import-prompts N` an admin imports N prompts through the UI during the first level, while a probe times a
request that takes no pair every 100 ms, and votes overlapping the import are reported apart.

Checks, after the app has stopped: every acknowledged vote is in DuckDB exactly once, under its labeler's
login, and no pair reached two labelers. Prints a table, then one JSON line (CPU features included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gradio_client import Client, handle_file

from access import UsersFile
from bench.sampling import percentile
from bench.startup import REPO, cpu_flags, free_port
from models import DEFAULT_MODEL_CACHE
from storage import Store

VOTE_ID = re.compile(r"Saved vote #(\d+)")
QUEUE = re.compile(r"Queue: (\d+) of (\d+) pairs ready")
TARGET_P95_MS = 150.0


@dataclass
class Level:
    """One level's results, filled in by its labelers' threads."""

    labelers: int
    waits: list[float] = field(default_factory=list)  # vote → next pair, seconds
    during_import: list[float] = field(default_factory=list)
    acked: dict[int, str] = field(default_factory=dict)  # judgement id → labeler
    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)  # pair's texts → the labeler it reached
    twice: int = 0  # pairs that reached a second labeler
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pair(self, texts: tuple[str, str, str], name: str) -> None:
        with self.lock:
            if texts in self.seen:
                self.twice += 1
            self.seen[texts] = name

    def summary(self) -> dict:
        waits_ms = [w * 1000 for w in self.waits]
        return {
            "labelers": self.labelers,
            "votes": len(self.acked),
            "votes_per_s": round(len(self.acked) / self.seconds, 2) if self.seconds else 0.0,
            "pairs_per_min": round(60 * len(self.acked) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(statistics.median(waits_ms), 1) if waits_ms else None,
            "p95_ms": round(percentile(waits_ms, 0.95), 1) if waits_ms else None,
            "max_ms": round(max(waits_ms), 1) if waits_ms else None,
            "pairs_to_two_labelers": self.twice,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
        }


def launch(work: Path, users: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(REPO / "app.py"), "--no-browser", "--port", str(port), "--users", str(users),
           "--db", str(work / "bench.duckdb"), "--runs", str(work / "runs"), "--exports", str(work / "exports"),
           "--model-cache", str(args.model_cache), "--queue-depth", str(args.queue_depth)]  # fmt: skip
    if args.model:
        cmd += ["--model", args.model]
    log = open(work / "app.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})  # fmt: skip
    return proc, f"http://127.0.0.1:{port}/"


def connect(url: str, auth: tuple[str, str], proc: subprocess.Popen, work: Path, timeout: float = 600) -> Client:
    start = time.perf_counter()
    while True:
        if proc.poll() is not None or time.perf_counter() - start > timeout:
            raise RuntimeError(f"the app exited or did not answer:\n{(work / 'app.log').read_text()[-3000:]}")
        try:
            return Client(url, verbose=False, auth=auth)
        except Exception:
            time.sleep(0.5)


def wait_for_full_queue(admin: Client, timeout: float) -> int:
    """Let the sampler fill its queue between levels (each level starts as a fresh team would)."""
    deadline = time.perf_counter() + timeout
    while True:
        match = QUEUE.search(admin.predict(api_name="/queue_status"))
        if match and (match[1] == match[2] or time.perf_counter() > deadline):
            return int(match[1])
        time.sleep(1.0)


def client_floor_ms(client: Client, calls: int = 20) -> float:
    """Median time of a call that does no work (/queue_status): what gradio_client and the queue add to every
    request (the client polls for its result every 50 ms), measured with the sampler idle."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        client.predict(api_name="/queue_status")
        times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 1)


def labeler(client: Client, name: str, level: Level, stop: threading.Event, importing: threading.Event, args) -> None:
    rng = random.Random(name)
    try:
        shown = client.predict(api_name="/next_pair")  # prompt, the two as shown, the two as text, status
        level.pair(tuple(shown[:3]), name)
        while not stop.is_set():
            time.sleep(rng.uniform(*args.think))
            start = time.perf_counter()
            during = importing.is_set()
            answer, *shown = client.predict("", api_name=f"/vote_{rng.choice(['left', 'right'])}")  # + next pair
            wait = time.perf_counter() - start
            level.pair(tuple(shown[:3]), name)
            with level.lock:
                level.acked[int(VOTE_ID.match(answer)[1])] = name
                level.waits.append(wait)
                if during or importing.is_set():
                    level.during_import.append(wait)
    except Exception as err:  # counted and reported; the run goes on
        with level.lock:
            level.errors.append(f"{name}: {err}")


def import_while_probing(url: str, admin: Client, login: tuple, import_file: Path, importing: threading.Event) -> dict:
    """An admin imports `import_file` through the UI while a probe asks the server a question that takes no
    pair (/queue_status) every 100 ms: how responsive the app stays during the import."""
    probe, probes = Client(url, verbose=False, auth=login), []

    def ask() -> None:
        while importing.is_set():
            start = time.perf_counter()
            probe.predict(api_name="/queue_status")
            probes.append(1000 * (time.perf_counter() - start))
            time.sleep(0.1)

    importing.set()
    thread = threading.Thread(target=ask)
    thread.start()
    began = time.perf_counter()
    message = admin.predict(handle_file(str(import_file)), api_name="/import_prompts")
    seconds = time.perf_counter() - began
    importing.clear()
    thread.join()
    return {
        "message": message,
        "import_s": round(seconds, 2),
        "probe_calls": len(probes),
        "probe_p50_ms": round(statistics.median(probes), 1) if probes else None,
        "probe_max_ms": round(max(probes), 1) if probes else None,
    }


def run_level(url: str, admin: Client, n: int, logins: list, args, import_file: Path | None) -> tuple[Level, dict]:
    wait_for_full_queue(admin, timeout=args.fill_timeout)
    clients = [Client(url, verbose=False, auth=login) for login in logins[:n]]  # logins before the clock starts
    level, stop, importing, imported = Level(n), threading.Event(), threading.Event(), {}
    threads = [
        threading.Thread(target=labeler, args=(c, login[0], level, stop, importing, args))
        for c, login in zip(clients, logins, strict=False)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    if import_file is not None:
        time.sleep(args.seconds / 4)
        imported = import_while_probing(url, admin, logins[-1], import_file, importing)
    time.sleep(max(0.0, args.seconds - (time.perf_counter() - start)))
    stop.set()
    for thread in threads:
        thread.join(timeout=600)
    level.seconds = time.perf_counter() - start
    return level, imported


def check_store(db: Path, levels: list[Level]) -> dict:
    """Every acknowledged vote exactly once, under its labeler's login; nothing stored that was not acked."""
    acked = {jid: name for level in levels for jid, name in level.acked.items()}
    with Store(db) as store:
        judged = store.judgements.list()
    ids = [j.id for j in judged]
    by_id = {j.id: j.labeler for j in judged}
    return {
        "acked_votes": len(acked),
        "stored_votes": len(judged),
        "acked_missing": sum(1 for jid in acked if jid not in by_id),
        "stored_twice": len(ids) - len(set(ids)),
        "wrong_labeler": sum(1 for jid, name in acked.items() if by_id.get(jid) not in (None, name)),
    }


def make_logins(work: Path, labelers: int) -> tuple[UsersFile, tuple[str, str], list[tuple[str, str]]]:
    users = UsersFile(work / "users.json")
    admin_login = ("admin", "admin passphrase")
    users.add(*admin_login, role="admin")
    logins = [(f"labeler-{i:02d}", f"passphrase {i:02d}") for i in range(labelers)]
    for login in logins:
        users.add(*login)
    return users, admin_login, logins


def write_import_file(work: Path, prompts: int) -> Path | None:
    if not prompts:
        return None
    path = work / "many.jsonl"
    with open(path, "w") as f:
        for i in range(prompts):
            f.write(json.dumps({"prompt": f"Imported prompt {i}: say something about the number {i}."}) + "\n")
    return path


def import_figures(level, labelers: int) -> dict:
    waits = [w * 1000 for w in level.during_import]
    return {
        "labelers": labelers,
        "pairs_during_import": len(waits),
        "p50_ms_during_import": round(statistics.median(waits), 1) if waits else None,
        "max_ms_during_import": round(max(waits), 1) if waits else None,
    }


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the app closes the database
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def print_table(results: list[dict], floor: float, store: dict, imported: dict) -> None:
    header = ("labelers", "votes", "votes/s", "p50 ms", "p95 ms", "max ms", "twice", "err")
    print(" ".join(f"{h:>9}" for h in header))
    for r in results:
        row = ("labelers", "votes", "votes_per_s", "p50_ms", "p95_ms", "max_ms", "pairs_to_two_labelers", "errors")
        print(" ".join(f"{r[key]!s:>9}" for key in row))
    print(f"gradio_client's own floor (a call that does nothing): {floor} ms")
    print(f"store: {store}; import: {imported or 'none'}")


def main(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="prefloop-labelers-"))
    users, admin_login, logins = make_logins(work, max(args.labelers))
    import_file = write_import_file(work, args.import_prompts)
    proc, url = launch(work, users.path, args)
    try:
        admin = connect(url, admin_login, proc, work)
        admin.predict(0.8, 0.95, args.max_new_tokens, api_name="/apply_settings")
        wait_for_full_queue(admin, timeout=args.fill_timeout)
        floor = client_floor_ms(admin)
        results, levels, imported = [], [], {}
        for index, n in enumerate(args.labelers):  # the import runs in the first level, while pairs flow
            level, got = run_level(url, admin, n, logins, args, import_file if index == 0 else None)
            levels.append(level)
            results.append(level.summary())
            imported |= got | (import_figures(level, n) if got else {})
            print(json.dumps(results[-1]), flush=True)
    finally:
        stop_app(proc)
    store = check_store(work / "bench.duckdb", levels)
    sustained = [r["labelers"] for r in results if r["p95_ms"] is not None and r["p95_ms"] <= TARGET_P95_MS]
    summary = {
        "bench": "labelers",
        "model": args.model or "SmolLM2-135M-Instruct (bundled)",
        "seconds": args.seconds,
        "think_s": list(args.think),
        "max_new_tokens": args.max_new_tokens,
        "queue_depth": args.queue_depth,
        "client_floor_ms": floor,
        "levels": results,
        "sustained_labelers_p95_150ms": max(sustained) if sustained else 0,
        "import": imported or None,
        "store": store,
        "cpu": cpu_flags(),
        "cores": os.cpu_count(),
    }
    print_table(results, floor, store, imported)
    print(json.dumps(summary))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.labelers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelers", type=int, nargs="+", default=[20], help="levels, run one after another")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each level labels")
    parser.add_argument("--think", type=float, nargs=2, default=(2.0, 5.0), help="seconds on a pair: min max")
    parser.add_argument("--model", default=None, help="default: the bundled SmolLM2-135M-Instruct")
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--queue-depth", type=int, default=8)
    parser.add_argument("--fill-timeout", type=float, default=180.0, help="longest wait for a full queue")
    parser.add_argument("--import-prompts", type=int, default=0, help="prompts an admin imports in the last level")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
