"""The onnx backend (ONNX Runtime GenAI on the CPU) serves what the torch policy does: the same greedy tokens in
one padded batch and the same per-token log-probabilities, for the base and for a round's adapter, on a tiny
llama and on the real default model; it refuses adapters it cannot serve, saying what to do."""

import dataclasses
import json
import shutil

import pytest
import torch
from helpers import build_tiny_llama, taste_pairs
from peft import PeftModel
from transformers import AutoModelForCausalLM

from models import cpu_has_native_bf16
from models.chat import prompt_ids
from serving import OnnxPolicyServer, SamplingSettings, TorchPolicyServer, open_policy_server
from serving.onnx_backend import MARKER, ensure_export, export_dir
from storage import BASE_VERSION
from training.config import DPOConfig
from training.trainer import run_round

PROMPTS = ["Why is the sky blue?", "Name three fruits.", "Hi", "Write a haiku about rain, then explain each line."]


def torch_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """The torch policy's greedy continuation of one prompt, alone (no padding), up to EOS."""
    ids = torch.tensor([prompt_ids(tokenizer, prompt)])
    with torch.no_grad():
        new = model.generate(ids, do_sample=False, max_new_tokens=max_new_tokens)[0, ids.shape[1] :].tolist()
    return new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new


def torch_logprobs(model, tokenizer, prompt: str, completion: list[int]) -> list[float]:
    ids = prompt_ids(tokenizer, prompt)
    with torch.no_grad():
        logits = model(torch.tensor([ids + completion])).logits[0].double()
    logps = torch.log_softmax(logits, dim=-1)
    return [logps[len(ids) - 1 + i, token].item() for i, token in enumerate(completion)]


def torch_versions(model_dir, adapters: dict) -> dict:
    """Each version as a fresh torch model: the base, and the base with each adapter loaded by PEFT."""

    def base():
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    return {BASE_VERSION: base()} | {v: PeftModel.from_pretrained(base(), str(p)).eval() for v, p in adapters.items()}


def check_agreement(server: OnnxPolicyServer, references: dict, max_new_tokens: int, tolerance: float) -> None:
    for version, model in references.items():
        ours = server.greedy_tokens(PROMPTS, max_new_tokens, version)  # one batch: the short prompts padded
        theirs = [torch_greedy(model, server.tokenizer, p, max_new_tokens) for p in PROMPTS]
        assert ours == theirs, version
        for prompt, completion in zip(PROMPTS, theirs, strict=True):
            got = server.token_logprobs(prompt, completion, version)
            want = torch_logprobs(model, server.tokenizer, prompt, completion)
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < tolerance, version


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_qlora_model_dir):
    """The tiny llama with 16-wide attention heads: ONNX Runtime's attention kernel takes multiples of 16 (the
    8-wide one is what `test_a_model_it_cannot_run_falls_back_to_eager` uses)."""
    return tiny_qlora_model_dir


@pytest.fixture(scope="module")
def tiny_adapters(tiny_model_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for n, (lr, modules) in enumerate([(2e-2, None), (5e-2, ("q_proj", "v_proj"))], start=1):
        config = DPOConfig(learning_rate=lr, epochs=2, batch_size=4, heldout_fraction=0.0, min_pairs=4, seed=n)
        if modules:
            config = dataclasses.replace(config, target_modules=modules)
        out[f"round_00{n}"] = run_round(
            config, taste_pairs(8), runs / f"round_00{n}", model=str(tiny_model_dir), device="cpu"
        ).adapter_dir
    return out


@pytest.fixture(scope="module")
def tiny_server(tiny_model_dir):
    server = OnnxPolicyServer(str(tiny_model_dir))
    yield server
    server.close()


def test_tiny_model_base_and_round_adapters_agree_with_torch(tiny_server, tiny_model_dir, tiny_adapters):
    for version, path in tiny_adapters.items():
        tiny_server.load(version, str(path))
    check_agreement(tiny_server, torch_versions(tiny_model_dir, tiny_adapters), 12, tolerance=1e-4)


def test_the_export_is_made_once_and_remade_when_the_weights_change(tiny_server, tiny_model_dir, tmp_path):
    out = export_dir(str(tiny_model_dir), "unused")
    assert out == tiny_model_dir.parent / f"{tiny_model_dir.name}.onnx" and (out / MARKER).exists()
    made = (out / MARKER).stat().st_mtime_ns
    assert ensure_export(str(tiny_model_dir), "unused") == out and (out / MARKER).stat().st_mtime_ns == made
    copy = shutil.copytree(tiny_model_dir, tmp_path / "tiny-copy")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {"rms_norm_eps": 1e-5}))
    first = ensure_export(str(copy), "unused")
    (copy / "config.json").write_text(json.dumps(config | {"rms_norm_eps": 1e-4}))
    assert ensure_export(str(copy), "unused") == first and (first / MARKER).stat().st_mtime_ns > made


def test_sampling_repeats_with_a_seed_stops_at_the_limit_and_marks_the_cut(tiny_server):
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=6, seed=3)
    first = tiny_server.generate(PROMPTS[:2], n=2, settings=settings, version=BASE_VERSION)
    assert first == tiny_server.generate(PROMPTS[:2], n=2, settings=settings, version=BASE_VERSION)
    tokens = tiny_server.generate_tokens(PROMPTS[:2], n=2, settings=settings)
    assert all(len(row) <= 6 for pair in tokens for row in pair)
    for pair, token_pair in zip(first, tokens, strict=True):
        for completion, row in zip(pair, token_pair, strict=True):
            assert completion.cut_at == (6 if len(row) == 6 else None)


def test_completions_end_at_the_tokens_they_end_at_in_the_torch_backend(tiny_server, tiny_model_dir):
    assert tiny_server.stops == TorchPolicyServer(str(tiny_model_dir), device="cpu").stops


def test_adapters_it_cannot_serve_are_refused_with_what_to_do(tiny_server, tiny_adapters, tmp_path):
    dora = shutil.copytree(tiny_adapters["round_001"], tmp_path / "dora")
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps(config | {"use_dora": True}))
    with pytest.raises(ValueError, match="uses DoRA: start the app with --backend eager"):
        tiny_server.load("dora", str(dora))
    with pytest.raises(ValueError, match="has no adapter_config.json"):
        tiny_server.load("empty", str(tmp_path))
    with pytest.raises(ValueError, match="is not loaded; load it first"):
        tiny_server.generate(PROMPTS[:1], n=1, settings=SamplingSettings(), version="round_009")
    assert tiny_server.version == BASE_VERSION and "dora" not in tiny_server._adapters


def test_auto_is_onnx_on_a_cpu_without_native_bf16_and_onnx_is_refused_elsewhere(tiny_model_dir, tmp_path):
    server = open_policy_server(str(tiny_model_dir), "cpu", backend="auto", cache_dir=str(tmp_path))
    if cpu_has_native_bf16():  # there auto times both (tests/test_autochoice.py)
        assert isinstance(server, (TorchPolicyServer, OnnxPolicyServer))
    else:
        assert isinstance(server, OnnxPolicyServer)
    if isinstance(server, OnnxPolicyServer):
        server.close()
    with pytest.raises(ValueError, match="runs on the CPU"):
        open_policy_server(str(tiny_model_dir), "cuda", backend="onnx")


def test_a_model_it_cannot_run_is_refused_and_auto_falls_back_to_eager(tiny_qlora_model_dir, tmp_path, capfd):
    narrow = build_tiny_llama(tmp_path / "narrow", tiny_qlora_model_dir)  # 8-wide heads
    with pytest.raises(ValueError, match="cannot run this model.*--backend eager"):
        OnnxPolicyServer(str(narrow))
    server = open_policy_server(str(narrow), "cpu", backend="auto", cache_dir=str(tmp_path / "cache"))
    assert isinstance(server, TorchPolicyServer) and server.backend == "eager"
    if not cpu_has_native_bf16():  # where auto tries onnx first, it says why it did not take it
        assert "serving with the eager backend instead of onnx" in capfd.readouterr().err


def test_a_stopped_generation_process_is_reported_with_what_to_do(tiny_model_dir):
    server = OnnxPolicyServer(str(tiny_model_dir))
    server._process.kill()
    server._process.wait()
    with pytest.raises(RuntimeError, match="generation process stopped .* --backend eager"):
        server.generate(PROMPTS[:1], n=1, settings=SamplingSettings(max_new_tokens=2))
    server.close()


def test_interrupt_ends_the_generation_in_flight_when_the_app_stops(tiny_model_dir):
    import threading

    from serving import ModelInterrupted

    server = OnnxPolicyServer(str(tiny_model_dir))
    raised = []

    def long_batch():
        try:
            server.generate(PROMPTS * 8, n=2, settings=SamplingSettings(max_new_tokens=2048, seed=0))
        except Exception as err:
            raised.append(err)

    batch = threading.Thread(target=long_batch)
    batch.start()
    server.interrupt()
    batch.join(timeout=120)
    assert not batch.is_alive() and len(raised) == 1 and isinstance(raised[0], ModelInterrupted), raised
    assert server._process.poll() is not None, "the generation process is gone"


@pytest.mark.slow
def test_default_model_and_a_real_round_agree_with_torch(default_model_dir, tmp_path):
    config = DPOConfig(learning_rate=5e-4, epochs=1, batch_size=4, heldout_fraction=0.0, min_pairs=4, seed=0)
    adapter = run_round(config, taste_pairs(8), tmp_path / "round_001", model=str(default_model_dir), device="cpu")
    server = OnnxPolicyServer(str(default_model_dir))
    try:
        server.serve("round_001", str(adapter.adapter_dir))
        check_agreement(server, torch_versions(default_model_dir, {"round_001": adapter.adapter_dir}), 24, 1e-3)
    finally:
        server.close()
