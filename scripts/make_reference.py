#!/usr/bin/env python3
"""make_reference.py — reference continuations and logits for the default model.

transformers (an implementation nobody here wrote) loads the same SmolLM2
GGUF that slm runs, dequantizing it itself, and for each prompt records its
greedy continuation (48 tokens, or fewer when it ends with
an end-of-sequence token) and, at every position, the top-64 next-token
logits plus the log-sum-exp of the full distribution (so a test can compute
probabilities exactly for those 64 tokens). tests/test_reference.c teacher-
forces slm along the same tokens and compares.

Pinned: torch==2.9.1 transformers==4.57.6 accelerate==1.11.0 gguf==0.17.1.
Input: models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model).
Output (committed): tests/fixtures/reference/smollm2-q4_1.ref

File format, little-endian:
  "SLMF", u32 n_prompts, u32 n_vocab, u32 top_k
  per prompt: u32 n_prompt, u32 n_gen, i32 tokens[n_prompt + n_gen],
              then for each position p in 0 .. n_prompt + n_gen - 2 (the logits
              after token p): f32 logsumexp, i32 ids[top_k], f32 logits[top_k]
              (ids in descending logit order).
"""
import os
import struct
import sys

PINS = {"torch": "2.9.1", "transformers": "4.57.6", "accelerate": "1.11.0", "gguf": "0.17.1"}


def check_pins():
    import importlib.metadata as md
    bad = [f"{p}=={v} (have {md.version(p)})" for p, v in PINS.items() if md.version(p) != v]
    if bad:
        sys.exit("make_reference.py needs " + ", ".join(bad))


check_pins()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODEL_DIR = os.path.join(ROOT, "models")
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "tests", "fixtures", "reference", "smollm2-q4_1.ref")
N_GEN, TOP_K = 48, 64

CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "Water boils at a temperature of",
    CHAT.format("What is the tallest mountain in the world?"),
    CHAT.format("Write a haiku about autumn leaves."),
    CHAT.format("Explain in one sentence why the sky is blue."),
    "1, 2, 3, 4, 5,",
    "In machine learning, overfitting means",
]


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=MODEL,
                                                 torch_dtype=torch.float32).eval()
    n_vocab = model.config.vocab_size
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(b"SLMF")
        f.write(struct.pack("<III", len(PROMPTS), n_vocab, TOP_K))
        for text in PROMPTS:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), max_new_tokens=N_GEN, do_sample=False,
                                     pad_token_id=tok.eos_token_id)
                seq = out[0].tolist()
                logits = model(torch.tensor([seq])).logits[0].double()
            gen = seq[len(ids):]
            f.write(struct.pack("<II", len(ids), len(gen)))
            f.write(np.asarray(seq, "<i4").tobytes())
            lse = torch.logsumexp(logits, dim=-1)
            top = torch.topk(logits, TOP_K, dim=-1)
            for p in range(len(seq) - 1):
                f.write(struct.pack("<f", float(lse[p])))
                f.write(np.asarray(top.indices[p].tolist(), "<i4").tobytes())
                f.write(np.asarray(top.values[p].tolist(), "<f4").tobytes())
            print(repr(text[:40]), "->", repr(tok.decode(gen)[:80]))
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
