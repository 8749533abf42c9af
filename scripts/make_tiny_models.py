#!/usr/bin/env python3
"""make_tiny_models.py — tiny random-weight llama fixtures with reference logits.

Builds a random-weight LlamaForCausalLM from a transformers config (fixed
seed; dimensions multiples of 256 so K-quants apply), writes it to GGUF with
the `gguf` package in F32, F16, Q8_0 and Q4_K (2-D weights; norms stay F32),
then lets transformers load each GGUF back (transformers dequantizes it
itself) and records its logits for fixed token sequences. slm's tests
(tests/test_tiny_models.c) run the same files and compare.

Pinned: torch==2.9.1 transformers==4.57.6 accelerate==1.11.0 gguf==0.17.1 numpy (1.26+/2.x).
gguf-py cannot quantize Q4_K, so this script does (a plain min/max scheme,
written here from the block layout in ../shared/gguf-facts.md §3.11); the
reference logits come from transformers' own dequantization of the file, so
the comparison is exact in the weights either way.

Outputs (committed): tests/fixtures/tiny/tiny-llama-{f32,f16,q8_0,q4_k}.gguf
and tiny-llama-{...}.logits (format: see write_logits).
"""
import os
import struct
import sys

import numpy as np

PINS = {"torch": "2.9.1", "transformers": "4.57.6", "accelerate": "1.11.0", "gguf": "0.17.1"}


def check_pins():
    import importlib.metadata as md
    bad = [f"{p}=={v} (have {md.version(p)})" for p, v in PINS.items() if md.version(p) != v]
    if bad:
        sys.exit("make_tiny_models.py needs " + ", ".join(bad))


check_pins()
import gguf  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tiny")
SEED = 1234
N_VOCAB = 256
CFG = dict(vocab_size=N_VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
           rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
           bos_token_id=1, eos_token_id=2, initializer_range=0.08)
# Token sequences whose logits are recorded (all positions).
N_SEQ, SEQ_LEN = 3, 48


def byte_tokens():
    """The 256 GPT-2 byte-level symbols, so the file has a usable vocabulary."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def permute(w, n_head):
    """convert_hf_to_gguf's Q/K row order for llama (NORM rope on GGUF weights)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def f16_bits(x):
    return np.asarray(x, dtype=np.float16).view(np.uint16)


def quantize_q4_k(x):
    """Q4_K blocks for rows of x (row length a multiple of 256), min/max per sub-block."""
    rows, n = x.shape
    blocks = x.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(blocks.min(axis=2), 0.0)             # (B, 8) <= 0
    hi = blocks.max(axis=2)
    scale = np.maximum(hi - lo, 1e-12) / 15.0              # per sub-block
    mins = -lo                                             # >= 0
    d = scale.max(axis=1) / 63.0
    dmin = np.maximum(mins.max(axis=1), 1e-12) / 63.0
    d16 = np.asarray(d, np.float16).astype(np.float32)
    dmin16 = np.asarray(dmin, np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.maximum(d16, 1e-30)[:, None]), 1, 63).astype(np.uint8)
    mq = np.clip(np.rint(mins / np.maximum(dmin16, 1e-30)[:, None]), 0, 63).astype(np.uint8)
    eff_s = d16[:, None] * sc
    eff_m = dmin16[:, None] * mq
    q = np.clip(np.rint((blocks + eff_m[:, :, None]) / eff_s[:, :, None]), 0, 15).astype(np.uint8)
    B = blocks.shape[0]
    S = np.zeros((B, 12), np.uint8)
    S[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    S[:, 4:8] = (mq[:, 0:4] & 63) | ((mq[:, 4:8] >> 4) << 6)
    S[:, 8:12] = (sc[:, 4:8] & 15) | ((mq[:, 4:8] & 15) << 4)
    q = q.reshape(B, 4, 2, 32)                             # chunk c, half, r
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(B, 128)
    out = np.concatenate([f16_bits(d16).view(np.uint8).reshape(B, 2),
                          f16_bits(dmin16).view(np.uint8).reshape(B, 2), S, qs], axis=1)
    return out.reshape(rows, (n // 256) * 144)


def encode(w, qtype):
    if qtype == QT.F32:
        return w.astype(np.float32), None
    if qtype == QT.Q4_K:
        return quantize_q4_k(w), QT.Q4_K
    return gguf.quants.quantize(w.astype(np.float32), qtype), qtype


def write_gguf(path, sd, qtype):
    cfg = CFG
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_vocab_size(N_VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(byte_tokens())
    w.add_token_types([1] * N_VOCAB)
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for l in range(cfg["num_hidden_layers"]):
        for hf, gg in per_layer.items():
            names[f"model.layers.{l}.{hf}.weight"] = f"blk.{l}.{gg}.weight"
    for hf, gg in names.items():
        t = sd[hf].float().numpy()
        if hf.endswith("q_proj.weight"):
            t = permute(t, cfg["num_attention_heads"])
        elif hf.endswith("k_proj.weight"):
            t = permute(t, cfg["num_key_value_heads"])
        if t.ndim == 1:
            w.add_tensor(gg, t.astype(np.float32))
        else:
            data, raw = encode(t, qtype)
            w.add_tensor(gg, data, raw_dtype=raw) if raw is not None else w.add_tensor(gg, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_logits(path, tokens, logits):
    """Little-endian: magic 'SLMR', u32 n_seq, u32 seq_len, u32 n_vocab,
    then i32 tokens[n_seq][seq_len], then f32 logits[n_seq][seq_len][n_vocab]."""
    with open(path, "wb") as f:
        f.write(b"SLMR")
        f.write(struct.pack("<III", N_SEQ, SEQ_LEN, N_VOCAB))
        f.write(np.asarray(tokens, "<i4").tobytes())
        f.write(np.asarray(logits, "<f4").tobytes())


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**CFG)).eval()
    sd = model.state_dict()
    rng = np.random.default_rng(SEED)
    tokens = rng.integers(0, N_VOCAB, size=(N_SEQ, SEQ_LEN))
    for name, qtype in [("f32", QT.F32), ("f16", QT.F16), ("q8_0", QT.Q8_0), ("q4_k", QT.Q4_K)]:
        path = os.path.join(OUT, f"tiny-llama-{name}.gguf")
        write_gguf(path, sd, qtype)
        ref = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=os.path.basename(path),
                                                   torch_dtype=torch.float32).eval()
        with torch.no_grad():
            logits = ref(torch.tensor(tokens)).logits.numpy()
        if name == "f32":  # the GGUF round trip must not change the model
            with torch.no_grad():
                direct = model(torch.tensor(tokens)).logits.numpy()
            assert np.abs(direct - logits).max() < 1e-4, "F32 GGUF differs from the HF model"
        write_logits(os.path.join(OUT, f"tiny-llama-{name}.logits"), tokens, logits)
        print(f"{path}: {os.path.getsize(path)} bytes, logits std {logits.std():.3f}")


if __name__ == "__main__":
    main()
