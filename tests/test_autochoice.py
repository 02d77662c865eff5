"""`--backend auto` on a CPU with native bf16 serves with the engine it timed fastest there, once: real onnx and
eager engines on the tiny model (64 wide: onnx's attention wants heads of 16), the verdict kept per model, CPU
and engine versions."""

import json

import pytest

from serving import OnnxPolicyServer, TorchPolicyServer, open_policy_server
from serving.autochoice import (
    CHOICE_FILE,
    KEPT_RECORDS,
    choice_key,
    measured_backend,
    read_choice,
    store_choice,
    tokens_per_second,
)


def _openers(model: str, opened: list[str]) -> dict:
    def onnx():
        opened.append("onnx")
        return OnnxPolicyServer(model)

    def eager():
        opened.append("eager")
        return TorchPolicyServer(model, "cpu", backend="eager")

    return {"onnx": onnx, "eager": eager}


def _close(server) -> None:
    if isinstance(server, OnnxPolicyServer):
        server.close()


def test_the_faster_engine_serves_and_later_starts_read_the_verdict(tiny_qlora_model_dir, tmp_path):
    model, opened = str(tiny_qlora_model_dir), []
    key = choice_key(model)
    assert {"model", "cpu", "cores", "native_bf16", "torch", "onnxruntime_genai"} <= set(key)
    server, record = measured_backend(model, tmp_path, _openers(model, opened), key=key, probe_tokens=8)
    assert set(record["tok_s"]) == {"onnx", "eager"} and min(record["tok_s"].values()) > 0
    assert record["backend"] == max(record["tok_s"], key=record["tok_s"].get)
    assert isinstance(server, OnnxPolicyServer if record["backend"] == "onnx" else TorchPolicyServer)
    assert opened == ["onnx", "eager", record["backend"]], "one at a time, then the faster again"
    assert read_choice(tmp_path, key) == record
    _close(server)

    opened.clear()
    again, stored = measured_backend(model, tmp_path, _openers(model, opened), key=key, probe_tokens=8)
    assert stored == record and opened == [record["backend"]], "no second measurement"
    _close(again)

    other = key | {"torch": "0.0.0"}  # another torch: measured again, and both verdicts kept
    eager_only = {"eager": _openers(model, [])["eager"]}
    server, _ = measured_backend(model, tmp_path, eager_only, key=other, probe_tokens=8)
    _close(server)
    records = json.loads((tmp_path / CHOICE_FILE).read_text())
    assert [r["key"] for r in records] == [key, other]


def test_an_engine_that_cannot_open_is_left_out_with_its_reason(tiny_qlora_model_dir, tmp_path):
    model = str(tiny_qlora_model_dir)

    def broken():
        raise ValueError("cannot run this model")

    openers = _openers(model, []) | {"onnx": broken}
    server, record = measured_backend(model, tmp_path, openers, key={"k": 1}, probe_tokens=8)
    assert record["backend"] == "eager" and record["failed"] == {"onnx": "cannot run this model"}
    assert record["tok_s"] == {}, "the only one that opens serves untimed"
    assert isinstance(server, TorchPolicyServer) and read_choice(tmp_path, {"k": 1}) == record
    with pytest.raises(ValueError, match="No backend could be opened.*--backend"):
        measured_backend(model, tmp_path, {"onnx": broken}, key={"k": 2})
    (tmp_path / CHOICE_FILE).write_text("{not json")
    assert read_choice(tmp_path, {"k": 1}) is None, "an unreadable file measures again"


def test_the_newest_verdicts_are_kept(tmp_path):
    for i in range(KEPT_RECORDS + 2):
        store_choice(tmp_path, {"key": {"model": i}, "backend": "onnx"})
    store_choice(tmp_path, {"key": {"model": KEPT_RECORDS}, "backend": "eager"})  # replaces its own
    keys = [r["key"]["model"] for r in json.loads((tmp_path / CHOICE_FILE).read_text())]
    assert len(keys) == KEPT_RECORDS and keys[-1] == KEPT_RECORDS and 0 not in keys and 1 not in keys
    assert read_choice(tmp_path, {"model": KEPT_RECORDS})["backend"] == "eager"


def test_tokens_per_second_counts_what_a_sampler_batch_makes(tiny_qlora_model_dir):
    server = TorchPolicyServer(str(tiny_qlora_model_dir), "cpu", backend="eager")
    assert tokens_per_second(server, max_new_tokens=8) > 0


@pytest.mark.slow
def test_auto_on_a_cpu_with_native_bf16_measures_and_keeps_the_verdict(tiny_qlora_model_dir, tmp_path, monkeypatch):
    import serving

    # This CPU may lack AVX512-BF16/AMX: answer the hardware question as such a CPU would; the engines are real.
    monkeypatch.setattr(serving, "cpu_has_native_bf16", lambda: True)
    server = open_policy_server(str(tiny_qlora_model_dir), "cpu", backend="auto", cache_dir=str(tmp_path))
    record = read_choice(tmp_path, choice_key(str(tiny_qlora_model_dir)))
    assert record is not None and set(record["tok_s"]) == {"onnx", "eager"}
    assert isinstance(server, OnnxPolicyServer if record["backend"] == "onnx" else TorchPolicyServer)
    _close(server)
