"""Per-sequence log-probabilities of completions, without a [batch, length, vocab] tensor.

The decoder runs once; the LM head is applied only at positions that predict a completion token,
in chunks, so memory grows with the number of completion tokens, not with batch × length × vocab.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _decoder_and_head(model):
    """The transformer body and the LM head of a causal LM, looking through a PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def completion_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Sum of log p(token_t | tokens_<t) over completion tokens.

    input_ids, attention_mask, completion_mask: (batch, seq). Returns (batch,) in fp32.
    """
    decoder, head = _decoder_and_head(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    # Position t predicts token t+1: shift targets and mask by one.
    target_mask = completion_mask[:, 1:].bool()
    rows, cols = target_mask.nonzero(as_tuple=True)
    states = hidden[:, :-1][rows, cols]  # (n_tokens, hidden)
    targets = input_ids[:, 1:][rows, cols]  # (n_tokens,)
    chunks = [
        _chunk_logps(head, states[i : i + chunk_size], targets[i : i + chunk_size])
        for i in range(0, len(targets), chunk_size)
    ]
    token_logps = torch.cat(chunks) if chunks else hidden.new_zeros(0, dtype=torch.float32)
    return torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device).index_add(0, rows, token_logps)


def _chunk_logps(head, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for (n, hidden) states; under grad the (n, vocab) logits are recomputed in backward."""

    def logps(states: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(head(states).float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)

    if torch.is_grad_enabled() and states.requires_grad:
        return checkpoint(logps, states, use_reentrant=False)
    return logps(states)
