#!/usr/bin/env python3
"""make_embedding_fixtures.py — reference pooled embeddings of the tiny models, from
transformers' hidden states, for tests/test_embed.c.

For the llama, qwen2, qwen3 and gemma3 tiny fixtures (tests/fixtures/tiny, made by
make_tiny_models.py) in F16, Q8_0 and Q4_K, this rebuilds the transformers model that
make_tiny_models.py wrote each file from (same seeds, same code: it imports that script), writes
the GGUF again into a temporary folder and checks it is byte-identical to the committed one — so
the reference belongs to exactly the committed file — then runs a few token sequences through
the model with output_hidden_states=True and records, per sequence, the L2-normalised mean, first
(CLS) and last token of the final hidden states.

"Final hidden states" = after the model's output norm, before lm_head: what slm pools. For these
models transformers' last hidden state is already normed (LlamaModel, Qwen2/3Model and
Gemma3TextModel apply `self.norm` before returning it, and hidden_states[-1] is that same
tensor); the script asserts both facts — hidden_states[-1] == last_hidden_state, and
lm_head(last_hidden_state) == the logits — rather than trusting them.

The reference models carry the file's weights exactly (llama: transformers loads the GGUF
itself; the families: the dequantized values the file holds, as make_tiny_models.py does), so on
quantized files the only difference left to slm is its arithmetic (8-bit activations on the CPU).

Pinned as make_tiny_models.py: torch==2.9.1 transformers==4.57.6 accelerate==1.11.0 gguf==0.17.1.
Not run in CI; CI reads the committed outputs.

Output (committed): tests/fixtures/tiny/tiny-<family>-<type>.embed, little-endian:
  magic 'SLME', u32 n_seq, u32 n_embd, then per sequence: u32 len, i32 tokens[len],
  f32 mean[n_embd], f32 cls[n_embd], f32 last[n_embd] (each L2-normalised).

Usage: make_embedding_fixtures.py
"""
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_models as mtm  # noqa: E402  (checks the pins, imports torch)
import torch  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

FAMILIES = ["llama", "qwen2", "qwen3", "gemma3"]
TYPES = [("f16", QT.F16), ("q8_0", QT.Q8_0), ("q4_k", QT.Q4_K)]
# Lengths: one token (mean = cls = last), a short one, and one longer than two 16-token
# chunks and the gemma3 fixture's 16-token window.
LENGTHS = [1, 9, 37]
SEED = 4321


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def llama_ref(tmp, qname, qtype):
    torch.manual_seed(mtm.SEED)
    model = LlamaForCausalLM(LlamaConfig(**mtm.CFG)).eval()
    name = f"tiny-llama-{qname}.gguf"
    path = os.path.join(tmp, name)
    mtm.write_gguf(path, model.state_dict(), qtype)
    assert same_file(path, os.path.join(mtm.OUT, name)), f"{name}: rebuilt file differs"
    return AutoModelForCausalLM.from_pretrained(tmp, gguf_file=name,
                                                torch_dtype=torch.float32).eval()


def family_ref(tmp, family, qname, qtype):
    """make_tiny_models.make_family's model and its reference for one type."""
    cls, cfg, arch = mtm.fam_config(family)
    k = mtm.FAMILIES.index(family)
    torch.manual_seed(mtm.SEED + 1 + k)
    model = cls(cfg).eval()
    gen = torch.Generator().manual_seed(mtm.SEED + 100 + k)
    mtm.randomize_norms_and_biases(model, family, gen)
    sd = {n: v.clone() for n, v in model.state_dict().items()}
    name = f"tiny-{family}-{qname}.gguf"
    path = os.path.join(tmp, name)
    held = mtm.write_family_gguf(path, family, arch, cfg, sd, qtype)
    assert same_file(path, os.path.join(mtm.OUT, name)), f"{name}: rebuilt file differs"
    ref = cls(cfg).eval()
    new_sd = dict(sd)
    for hf, v in held.items():
        new_sd[hf] = torch.from_numpy(v)
    if cfg.tie_word_embeddings:
        new_sd.pop("lm_head.weight", None)
    missing, unexpected = ref.load_state_dict(new_sd, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    return ref


def hidden(ref, tokens):
    """(len, n_embd) final hidden states, checked to be after the output norm."""
    ids = torch.tensor([tokens])
    with torch.no_grad():
        out = ref(ids, output_hidden_states=True)
        base = ref.model(ids, output_hidden_states=True)
        h = base.last_hidden_state[0]
        assert torch.equal(base.hidden_states[-1][0], h), "hidden_states[-1] is not the last"
        d = (ref.lm_head(h) - out.logits[0]).abs().max().item()
        assert d < 1e-4, f"lm_head(last hidden) is {d} from the logits: not the normed state"
    return h.double().numpy()


def unit(v):
    return v / np.linalg.norm(v)


def write_embed(path, seqs, rows):
    d = rows[0][0].shape[0]
    with open(path, "wb") as f:
        f.write(b"SLME")
        f.write(struct.pack("<II", len(seqs), d))
        for toks, (mean, cls, last) in zip(seqs, rows):
            f.write(struct.pack("<I", len(toks)))
            f.write(np.asarray(toks, "<i4").tobytes())
            for v in (mean, cls, last):
                f.write(np.asarray(unit(v), "<f4").tobytes())


def main():
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    seqs = [rng.integers(0, mtm.N_VOCAB, size=n).tolist() for n in LENGTHS]
    tmp = tempfile.mkdtemp()
    try:
        for family in FAMILIES:
            for qname, qtype in TYPES:
                ref = (llama_ref(tmp, qname, qtype) if family == "llama"
                       else family_ref(tmp, family, qname, qtype))
                rows = []
                for toks in seqs:
                    h = hidden(ref, toks)
                    rows.append((h.mean(axis=0), h[0], h[-1]))
                out = os.path.join(mtm.OUT, f"tiny-{family}-{qname}.embed")
                write_embed(out, seqs, rows)
                print(f"{out}: {len(seqs)} sequences, n_embd {rows[0][0].shape[0]}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
