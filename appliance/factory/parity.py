"""Parity of exported engines against the torch reference, on fixed inputs, as recorded numbers.

LLM: the reference greedily generates 64 tokens per prompt; the engine is
then teacher-forced along that path (logit difference and argmax agreement
at every position) and also runs free (share of greedy tokens equal to the
reference before the first divergence). Both go through the box's own
engine class, batched, so the path measured is the path served.
Embeddings: cosine similarity of pooled vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.engine.greedy import decode_batch, engine_greedy, prefill_all
from appliance.engine.tokenizer import ChatTokenizer
from appliance.engine.similarity import cosine_rows
from appliance.store.manifest import ParityFigures

PARITY_PROMPTS = [
    "Write a short poem about the sea.",
    "Explain why the sky is blue.",
    "Describe how to make a cup of tea, step by step.",
    "What are the benefits of regular exercise?",
]
EMBEDDING_TEXTS = [
    "The appliance serves language models on the local network.",
    "A quick brown fox jumps over the lazy dog.",
    "Embeddings map sentences to vectors.",
    "Paris is the capital of France.",
    "short",
    "Data never leaves the box; the vendor sees only what the admin allows.",
]
GOLDEN_MESSAGES = [{"role": "user", "content": "What is 2 + 2? Answer in one word."}]
GOLDEN_TOKENS = 16


@dataclass
class LlmReference:
    prompts: list[list[int]]
    tokens: list[list[int]]  # greedy continuation per prompt
    logits: list[np.ndarray]  # [n_tokens, vocab] logits that chose each token


def chat_prompts(tok: ChatTokenizer, prompts: list[str]) -> list[list[int]]:
    return [tok.encode(tok.render_chat([{"role": "user", "content": p}])) for p in prompts]


def llm_reference(hf_dir: Path, prompts: list[list[int]], n_tokens: int) -> LlmReference:
    """Greedy continuations (up to n_tokens, ending at EOS) and the raw logits that chose them."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    toks, logits = [], []
    with torch.inference_mode():
        for ids in prompts:
            out = model.generate(torch.tensor([ids]), max_new_tokens=n_tokens, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True,
                                 pad_token_id=model.config.eos_token_id)
            toks.append(out.sequences[0, len(ids):].tolist())
            logits.append(torch.stack(out.logits, 1)[0].float().numpy())
    return LlmReference(prompts, toks, logits)


def engine_forced(engine, ref: LlmReference, chunk: int) -> list[np.ndarray]:
    """Engine logits along the reference's token path, all prompts decoding as one batch."""
    first = prefill_all(engine, dict(enumerate(ref.prompts)), chunk)

    def choose(sid: int, pos: int, _lg: np.ndarray) -> int | None:
        return ref.tokens[sid][pos] if pos + 1 < len(ref.tokens[sid]) else None

    rows = decode_batch(engine, first, choose)
    return [np.stack(rows[sid]) for sid in sorted(rows)]


def prefix_agreement(a: list[int], b: list[int]) -> float:
    n = max(len(a), len(b))
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i / max(n, 1)


def llm_parity(engine, ref: LlmReference, stage: str, precision: str, chunk: int,
               thresholds: dict[str, float]) -> ParityFigures:
    forced = engine_forced(engine, ref, chunk)
    n = max(len(t) for t in ref.tokens)
    max_diff = max(float(np.abs(f - r).max()) for f, r in zip(forced, ref.logits))
    agree = float(np.mean(np.concatenate([f.argmax(-1) == np.array(t) for f, t in zip(forced, ref.tokens)])))
    greedy = engine_greedy(engine, ref.prompts, n, chunk)
    prefix = float(np.mean([prefix_agreement(g, t) for g, t in zip(greedy, ref.tokens)]))
    passed = agree >= thresholds["min_token_agreement"] and (
        "max_abs_logit" not in thresholds or max_diff <= thresholds["max_abs_logit"]
    )
    return ParityFigures(stage=stage, precision=precision, prompts=len(ref.prompts), tokens_per_prompt=n,
                         max_abs_logit_diff=round(max_diff, 6), token_agreement=round(agree, 4),
                         greedy_prefix_agreement=round(prefix, 4), thresholds=thresholds, passed=passed)


def embeddings_reference(hf_dir: Path, texts: list[str], pooling: str, normalize: bool) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModel.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        enc = tok(texts, padding=True, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled.numpy()


def embeddings_parity(embedder, ref: np.ndarray, texts: list[str], stage: str, precision: str,
                      min_cosine: float) -> ParityFigures:
    got, _ = embedder.embed(texts)
    cos = float(cosine_rows(got, ref).min())
    return ParityFigures(stage=stage, precision=precision, prompts=len(texts), min_cosine=round(cos, 6),
                         max_abs_logit_diff=round(float(np.abs(got - ref).max()), 6),
                         thresholds={"min_cosine": min_cosine}, passed=cos >= min_cosine)
