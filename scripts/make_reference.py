#!/usr/bin/env python3
"""make_reference.py — reference continuations and logits for real models.

transformers (an implementation nobody here wrote) loads the same GGUF that
slm runs, dequantizing it itself, and for each prompt records its greedy
continuation (N_GEN tokens, or fewer when it ends with an end-of-sequence
token) and, at every position, the top-64 next-token logits plus the
log-sum-exp of the full distribution (so a test can compute probabilities
exactly for those 64 tokens). tests/test_reference.c teacher-forces slm
along the same tokens and compares.

Pinned: torch==2.9.1 transformers==4.57.6 accelerate==1.11.0 gguf==0.17.1
(and sentencepiece, which the Gemma tokenizer conversion needs). float32
weights and activations throughout (the GGUF is dequantized to float32).

Usage: scripts/make_reference.py [--model smollm2|gemma3-270m]  (default smollm2)

--model smollm2 (the default model):
  Input: models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model).
  Output (committed): tests/fixtures/reference/smollm2-q4_1.ref
  10 prompts, 48-token continuations.

--model gemma3-270m:
  Input: models/gemma-3-270m-q4_k_m.gguf (scripts/fetch-model gemma3-270m;
  Gemma 3 270M base, Q4_K_M: q5_0, q8_0, q4_K and q6_K tensors, which
  transformers dequantizes with gguf-py; its GGUF loader takes the +1 that
  llama.cpp's converter folded into every Gemma RMSNorm weight back out).
  Output (committed): tests/fixtures/reference/gemma3-270m-q4_k_m.ref
  attn_implementation="eager" (the sliding-window mask of the local layers
  is applied by transformers' masking utilities; window 512 including the
  query token itself, as llama.cpp's standard SWA mask). 8 prompts, each
  begun with BOS (id 2) as Gemma expects: two plain text, two code, three in
  Gemma's chat format (<start_of_turn>user ... <end_of_turn> then
  <start_of_turn>model), and one long prompt of 1,500+ tokens so that the
  512-token sliding window is crossed: a numbered list of the 118 chemical
  elements in order of atomic number ("4. The element Beryllium has the
  symbol Be."), written out by long_prompt() below from the ELEMENTS table
  (no randomness), ended by a question whose answer lies more than 512
  tokens back (1,580 prompt tokens with BOS). 40-token continuations; generation
  stops only at the GGUF's end-of-sequence token (id 1), not at
  <end_of_turn>.
  Cross-checked against llama.cpp (llama-server, build 11434, same GGUF;
  scripts/check_reference_llamacpp.py): same prompt tokens for all 8;
  teacher-forced top-1 agreement 1969 of 2016 positions (97.7%; 98.0% over
  the long prompt's 1619), mean |difference| of the top-1 token's log
  probability 0.02-0.05 nats per prompt; greedy continuations equal for all
  40 tokens on 3 of 8 prompts (the long one included), the others part
  after 3-26 tokens. llama.cpp's CPU matmuls code activations in 8 bits,
  which accounts for differences of that size (slm's own q8 mode measured
  96-97% against transformers on SmolLM2).
  The logits' low bits depend on torch's thread count (SmolLM2's fixture
  regenerated on 1 thread: same tokens, logits within 6.3e-5); made with
  --threads 2.

File format, little-endian:
  "SLMF", u32 n_prompts, u32 n_vocab, u32 top_k
  per prompt: u32 n_prompt, u32 n_gen, i32 tokens[n_prompt + n_gen],
              then for each position p in 0 .. n_prompt + n_gen - 2 (the logits
              after token p): f32 logsumexp, i32 ids[top_k], f32 logits[top_k]
              (ids in descending logit order).
"""
import argparse
import os
import struct
import sys

PINS = {"torch": "2.9.1", "transformers": "4.57.6", "accelerate": "1.11.0", "gguf": "0.17.1"}


def check_pins():
    import importlib.metadata as md
    bad = [f"{p}=={v} (have {md.version(p)})" for p, v in PINS.items() if md.version(p) != v]
    if bad:
        sys.exit("make_reference.py needs " + ", ".join(bad))


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL_DIR = os.path.join(ROOT, "models")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "reference")
TOP_K = 64

SMOL_CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
             "Face<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
GEMMA_CHAT = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"

# The 118 elements, in order of atomic number: (name, symbol).
ELEMENTS = [tuple(e.split(":")) for e in """
Hydrogen:H Helium:He Lithium:Li Beryllium:Be Boron:B Carbon:C Nitrogen:N Oxygen:O
Fluorine:F Neon:Ne Sodium:Na Magnesium:Mg Aluminium:Al Silicon:Si Phosphorus:P Sulfur:S
Chlorine:Cl Argon:Ar Potassium:K Calcium:Ca Scandium:Sc Titanium:Ti Vanadium:V Chromium:Cr
Manganese:Mn Iron:Fe Cobalt:Co Nickel:Ni Copper:Cu Zinc:Zn Gallium:Ga Germanium:Ge
Arsenic:As Selenium:Se Bromine:Br Krypton:Kr Rubidium:Rb Strontium:Sr Yttrium:Y
Zirconium:Zr Niobium:Nb Molybdenum:Mo Technetium:Tc Ruthenium:Ru Rhodium:Rh Palladium:Pd
Silver:Ag Cadmium:Cd Indium:In Tin:Sn Antimony:Sb Tellurium:Te Iodine:I Xenon:Xe
Caesium:Cs Barium:Ba Lanthanum:La Cerium:Ce Praseodymium:Pr Neodymium:Nd Promethium:Pm
Samarium:Sm Europium:Eu Gadolinium:Gd Terbium:Tb Dysprosium:Dy Holmium:Ho Erbium:Er
Thulium:Tm Ytterbium:Yb Lutetium:Lu Hafnium:Hf Tantalum:Ta Tungsten:W Rhenium:Re
Osmium:Os Iridium:Ir Platinum:Pt Gold:Au Mercury:Hg Thallium:Tl Lead:Pb Bismuth:Bi
Polonium:Po Astatine:At Radon:Rn Francium:Fr Radium:Ra Actinium:Ac Thorium:Th
Protactinium:Pa Uranium:U Neptunium:Np Plutonium:Pu Americium:Am Curium:Cm Berkelium:Bk
Californium:Cf Einsteinium:Es Fermium:Fm Mendelevium:Md Nobelium:No Lawrencium:Lr
Rutherfordium:Rf Dubnium:Db Seaborgium:Sg Bohrium:Bh Hassium:Hs Meitnerium:Mt
Darmstadtium:Ds Roentgenium:Rg Copernicium:Cn Nihonium:Nh Flerovium:Fl Moscovium:Mc
Livermorium:Lv Tennessine:Ts Oganesson:Og
""".split()]
assert len(ELEMENTS) == 118


def long_prompt():
    """A numbered list of the elements, then a question about the start of it."""
    lines = ["The chemical elements in order of atomic number:"]
    for n, (name, sym) in enumerate(ELEMENTS, 1):
        lines.append(f"{n}. The element {name} has the symbol {sym}.")
    lines.append("Question: which element has the symbol Be, and what is its number in the list?")
    lines.append("Answer:")
    return "\n".join(lines)


MODELS = {
    "smollm2": dict(
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        out="smollm2-q4_1.ref",
        n_gen=48,
        bos=None,
        load={},
        prompts=[
            "The capital of France is",
            "Once upon a time, in a small village by the sea,",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
            "The three primary colors are",
            "Water boils at a temperature of",
            SMOL_CHAT.format("What is the tallest mountain in the world?"),
            SMOL_CHAT.format("Write a haiku about autumn leaves."),
            SMOL_CHAT.format("Explain in one sentence why the sky is blue."),
            "1, 2, 3, 4, 5,",
            "In machine learning, overfitting means",
        ]),
    "gemma3-270m": dict(
        gguf="gemma-3-270m-q4_k_m.gguf",
        out="gemma3-270m-q4_k_m.ref",
        n_gen=40,
        bos=2,
        spm_tokenizer=True,
        load={"attn_implementation": "eager"},
        prompts=[
            "The capital of France is",
            "Once upon a time, in a small village by the sea,",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
            "#include <stdio.h>\n\n/* Print the squares of 1 to 10. */\nint main(void)\n{\n",
            GEMMA_CHAT.format("What is the tallest mountain in the world?"),
            GEMMA_CHAT.format("Write a haiku about autumn leaves."),
            GEMMA_CHAT.format("Explain in one sentence why the sky is blue."),
            long_prompt(),
        ]),
}


class SpmTokenizer:
    """llama.cpp's SentencePiece-BPE tokenization (llm_tokenizer_spm), from
    the GGUF's vocabulary and scores. For Gemma: transformers 4.57.6 turns
    the Gemma 3 GGUF vocabulary into a Unigram tokenizer that splits words
    into fragments ("The capital" -> "The", "_c", "ap", "it", "al"), which
    is not how Gemma was trained, so its prompts would be out of
    distribution; llama.cpp's algorithm is rebuilt here instead (and
    check_reference_llamacpp.py confirms it gives llama.cpp's ids):
    control, unknown and user-defined tokens are cut out of the text first,
    longest first, as literal strings; spaces become U+2581 (no space
    prefix); then, from single characters, the adjacent pair whose
    concatenation is a token with the highest score is merged, leftmost on
    ties, until none is; a character that is no token becomes its UTF-8
    bytes' <0xXX> tokens."""

    def __init__(self, path):
        from gguf import GGUFReader
        r = GGUFReader(path)
        toks = r.fields["tokenizer.ggml.tokens"].contents()
        self.score = r.fields["tokenizer.ggml.scores"].contents()
        types = r.fields["tokenizer.ggml.token_type"].contents()
        assert r.fields["tokenizer.ggml.model"].contents() == "llama"
        assert not r.fields["tokenizer.ggml.add_space_prefix"].contents()
        self.ids = {}
        for i, t in enumerate(toks):
            self.ids[t] = i
        # 2 unknown, 3 control, 4 user-defined (llama.cpp's special-token cache)
        self.special = sorted((t for t, ty in zip(toks, types) if ty in (2, 3, 4) and t),
                              key=len, reverse=True)

    def encode(self, text):
        frags = [text]  # str: raw text; int: a special token's id
        for sp in self.special:
            out = []
            for f in frags:
                if isinstance(f, int) or sp not in f:
                    out.append(f)
                    continue
                parts = f.split(sp)
                for j, part in enumerate(parts):
                    if j:
                        out.append(self.ids[sp])
                    if part:
                        out.append(part)
            frags = out
        ids = []
        for f in frags:
            ids.extend([f] if isinstance(f, int) else self._spm(f.replace(" ", "\u2581")))
        return ids

    def _spm(self, text):
        import heapq
        sym = list(text)
        n = len(sym)
        prev, nxt = list(range(-1, n - 1)), list(range(1, n + 1))
        heap = []

        def bigram(left, right):
            if left < 0 or right >= n:
                return
            t = sym[left] + sym[right]
            if t in self.ids:
                heapq.heappush(heap, (-self.score[self.ids[t]], left, right, len(t)))

        for i in range(n - 1):
            bigram(i, i + 1)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not sym[left] or not sym[right] or len(sym[left]) + len(sym[right]) != size:
                continue  # stale: one side was merged since
            sym[left] += sym[right]
            sym[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] < n:
                prev[nxt[right]] = left
            bigram(prev[left], left)
            bigram(left, nxt[left])
        ids, i = [], 0
        while i < n:
            t = sym[i]
            if t in self.ids:
                ids.append(self.ids[t])
            else:
                ids.extend(self.ids[f"<0x{b:02X}>"] for b in t.encode())
            i = nxt[i]
        return ids


def prompt_ids(tok, spec, text):
    if spec.get("spm"):
        ids = spec["spm"].encode(text)
    else:
        ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids if spec["bos"] is None else [spec["bos"]] + ids


def load(spec):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=spec["gguf"])
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=spec["gguf"],
                                                 dtype=torch.float32, **spec["load"]).eval()
    return tok, model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    spec = MODELS[args.model]
    check_pins()
    import numpy as np
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if spec.get("spm_tokenizer"):
        spec["spm"] = SpmTokenizer(os.path.join(MODEL_DIR, spec["gguf"]))
    tok, model = load(spec)
    n_vocab = model.config.vocab_size
    out_path = os.path.join(FIXTURES, spec["out"])
    os.makedirs(FIXTURES, exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(b"SLMF")
        f.write(struct.pack("<III", len(spec["prompts"]), n_vocab, TOP_K))
        for text in spec["prompts"]:
            ids = prompt_ids(tok, spec, text)
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), max_new_tokens=spec["n_gen"],
                                     do_sample=False, pad_token_id=tok.eos_token_id)
                seq = out[0].tolist()
                logits = model(torch.tensor([seq])).logits[0]
            gen = seq[len(ids):]
            f.write(struct.pack("<II", len(ids), len(gen)))
            f.write(np.asarray(seq, "<i4").tobytes())
            # In row blocks: the long Gemma prompt's logits in float64 at
            # once would be 3 GB. Row-wise, so the same numbers as at once.
            for b in range(0, len(seq) - 1, 256):
                rows = logits[b:min(b + 256, len(seq) - 1)].double()
                lse = torch.logsumexp(rows, dim=-1)
                top = torch.topk(rows, TOP_K, dim=-1)
                for p in range(rows.shape[0]):
                    f.write(struct.pack("<f", float(lse[p])))
                    f.write(np.asarray(top.indices[p].tolist(), "<i4").tobytes())
                    f.write(np.asarray(top.values[p].tolist(), "<f4").tobytes())
            # generate() decoded with a KV cache; the stored logits come from
            # one uncached pass. Their argmax should be the generated tokens.
            am = logits[len(ids) - 1:len(seq) - 1].argmax(-1).tolist()
            diff = sum(a != g for a, g in zip(am, gen))
            print(f"{len(ids)}+{len(gen)} tokens, {diff} greedy tokens not the uncached argmax:",
                  repr(text[-40:]), "->", repr(tok.decode(gen)[:100]), flush=True)
    print(out_path, os.path.getsize(out_path), "bytes")


if __name__ == "__main__":
    main()
