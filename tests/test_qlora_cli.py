"""The QLoRA path (NF4 base via bitsandbytes, which also runs on CPU), the training CLI, and start-up errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from storage import Store
from storage.labels import PreferencePair
from training.config import DPOConfig
from training.trainer import run_round

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

REPO = Path(__file__).resolve().parents[1]
PAIRS = [PreferencePair(f"Tell me about {t}.", f"Gladly! A note on {t}.", "No.", i) for i, t in enumerate("abcdefgh")]


def test_qlora_round_trains_lora_on_a_4bit_base(tiny_qlora_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    history = []
    config = DPOConfig(
        quantization="nf4",
        rpo_alpha=0.0,  # plain DPO: the first loss is ln 2
        learning_rate=5e-3,
        epochs=2,
        batch_size=4,
        heldout_fraction=0.25,
        min_pairs=4,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    )
    result = run_round(
        config, PAIRS, tmp_path / "round_001", model=str(tiny_qlora_model_dir), device="cpu", on_progress=history.append
    )
    assert result.metrics["quantization"] == "nf4"
    assert history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert history[-1]["loss"] < history[0]["loss"]
    assert (result.adapter_dir / "adapter_model.safetensors").exists()


def votes(db: Path, n: int) -> None:
    with Store(db) as store:
        for i in range(n):
            prompt = store.prompts.add(f"Tell me about topic {i}.")
            good = store.generations.add(prompt, "base", f"Gladly! Topic {i} is interesting.", {})
            bad = store.generations.add(prompt, "base", "No.", {})
            store.judgements.add(prompt, good, bad, "left", "ana", "base")


def test_training_cli_runs_a_round_and_serves_it(tiny_model_dir, tmp_path):
    db = tmp_path / "loop.duckdb"
    votes(db, 10)
    cmd = [
        sys.executable,
        "-m",
        "training",
        "--db",
        str(db),
        "--model",
        str(tiny_model_dir),
        "--runs",
        str(tmp_path / "runs"),
        "--epochs",
        "1",
        "--learning-rate",
        "0.005",
        "--batch-size",
        "4",
    ]
    choices = ["--loss-type", "ipo", "--beta", "0.3", "--lora-r", "4", "--lora-alpha", "8", "--max-length", "192"]
    choices += ["--target-modules", "q_proj", "v_proj", "--reference", "previous"]
    run = subprocess.run(cmd + choices, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["round"] == "round_001" and summary["pairs"] == 8
    recorded = json.loads((tmp_path / "runs" / "round_001" / "config.json").read_text())["dpo"]
    expected = {"loss_type": "ipo", "beta": 0.3, "lora_r": 4, "lora_alpha": 8, "max_length": 192}
    expected |= {"target_modules": ["q_proj", "v_proj"], "reference": "previous", "epochs": 1, "batch_size": 4}
    assert {k: recorded[k] for k in expected} == expected
    adapter = json.loads((tmp_path / "runs" / "round_001" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], sorted(adapter["target_modules"])) == (4, ["q_proj", "v_proj"])
    with Store(db) as store:
        assert store.rounds.get_serving() == "round_001" and store.rounds.get(1).status == "done"
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 2 and "Too few new preference pairs: 2" in again.stderr


def test_training_cli_rejects_bad_config(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "training", "--db", str(tmp_path / "x.duckdb"), "--beta", "-1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 2 and "beta must be > 0" in run.stderr


def test_app_refuses_a_missing_model_and_a_locked_database(tmp_path):
    run = subprocess.run(
        [sys.executable, "app.py", "--model", str(tmp_path / "nope"), "--db", str(tmp_path / "a.db"), "--no-browser"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert run.returncode != 0 and "does not exist" in run.stderr
    with Store(tmp_path / "held.duckdb"):
        run = subprocess.run(
            [sys.executable, "app.py", "--db", str(tmp_path / "held.duckdb"), "--no-browser"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
    assert run.returncode != 0 and "in use by another running prefloop app" in run.stderr


def test_nf4_loading_puts_4bit_layers_under_the_lora(tiny_qlora_model_dir):
    bnb = pytest.importorskip("bitsandbytes")
    from models import load_model

    model = load_model(str(tiny_qlora_model_dir), quantization="nf4", device="cpu")
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert model.model.layers[0].self_attn.q_proj.weight.quant_type == "nf4"


ACCELERATE = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
ACCELERATE += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


@pytest.mark.slow
def test_two_process_rounds_equal_one_process(tiny_model_dir, tmp_path):
    """`--processes 2` (the runner starts torchrun) and `accelerate launch` on the same round folder: 2 CPU
    processes (gloo) train the same adapter as one process on the same pairs."""
    import shutil

    from safetensors.torch import load_file

    votes(tmp_path / "one.duckdb", 12)
    shutil.copy(tmp_path / "one.duckdb", tmp_path / "two.duckdb")
    common = ["-m", "training", "--model", str(tiny_model_dir), "--epochs", "2", "--learning-rate", "0.005"]
    common += ["--batch-size", "2", "--grad-accum", "2", "--device", "cpu"]

    def train(db: str, runs: str, *extra: str) -> Path:
        run = subprocess.run(
            [sys.executable, *common, "--db", str(tmp_path / db), "--runs", str(tmp_path / runs), *extra],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return tmp_path / runs / "round_001"

    one_dir, two_dir = train("one.duckdb", "runs1"), train("two.duckdb", "runs2", "--processes", "2")
    assert (two_dir / "log.txt").read_text().count("world size 2") == 2, "--processes 2 did not start two processes"
    # accelerate launch runs the child's entry point on a copy of the round's folder (request + input)
    staged = tmp_path / "runs3" / ".round_001.tmp"
    staged.mkdir(parents=True)
    request = json.loads((one_dir / "request.json").read_text()) | {"out_dir": str(tmp_path / "runs3" / "round_001")}
    (staged / "request.json").write_text(json.dumps(request))
    shutil.copy(one_dir / "input.jsonl", staged / "input.jsonl")
    run = subprocess.run(
        [sys.executable, *ACCELERATE, "-m", "training.child", "--round-dir", str(staged)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert run.returncode == 0 and run.stderr.count("world size 2") == 2, run.stderr[-3000:]
    one = load_file(one_dir / "adapter" / "adapter_model.safetensors")
    for folder in (two_dir, tmp_path / "runs3" / "round_001"):
        two = load_file(folder / "adapter" / "adapter_model.safetensors")
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)
        assert any(v.abs().sum() > 0 for k, v in two.items() if "lora_B" in k)
    with Store(tmp_path / "two.duckdb") as store:
        assert store.rounds.get(1).status == "done" and store.rounds.get_serving() == "round_001"
    under_launcher = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *common]
        + ["--db", str(tmp_path / "one.duckdb")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert under_launcher.returncode != 0 and "--processes N" in under_launcher.stderr
