"""The serving policy swaps adapters without reloading the base, serves exactly the trained adapter, and its
static-cache backend (fixed shapes, compiled step, adapters hot-swapped into one slot) generates what eager
`generate` does."""

import importlib.util
import json
import threading

import pytest
import torch
import torch._dynamo.utils
from helpers import taste_pairs
from peft import PeftModel
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from models.chat import prompt_ids
from serving import (
    ModelInterrupted,
    NucleusSampler,
    SamplingSettings,
    TorchPolicyServer,
    bucket_length,
    chat_text,
    check_vllm_adapter,
    open_policy_server,
)
from storage import BASE_VERSION
from training.config import DPOConfig
from training.trainer import run_round

PAIRS = taste_pairs(8)


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for n, lr in ((1, 5e-3), (2, 2e-2)):
        config = DPOConfig(learning_rate=lr, epochs=1, batch_size=4, heldout_fraction=0.0, min_pairs=4, seed=n)
        out[f"round_00{n}"] = run_round(
            config, PAIRS, runs / f"round_00{n}", model=str(tiny_model_dir), device="cpu"
        ).adapter_dir
    return out


def logits(model, tokenizer, text="Tell me about owls."):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.parametrize("backend", ["eager", "static"])
def test_swapped_adapter_equals_a_fresh_peft_load(tiny_model_dir, adapters, backend):
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu", backend=backend, dtype=torch.float32)
    base_weights = server.model.model.embed_tokens.weight.data_ptr()
    for version, path in adapters.items():
        server.serve(version, str(path))
        fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(path)).eval()
        torch.testing.assert_close(logits(server.model, server.tokenizer), logits(fresh, server.tokenizer))
    assert server.model.model.embed_tokens.weight.data_ptr() == base_weights, "the base was not reloaded"
    server.serve(BASE_VERSION)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    torch.testing.assert_close(logits(server.model, server.tokenizer), logits(plain, server.tokenizer))


def test_generation_from_another_version_leaves_the_serving_one_active(tiny_model_dir, adapters):
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    server.serve("round_001", str(adapters["round_001"]))
    server.load("round_002", str(adapters["round_002"]))
    settings = SamplingSettings(max_new_tokens=5, seed=3)
    first = server.generate(["Hi"], n=2, settings=settings)
    server.generate(["Hi"], n=2, settings=settings, version="round_002")
    assert server.version == "round_001"
    assert server.generate(["Hi"], n=2, settings=settings) == first, "same version, settings and seed repeat"


def test_unknown_version_is_refused(tiny_model_dir):
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    with pytest.raises(ValueError, match="not loaded"):
        server.generate(["Hi"], n=1, settings=SamplingSettings(max_new_tokens=2), version="round_009")


def test_generation_runs_on_one_worker_thread_and_its_errors_reach_the_caller(tiny_model_dir):
    """CUDA graphs are recorded per thread: every caller's batch runs on the server's one worker thread."""
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    forward_threads = set()
    hook = server.model.register_forward_pre_hook(lambda module, args: forward_threads.add(threading.get_ident()))
    settings = SamplingSettings(max_new_tokens=3)
    callers = [threading.Thread(target=server.generate, args=(["Hi"], 2, settings)) for _ in range(3)]
    for caller in callers:
        caller.start()
    server.generate(["Hi"], 2, settings)
    for caller in callers:
        caller.join()
    hook.remove()
    assert forward_threads == {server._worker.thread.ident}
    assert server._worker.thread.daemon, "an idle worker does not keep the process alive"

    def fall_over(module, args):
        raise RuntimeError("the forward pass fell over")

    hook = server.model.register_forward_pre_hook(fall_over)
    with pytest.raises(RuntimeError, match="the forward pass fell over"):
        server.generate(["Hi"], 1, settings)
    hook.remove()
    assert len(server.generate(["Hi"], 1, settings)[0]) == 1, "the worker and the lock outlive an error"


@pytest.mark.parametrize("backend", ["eager", "static"])
def test_interrupt_ends_a_batch_in_flight_at_its_next_token_and_starts_no_other(tiny_model_dir, backend):
    """What the app does when it stops: it does not wait for a batch of labelers' pairs to run to its end."""
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu", backend=backend)
    steps = []
    started = threading.Event()

    def count(module, args):
        steps.append(1)
        if len(steps) == 3:
            started.set()
            server.interrupt()  # from another thread in the app; here, once the batch is under way

    hook = server.model.register_forward_pre_hook(count)
    with pytest.raises(ModelInterrupted, match="The app is stopping"):
        server.generate(["Hi"], 2, SamplingSettings(max_new_tokens=200, seed=0))
    assert started.is_set() and len(steps) <= 4, "it stopped at the next token, not after 200"
    hook.remove()
    with pytest.raises(ModelInterrupted):
        server.generate(["Hi"], 1, SamplingSettings(max_new_tokens=4))


def test_vllm_refuses_an_adapter_above_its_max_lora_rank(adapters, tmp_path):
    adapter = adapters["round_001"]
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
    check_vllm_adapter(adapter, max_lora_rank=rank)
    limit = rank // 2
    what_to_do = f"train rounds with lora_r <= {limit}, or restart the server with max_lora_rank >= {rank}"
    with pytest.raises(
        ValueError, match=rf"rank {rank}, above this vLLM server's max_lora_rank \({limit}\): {what_to_do}"
    ):
        check_vllm_adapter(adapter, max_lora_rank=limit)
    with pytest.raises(ValueError, match="has no adapter_config.json"):
        check_vllm_adapter(tmp_path, max_lora_rank=64)


@pytest.mark.parametrize(("backend", "expected"), [("eager", "eager"), ("static", "static")])
def test_the_app_opens_the_backend_it_is_asked_for(tiny_model_dir, backend, expected):
    server = open_policy_server(str(tiny_model_dir), "cpu", backend=backend, batch_rows=6)
    assert isinstance(server, TorchPolicyServer) and server.backend == expected and server.batch_rows == 6


@pytest.mark.parametrize(
    ("device", "quantization", "message"),
    [
        ("cpu", "none", "needs a CUDA GPU"),
        ("cuda", "nf4", "unquantized"),
        pytest.param(
            "cuda",
            "none",
            "pip install vllm",
            marks=pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed"),
        ),
    ],
)
def test_vllm_backend_is_refused_with_what_to_do_before_loading_weights(device, quantization, message):
    with pytest.raises(ValueError, match=message):
        open_policy_server("no/such-model", device, quantization, backend="vllm")
    with pytest.raises(ValueError, match="backend must be one of"):
        open_policy_server("no/such-model", "cpu", backend="fast")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"temperature": 0}, "temperature"), ({"top_p": 1.5}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens")],
)
def test_bad_sampling_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**kwargs)


GREEDY = SamplingSettings(top_p=1e-6, max_new_tokens=8)  # a nucleus of one token: the argmax
SHORT, MEDIUM, LONG = "Hi", "Tell me about owls.", "Tell me about owls: three facts on how they hunt at night."


def greedy_reference(model, tokenizer, prompt: str) -> list[int]:
    """Eager greedy `generate` on one unpadded prompt: new tokens up to EOS."""
    ids = tokenizer(chat_text(tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **ids, do_sample=False, max_new_tokens=GREEDY.max_new_tokens, pad_token_id=tokenizer.pad_token_id
        )
    row = out[0, ids["input_ids"].shape[1] :].tolist()
    return row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row


def unique_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_static_backend_generates_what_eager_greedy_generate_does(tiny_model_dir, adapters):
    """Padded rows, bucketed prompt lengths, the compiled step and slot hot-swaps change no token (float64)."""
    server = TorchPolicyServer(
        str(tiny_model_dir), device="cpu", backend="static", dtype=torch.float64, batch_rows=4, prompt_buckets=(40, 64)
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64).eval()
    tok = server.tokenizer

    def check(reference, version=None):
        # the longer bucket first, so the static cache is sized once; then the shorter one, and two rows a prompt
        for prompts, n in (([SHORT, LONG], 1), ([SHORT, MEDIUM], 1), ([MEDIUM], 2)):
            got = server.generate_tokens(prompts, n, GREEDY, version=version)
            assert got == [[greedy_reference(reference, tok, p)] * n for p in prompts], (version, prompts)

    before = unique_graphs()
    check(base)
    compiled = unique_graphs()
    assert compiled > before, "the static backend compiled its decoding step"
    for version in ("round_001", "round_002"):
        server.serve(version, str(adapters[version]))
        peft = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64), str(adapters[version])
        ).eval()
        check(peft)
        if version == "round_001":
            compiled = unique_graphs()
    assert unique_graphs() == compiled, "swapping round_001 for round_002 reused the compiled step"
    server.serve(BASE_VERSION)
    check(base)
    check(peft, version="round_002")  # another version for one batch; the serving one stays
    assert server.version == BASE_VERSION
    seeded = SamplingSettings(max_new_tokens=6, seed=5)
    assert server.generate([SHORT, MEDIUM], 2, seeded) == server.generate([SHORT, MEDIUM], 2, seeded)


def test_static_batches_have_fixed_rows_and_bucketed_lengths(tiny_model_dir):
    server = TorchPolicyServer(
        str(tiny_model_dir), device="cpu", backend="eager", batch_rows=4, prompt_buckets=(40, 64)
    )
    texts = [prompt_ids(server.tokenizer, p) for p in (SHORT, MEDIUM)]
    eager, _ = server._prepare_batch(texts)
    server.backend = "static"
    static, kwargs = server._prepare_batch(texts)
    assert kwargs["cache_implementation"] == "static"
    assert static["input_ids"].shape == (4, 40) and eager["input_ids"].shape[0] == 2
    longest = eager["input_ids"].shape[1]
    for row in range(2):  # the same tokens, left-padded further, masked out
        torch.testing.assert_close(static["input_ids"][row, -longest:], eager["input_ids"][row])
        torch.testing.assert_close(static["attention_mask"][row, -longest:], eager["attention_mask"][row])
        assert static["attention_mask"][row, :-longest].sum() == 0
    torch.testing.assert_close(static["input_ids"][2:], static["input_ids"][:1].expand(2, -1))
    finished = kwargs["stopping_criteria"][0](static["input_ids"], None)
    assert finished.tolist() == [False, False, True, True], "padding rows are finished from the start"
    static, _ = server._prepare_batch(texts * 3)
    assert static["input_ids"].shape[0] == 6 and server.batch_rows == 6, "a larger batch raises the row count"
    assert [bucket_length(n, (40, 64)) for n in (1, 40, 41, 64, 65, 130)] == [40, 40, 64, 64, 128, 192]
    with pytest.raises(ValueError, match="backend must be"):
        server.backend = "fast"


@pytest.mark.parametrize(("temperature", "top_p"), [(0.7, 0.9), (1.3, 0.5), (0.8, 0.999)])
def test_nucleus_is_transformers_top_p_nucleus(temperature, top_p):
    torch.manual_seed(0)
    scores = torch.randn(6, 5000) * 3
    expected = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, scores.clone()))
    for first_k in (4, 256, 5000):  # the top-k path, and the full sort when a nucleus spills past first_k
        weights, index = NucleusSampler(temperature, top_p, first_k=first_k).nucleus(scores)
        for row in range(scores.shape[0]):
            kept = set(index[row][weights[row] > 0].tolist())
            assert kept == set(expected[row].isfinite().nonzero().flatten().tolist()), (first_k, row)


def test_nucleus_draws_in_proportion_to_probability():
    scores = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0, -6.0, -9.0]])
    sampler = NucleusSampler(temperature=0.8, top_p=0.9)
    weights, index = sampler.nucleus(scores)
    expected = torch.zeros(scores.shape[1]).scatter_(0, index[0], weights[0] / weights[0].sum())
    torch.manual_seed(0)
    draws = torch.cat([sampler(None, scores.repeat(500, 1)).argmax(-1) for _ in range(8)])
    assert set(draws.tolist()) <= set(index[0][weights[0] > 0].tolist()), "never outside the nucleus"
    frequencies = torch.bincount(draws, minlength=scores.shape[1]).float() / len(draws)
    torch.testing.assert_close(frequencies, expected, atol=0.02, rtol=0)
