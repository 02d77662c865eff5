"""What every serving backend shares (serving/base.py): versions by name, the lock a batch holds, rows grouped by
prompt, and one stop rule: a completion ends at the tokenizer's EOS or the model's own, in the torch backend as in
vLLM (given them as `stop_token_ids`). vLLM is faked here: no GPU, no vllm package."""

import shutil
import sys
import threading
import types

import pytest
from transformers import AutoTokenizer, GenerationConfig

from models import load_tokenizer
from models.chat import prompt_ids
from serving import BasePolicyServer, ModelBusy, PolicyBackend, SamplingSettings, TorchPolicyServer, VLLMPolicyServer
from serving.base import until_stop
from serving.sampling import stop_ids
from serving.vllm_backend import generation_eos
from storage import BASE_VERSION


class ScriptedServer(BasePolicyServer):
    """A backend whose every row samples `script` (stop tokens included): the shared plumbing, without a model."""

    backend = "scripted"

    def __init__(self, tokenizer, script: list[int], eos=None, max_prompt_tokens: int = 1024) -> None:
        super().__init__("scripted", "cpu", tokenizer, max_prompt_tokens, eos)
        self.script = script
        self.batches: list[tuple[list[list[int]], str]] = []  # (rows, version) of each batch sampled
        self.activated: list[str] = []

    def _load_adapter(self, version: str, adapter_path: str) -> None:
        with self._lock:
            self._adapters[version] = adapter_path

    def _activate(self, version: str) -> None:
        self.activated.append(version)

    def _sample(self, rows, settings, version):
        self.batches.append((rows, version))
        return [list(self.script) for _ in rows]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(str(tokenizer_dir))


def test_a_completion_ends_before_its_first_stop_token():
    assert until_stop([5, 6, 2, 7, 2], {2, 0}) == [5, 6]
    assert until_stop([5, 6, 0, 7], {2, 0}) == [5, 6]
    assert until_stop([5, 6, 7], {2}) == [5, 6, 7], "no stop token: the token limit cut it"
    assert until_stop([2, 5], {2}) == []


def test_the_stop_tokens_are_the_tokenizers_eos_and_the_models_own(tokenizer):
    eos = tokenizer.eos_token_id
    assert ScriptedServer(tokenizer, [], eos=None).stops == {eos}
    assert ScriptedServer(tokenizer, [], eos=eos).stops == {eos}
    assert ScriptedServer(tokenizer, [], eos=[eos, 0, 1]).stops == {eos, 0, 1}


def test_rows_are_grouped_by_prompt_and_cut_at_the_stop_tokens(tokenizer):
    server = ScriptedServer(tokenizer, [5, 6, 0, 7], eos=[tokenizer.eos_token_id, 0])
    assert isinstance(server, PolicyBackend)
    settings = SamplingSettings(max_new_tokens=4)
    assert server.generate_tokens(["Hi", "Tell me about owls."], 2, settings) == [[[5, 6]] * 2] * 2
    rows, version = server.batches[-1]
    assert len(rows) == 4 and rows[0] == rows[1] != rows[2] == rows[3] and version == BASE_VERSION
    completions = server.generate(["Hi"], 1, settings)
    assert completions == [[tokenizer.decode([5, 6], skip_special_tokens=True).strip()]]
    assert completions[0][0].cut_at is None, "it ended at a stop token, not at the limit"
    assert server.generate_tokens([], 2, settings) == [] and server.generate_tokens(["Hi"], 0, settings) == [[]]


def test_long_prompts_keep_their_last_tokens(tokenizer):
    server = ScriptedServer(tokenizer, [5], max_prompt_tokens=16)
    prompt = "word " * 200
    server.generate_tokens([prompt], 1, SamplingSettings(max_new_tokens=1))
    cut = prompt_ids(tokenizer, prompt, keep_last=16)
    assert server.batches[-1][0] == [cut] and len(cut) < len(prompt_ids(tokenizer, prompt))


def test_versions_are_loaded_by_folder_served_by_name_and_refused_when_unknown(tokenizer, tmp_path):
    server = ScriptedServer(tokenizer, [5])
    settings = SamplingSettings(max_new_tokens=1)
    with pytest.raises(ValueError, match="needs its adapter folder"):
        server.load("round_001", None)
    with pytest.raises(ValueError, match="is not loaded; load it first"):
        server.generate_tokens(["Hi"], 1, settings, version="round_001")
    server.serve("round_001", tmp_path)
    assert server.version == "round_001" and server.activated == ["round_001"]
    assert server._adapters == {"round_001": str(tmp_path)}
    server.load("round_001", None)  # loaded already: nothing to do
    server.generate_tokens(["Hi"], 1, settings)
    server.generate_tokens(["Hi"], 1, settings, version=BASE_VERSION)
    assert [version for _, version in server.batches] == ["round_001", BASE_VERSION]
    server.serve(BASE_VERSION)
    assert server.version == BASE_VERSION


def test_a_batch_waits_for_the_model_at_most_wait_s(tokenizer):
    server = ScriptedServer(tokenizer, [5])
    held, release = threading.Event(), threading.Event()

    def hold():
        with server._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    with pytest.raises(ModelBusy, match="try again"):
        server.generate(["Hi"], 1, SamplingSettings(max_new_tokens=1), wait_s=0.05)
    release.set()
    holder.join()
    assert server.generate_tokens(["Hi"], 1, SamplingSettings(max_new_tokens=1), wait_s=0.05) == [[[5]]]


# -- the stop rule in every backend -----------------------------------------------------------------------------
@pytest.fixture
def fake_vllm(monkeypatch):
    """A `vllm` package that records what it is asked and samples `script` for every row."""
    asked = types.SimpleNamespace(llm_kwargs=None, params=None, prompts=None, lora=None, script=[])

    class LLM:
        def __init__(self, **kwargs):
            asked.llm_kwargs = kwargs

        def generate(self, prompts, params, use_tqdm=True, lora_request=None):
            asked.prompts, asked.params, asked.lora = prompts, params, lora_request
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=asked.script)]) for _ in prompts]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class LoRARequest:
        def __init__(self, name, int_id, path):
            self.name, self.int_id, self.path = name, int_id, path

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    return asked


@pytest.fixture
def chat_model_dir(tiny_model_dir, tmp_path):
    """The tiny llama whose generation config ends at <|im_start|> (id 1) as well as at EOS, as chat models whose
    end of turn is not the tokenizer's EOS do."""
    folder = shutil.copytree(tiny_model_dir, tmp_path / "chat-model")
    eos = AutoTokenizer.from_pretrained(folder).eos_token_id
    GenerationConfig(eos_token_id=[eos, 1]).save_pretrained(folder)
    return folder


def test_the_models_eos_comes_from_its_generation_config_else_from_its_config(chat_model_dir):
    eos = AutoTokenizer.from_pretrained(chat_model_dir).eos_token_id
    assert generation_eos(str(chat_model_dir)) == [eos, 1]
    (chat_model_dir / "generation_config.json").unlink()
    assert generation_eos(str(chat_model_dir)) == eos


def test_vllm_is_given_the_stop_token_ids_and_its_completions_are_cut_there(fake_vllm, chat_model_dir, tmp_path):
    server = VLLMPolicyServer(str(chat_model_dir), max_lora_rank=8)
    eos = server.tokenizer.eos_token_id
    assert server.stops == {eos, 1} and isinstance(server, PolicyBackend)
    assert fake_vllm.llm_kwargs["enable_lora"] and fake_vllm.llm_kwargs["max_lora_rank"] == 8
    fake_vllm.script = [5, 6, 1, 7]
    settings = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=4, seed=3)
    assert server.generate_tokens(["Hi", "Tell me about owls."], 2, settings) == [[[5, 6]] * 2] * 2
    assert [p.stop_token_ids for p in fake_vllm.params] == [sorted({eos, 1})] * 4
    assert [p.seed for p in fake_vllm.params] == [3, 4, 5, 6], "seed + completion index"
    assert {(p.temperature, p.top_p, p.max_tokens) for p in fake_vllm.params} == {(0.7, 0.9, 4)}
    assert fake_vllm.lora is None, "the base is served without an adapter"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    server.serve("round_001", adapter)
    server.generate_tokens(["Hi"], 1, settings)
    assert (fake_vllm.lora.name, fake_vllm.lora.int_id, fake_vllm.lora.path) == ("round_001", 1, str(adapter))


def test_every_backend_ends_completions_at_the_same_tokens(fake_vllm, chat_model_dir):
    torch_server = TorchPolicyServer(str(chat_model_dir), device="cpu")
    expected = stop_ids(torch_server.tokenizer, torch_server.model.generation_config.eos_token_id)
    assert torch_server.stops == expected == VLLMPolicyServer(str(chat_model_dir)).stops
    assert len(expected) == 2
