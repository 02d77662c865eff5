"""The onnx backend's generation process (see serving/onnx_backend.py): run as a script, so it imports only numpy
and onnxruntime-genai, and answers (command, args) messages from the server over two pipes until they close.

    python serving/onnx_worker.py ONNX_DIR THREADS IN_FD OUT_FD

THREADS is the number of threads each operator runs on. It is set, not left to ONNX Runtime, whose default (the
physical cores it detects) was one thread on a 2-vCPU VM and made decoding ~1.45x slower.
"""

from __future__ import annotations

import json
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np


def generate(og, model, adapters, rows: list[list[int]], options: dict, version: str | None, pad: int) -> list:
    """The new tokens of each row (prompt token ids), all rows in one batch, from `version`'s adapter (None: the
    base); `options` are the runtime's search options plus max_new_tokens."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, dtype=np.int32)
    for i, row in enumerate(rows):  # right-padded: the attention kernel (GroupQueryAttention) reads each row's
        ids[i, : len(row)] = row  # length from its mask and takes padding on the right only
    max_length = width + options.pop("max_new_tokens")
    params = og.GeneratorParams(model)
    params.set_search_options(**options, max_length=max_length, batch_size=len(rows))
    generator = og.Generator(model, params)
    if version is not None:
        generator.set_active_adapter(adapters, version)
    generator.append_tokens(ids)
    while not generator.is_done():
        generator.generate_next_token()
    return [generator.get_sequence(i)[width:].tolist() for i in range(len(rows))]


def logprobs(og, model, adapters, prompt: list[int], completion: list[int], version: str | None) -> list[float]:
    """log p(completion[i] | prompt, completion[:i]) for each i, one token at a time (teacher forcing)."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + len(completion) + 1, batch_size=1)
    generator = og.Generator(model, params)
    if version is not None:
        generator.set_active_adapter(adapters, version)
    generator.append_tokens(np.array([prompt], dtype=np.int32))
    out = []
    for token in completion:
        logits = generator.get_output("logits")[0, -1].astype(np.float64)
        out.append(float(logits[token] - logits.max() - np.log(np.exp(logits - logits.max()).sum())))
        generator.append_tokens(np.array([[token]], dtype=np.int32))
    return out


def serve(inbox, outbox, onnx_dir: str, threads: int) -> None:
    """The generation process: answers (command, args) messages from the server until its pipe closes."""
    import onnxruntime_genai as og

    config = og.Config(onnx_dir)
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    model = og.Model(config)
    adapters = og.Adapters(model)
    pad = json.loads((Path(onnx_dir) / "genai_config.json").read_text())["model"]["pad_token_id"]
    outbox.send(("ok", None))
    while True:
        try:
            command, args = inbox.recv()
        except EOFError:
            return
        try:
            if command == "load":
                adapters.load(*args)
                result = None
            elif command == "logprobs":
                result = logprobs(og, model, adapters, *args)
            else:
                result = generate(og, model, adapters, *args, pad=pad)
            outbox.send(("ok", result))
        except Exception as err:  # the server raises it in the caller; this process goes on
            outbox.send(("error", f"{type(err).__name__}: {err}"))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: python serving/onnx_worker.py ONNX_DIR THREADS IN_FD OUT_FD")
    inbox = Connection(int(sys.argv[3]), writable=False)
    serve(inbox, Connection(int(sys.argv[4]), readable=False), sys.argv[1], int(sys.argv[2]))
