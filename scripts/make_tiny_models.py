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

Usage: make_tiny_models.py llama | all | FAMILY...   ("all" = every family below, not llama;
the llama files are only rewritten when "llama" is named).

Other families: tiny-<family>-{f16,q8_0,q4_k}.{gguf,logits}. Each is a transformers model
(attn_implementation="eager") built from its config: hidden 256, 2 layers, FFN 256, vocab
256 (the llama fixture's byte-level token list and tokenizer keys), initializer_range 0.08,
every norm weight and bias made random (norms 1+0.3·N(0,1), Gemma offsets 0.3·N(0,1),
biases 0.2·N(0,1)) so a missing or mis-offset norm or a dropped bias shows. Files follow
llama.cpp's convert_hf_to_gguf.py: its arch name, its keys, its tensor names (via gguf-py's
tensor name map) and its transforms. 2-D weights are F16 / Q8_0 / Q4_K (a Q4_K tensor whose
row length is not a multiple of 256 would be kept Q8_0 and reported; none is at these
sizes), 1-D tensors (norms, biases) F32. Reference logits: the same HF model with its 2-D
weights replaced by exactly the values the file holds (dequantized with gguf.quants, mapped
back through the inverse row order), so the comparison is exact in the weights; the F16
logits are asserted within 0.02 of the F32 model's (measured 0.003-0.010). Also checked when
written: each feature listed as "bites" moves the logits by > 0.05 when switched off.
Sliding window: a query at position i sees keys j with i - j < 16 (16 tokens incl. itself);
sequences are 48 long. Tokens: the llama fixture's. Keys common to all: context_length 256,
embedding_length, block_count, feed_forward_length, attention.head_count, general.file_type.

| family | HF class (config) | GGUF arch | what the file exercises |
| --- | --- | --- | --- |
| gemma3 | Gemma3ForCausalLM (Gemma3TextConfig) | gemma3 | RMSNorm eps 1e-6, every norm stored +1 (attn_norm, post_attention_norm, ffn_norm, post_ffw_norm, output_norm, attn_q_norm/attn_k_norm over head_dim 64); GELU-tanh GeGLU; emb × sqrt(256); NEOX rope, 64 dims, base 1e6 on global layers, rope.freq_base_swa 10000 on sliding ones (bites: 2.2); n_head 4, n_kv 1; attn scale 1/sqrt(head_dim) (query_pre_attn_scalar = 64); layer 0 sliding (window 16, bites: 3.4), layer 1 global via attention.sliding_window_pattern = 2 (u32); tied output (no output.weight); keys key_length/value_length 64, no softcaps. |
| gemma2 | Gemma2ForCausalLM | gemma2 | as gemma3 but no q/k norms, one rope base 10000 (no freq_base_swa), n_kv 2; attn_logit_softcapping 5.0 (bites: 1.1), final_logit_softcapping 3.0 (bites: 10.9; logits within ±3); sliding_window 16, NO sliding_window_pattern key (llama.cpp's gemma2 default 2: layer 0 sliding, layer 1 global; bites: 3.3); tied output. |
| qwen2 | Qwen2ForCausalLM | qwen2 | RMSNorm 1e-6, SwiGLU, q/k/v biases (attn_q/k/v.bias), NEOX rope full head (no rope.dimension_count key: n_rot = head_dim 64), base 1e6, n_head 4, n_kv 2, untied output. |
| qwen3 | Qwen3ForCausalLM | qwen3 | RMSNorm 1e-6, SwiGLU, no biases, attn_q_norm/attn_k_norm (RMS over head_dim, before rope), head_dim 128 ≠ hidden/n_head (attn_q 256→512, attn_output 512→256; key_length/value_length 128), n_head 4, n_kv 1, NEOX rope 128 dims base 1e6, tied output. |
| phi3 | Phi3ForCausalLM | phi3 | RMSNorm 1e-5; fused attn_qkv ([q;k;v] rows, 256+128+128) and fused ffn_up ([gate;up] rows, 2×256; SwiGLU on the halves: silu(first)·second) as HF has them; NEOX rope 64 dims base 10000; n_kv 2; keys rope.scaling.original_context_length 256, rope.dimension_count 64, attention.sliding_window 2047 (Phi-3-mini's value; llama.cpp disables Phi SWA and at 48 tokens it cannot matter). |
| stablelm | StableLmForCausalLM | stablelm | LayerNorm with bias (eps key attention.layer_norm_epsilon 1e-5) for attn_norm, ffn_norm, output_norm; q/k/v biases; SwiGLU; partial NEOX rope: rope.dimension_count 16 of head 64 (factor 0.25); n_kv 2; use_parallel_residual false (sequential); no rope.freq_base key (converter writes none; 10000). |
| gptneox | GPTNeoXForCausalLM | gptneox | LayerNorm with bias (eps 1e-5) everywhere; fused attn_qkv reordered by the converter from per-head [q_h;k_h;v_h] to [q;k;v] (weight and bias); biases on attn_qkv, attn_output, ffn_up, ffn_down; GELU (HF "gelu" = erf; llama.cpp uses its tanh GELU here), no gate; partial NEOX rope 32 of 64 dims (rotary_pct 0.5); use_parallel_residual true (x + attn(ln1 x) + mlp(ln2 x)); no head_count_kv and no rope.freq_base keys (converter writes neither; 4 heads, 10000). |
| exaone | LlamaForCausalLM standing in for ExaoneForCausalLM | exaone | EXAONE 3/3.5 is remote code with llama's math (RMSNorm, SwiGLU, rotate_half rope on the whole head, GQA, no biases). Its HF names transformer.wte / h.N.ln_1 / attn.attention.{q,k,v,out}_proj / ln_2 / mlp.c_fc_0 (gate) / c_fc_1 (up) / c_proj / ln_f / lm_head map to the same GGUF names as llama's, so the llama model's tensors are written under them. The converter's ExaoneModel is a plain TextModel: NO Q/K row permutation, and llama.cpp runs exaone with NEOX rope, which equals HF's rotate_half on unpermuted rows: the file's math is the HF llama model's. Keys: rope.dimension_count 64, rope.freq_base 10000, attention.layer_norm_rms_epsilon 1e-5 (what llama.cpp's exaone loader requires and older converters wrote from layer_norm_epsilon; today's converter would write it as attention.layer_norm_epsilon). n_kv 2, untied. |
| mistral | MistralForCausalLM | llama | the llama converter (MistralForCausalLM is registered to LlamaModel): Q/K rows permuted for NORM rope, vocab_size and rope.dimension_count keys; n_kv 2; PLUS llama.attention.sliding_window 16 on every layer (bites: 6.4) — the converter drops Mistral's sliding_window and llama.cpp's llama graph ignores it, so this key is our addition for slm to honour. |
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


# ---------------------------------------------------------------------------
# The other families (see the table in the module docstring).
# ---------------------------------------------------------------------------

FAM_COMMON = dict(vocab_size=N_VOCAB, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                  max_position_embeddings=256, tie_word_embeddings=False, initializer_range=0.08,
                  bos_token_id=1, eos_token_id=2, pad_token_id=None, attn_implementation="eager")
WINDOW = 16  # sliding window (tokens a query sees, itself included); sequences are 48 long


def fam_config(family):
    """(transformers model class, its config, GGUF arch name, extra facts) for one family."""
    import transformers as tf
    c = dict(FAM_COMMON)
    if family == "gemma3":
        c.update(num_attention_heads=4, num_key_value_heads=1, head_dim=64, rms_norm_eps=1e-6,
                 query_pre_attn_scalar=64, rope_theta=1e6, rope_local_base_freq=10000.0,
                 sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
                 tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh")
        return tf.Gemma3ForCausalLM, tf.Gemma3TextConfig(**c), "gemma3"
    if family == "gemma2":
        c.update(num_attention_heads=4, num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-6,
                 query_pre_attn_scalar=64, rope_theta=10000.0, sliding_window=WINDOW,
                 layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=True,
                 attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                 hidden_activation="gelu_pytorch_tanh")
        return tf.Gemma2ForCausalLM, tf.Gemma2Config(**c), "gemma2"
    if family == "qwen2":
        c.update(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                 use_sliding_window=False)
        return tf.Qwen2ForCausalLM, tf.Qwen2Config(**c), "qwen2"
    if family == "qwen3":
        c.update(num_attention_heads=4, num_key_value_heads=1, head_dim=128, rms_norm_eps=1e-6,
                 rope_theta=1e6, tie_word_embeddings=True, attention_bias=False,
                 use_sliding_window=False)
        return tf.Qwen3ForCausalLM, tf.Qwen3Config(**c), "qwen3"
    if family == "phi3":
        c.update(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                 original_max_position_embeddings=256, sliding_window=2047, hidden_act="silu")
        return tf.Phi3ForCausalLM, tf.Phi3Config(**c), "phi3"
    if family == "stablelm":
        c.update(num_attention_heads=4, num_key_value_heads=2, layer_norm_eps=1e-5, rope_theta=10000.0,
                 partial_rotary_factor=0.25, use_qkv_bias=True, qk_layernorm=False,
                 use_parallel_residual=False, hidden_act="silu")
        return tf.StableLmForCausalLM, tf.StableLmConfig(**c), "stablelm"
    if family == "gptneox":
        c.update(num_attention_heads=4, layer_norm_eps=1e-5, rotary_pct=0.5, rotary_emb_base=10000.0,
                 use_parallel_residual=True, attention_bias=True, hidden_act="gelu")
        return tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig(**c), "gptneox"
    if family == "mistral":
        c.update(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                 sliding_window=WINDOW, head_dim=64)
        return tf.MistralForCausalLM, tf.MistralConfig(**c), "llama"
    if family == "exaone":
        # EXAONE 3/3.5 is remote code; its math is llama's (RMSNorm, SwiGLU, rotate_half rope
        # over the whole head, GQA, no biases), so a LlamaForCausalLM stands in for it.
        c.update(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0)
        return tf.LlamaForCausalLM, tf.LlamaConfig(**c), "exaone"
    raise ValueError(family)


FAMILIES = ["gemma3", "gemma2", "qwen2", "qwen3", "phi3", "stablelm", "gptneox", "exaone", "mistral"]


def randomize_norms_and_biases(model, family, gen):
    """Norm weights and biases are constant at init (ones / zeros); make them random so a
    missing or mis-offset norm, or a dropped bias, changes the logits."""
    gemma = family.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim != 1:
                continue
            r = torch.randn(p.shape, generator=gen)
            if name.endswith("bias"):
                p.copy_(0.2 * r)
            elif gemma:  # Gemma's RMSNorm scales by (1 + w): w is the offset
                p.copy_(0.3 * r)
            else:
                p.copy_(1.0 + 0.3 * r)


def neox_qkv_reorder(t, n_head):
    """convert_hf_to_gguf (GPTNeoXModel): per-head interleaved [q_h;k_h;v_h] rows -> [q;k;v]."""
    x = t.reshape(n_head, 3, t.shape[0] // n_head // 3, *t.shape[1:])
    return np.concatenate([x[:, 0].reshape(-1, *t.shape[1:]), x[:, 1].reshape(-1, *t.shape[1:]),
                           x[:, 2].reshape(-1, *t.shape[1:])], axis=0)


def gguf_tensors(family, arch, cfg, sd):
    """[(gguf name, HF name, transform)]: the converter's names and transforms, where
    transform maps the HF tensor (numpy) to the GGUF one. 2-D transforms only permute rows."""
    name_arch = gguf.MODEL_ARCH.LLAMA if family == "exaone" else \
        next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    tmap = gguf.get_tensor_name_map(name_arch, cfg.num_hidden_layers)
    n_head = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", n_head)
    out = []
    for hf in sd:
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied: the file has token_embd only (converter skips lm_head)
        if "rotary_emb" in hf or hf.endswith("masked_bias") or hf.endswith(".attention.bias"):
            continue
        gg = tmap.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert gg is not None, f"{family}: no GGUF name for {hf}"
        fn = None
        if family.startswith("gemma") and hf.endswith("norm.weight"):
            fn = lambda t: (t + 1).astype(np.float32)  # noqa: E731  (all norms, q/k norms too)
        elif family == "mistral" and hf.endswith("q_proj.weight"):
            fn = lambda t: permute(t, n_head)  # noqa: E731  llama-style NORM rope
        elif family == "mistral" and hf.endswith("k_proj.weight"):
            fn = lambda t: permute(t, n_kv)  # noqa: E731
        elif family == "gptneox" and "query_key_value" in hf:
            fn = lambda t: neox_qkv_reorder(t, n_head)  # noqa: E731
        out.append((gg, hf, fn))
    names = [g for g, _, _ in out]
    assert len(names) == len(set(names)), f"{family}: duplicate GGUF names"
    return out


def write_family_kv(w, family, arch, cfg, ftype):
    """The keys convert_hf_to_gguf.py writes for this family (plus the shared tokenizer)."""
    a = arch
    w.add_name(f"tiny-{family}")
    w.add_file_type(ftype)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    hd = cfg.hidden_size // cfg.num_attention_heads
    if family == "gptneox":
        w.add_rope_dimension_count(int(cfg.rotary_pct * hd))
        w.add_parallel_residual(cfg.use_parallel_residual)
        w.add_layer_norm_eps(cfg.layer_norm_eps)
        # converter writes no rope.freq_base (llama.cpp default 10000) and no head_count_kv
    elif family == "stablelm":
        w.add_rope_dimension_count(int(cfg.partial_rotary_factor * hd))
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_parallel_residual(cfg.use_parallel_residual)
        w.add_layer_norm_eps(cfg.layer_norm_eps)
        # converter writes no rope.freq_base for stablelm (llama.cpp default 10000)
    elif family == "phi3":
        w.add_rope_scaling_orig_ctx_len(cfg.original_max_position_embeddings)
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        w.add_rope_dimension_count(int(cfg.partial_rotary_factor * cfg.hidden_size) // cfg.num_attention_heads)
        w.add_rope_freq_base(cfg.rope_theta)
        w.add_sliding_window(cfg.sliding_window or 0)
    else:
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        w.add_rope_freq_base(cfg.rope_theta)
        if family in ("gemma3", "gemma2", "qwen3"):
            w.add_key_length(cfg.head_dim)
            w.add_value_length(cfg.head_dim)
        if family == "gemma3":
            w.add_float32(f"{a}.rope.freq_base_swa", cfg.rope_local_base_freq)
            w.add_sliding_window(cfg.sliding_window)
            # not written by the converter (real Gemma 3 uses llama.cpp's default, 6); with
            # 2 layers we need layer 0 sliding and layer 1 global: il % 2 < 1
            w.add_uint32(f"{a}.attention.sliding_window_pattern", 2)
        if family == "gemma2":
            w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
            w.add_final_logit_softcapping(cfg.final_logit_softcapping)
            w.add_sliding_window(cfg.sliding_window)
            # no sliding_window_pattern: llama.cpp's gemma2 default (2) gives layer 0 sliding
        if family in ("mistral", "exaone"):
            w.add_rope_dimension_count(hd)
        if family == "mistral":
            w.add_vocab_size(N_VOCAB)
            # NOT written by convert_hf_to_gguf.py (it drops Mistral's sliding_window, and
            # llama.cpp's llama graph has no SWA); written here so the window is testable.
            w.add_sliding_window(cfg.sliding_window)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(byte_tokens())
    w.add_token_types([1] * N_VOCAB)
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)


def roundtrip(g, qtype):
    """(encoded data, raw dtype or None, qtype used, dequantized values) of a 2-D GGUF tensor."""
    if qtype == QT.F16:
        data = g.astype(np.float16)
        return data, None, QT.F16, data.astype(np.float32)
    if qtype == QT.Q4_K and g.shape[1] % 256 != 0:
        qtype = QT.Q8_0  # K-quants need rows of 256: such a tensor stays Q8_0
    data = quantize_q4_k(g) if qtype == QT.Q4_K else gguf.quants.quantize(g.astype(np.float32), qtype)
    deq = gguf.quants.dequantize(data, qtype).reshape(g.shape).astype(np.float32)
    return data, qtype, qtype, deq


FTYPES = {QT.F16: gguf.LlamaFileType.MOSTLY_F16, QT.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
          QT.Q4_K: gguf.LlamaFileType.MOSTLY_Q4_K_S}


def write_family_gguf(path, family, arch, cfg, sd, qtype):
    """Writes the file; returns {HF name: the 2-D values the file holds, in HF layout}."""
    w = gguf.GGUFWriter(path, arch)
    write_family_kv(w, family, arch, cfg, FTYPES[qtype])
    held, kept_q8 = {}, []
    for gg, hf, fn in gguf_tensors(family, arch, cfg, sd):
        t = sd[hf].float().numpy()
        g = fn(t) if fn is not None else t
        if g.ndim == 1:
            w.add_tensor(gg, g.astype(np.float32))
            continue
        data, raw, used, deq = roundtrip(g.astype(np.float32), qtype)
        if used != qtype:
            kept_q8.append(gg)
        w.add_tensor(gg, data, raw_dtype=raw) if raw is not None else w.add_tensor(gg, data)
        # back to HF layout: the transforms of 2-D tensors only reorder rows
        perm = (fn(np.arange(g.shape[0], dtype=np.float64)[:, None]).ravel().astype(np.int64)
                if fn is not None else np.arange(g.shape[0]))
        held[hf] = deq[np.argsort(perm)]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if kept_q8:
        print(f"  {os.path.basename(path)}: kept Q8_0 (row length not a multiple of 256): {kept_q8}")
    return held


def family_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.float().numpy()


def make_family(family, tokens):
    cls, cfg, arch = fam_config(family)
    torch.manual_seed(SEED + 1 + FAMILIES.index(family))
    model = cls(cfg).eval()
    gen = torch.Generator().manual_seed(SEED + 100 + FAMILIES.index(family))
    randomize_norms_and_biases(model, family, gen)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    base = family_logits(model, tokens)
    print(f"{family}: {type(model).__name__}, arch {arch}, logits std {base.std():.3f}, "
          f"max |logit| {np.abs(base).max():.3f}")
    feature_checks(family, cls, cfg, sd, tokens, base)
    for qname, qtype in [("f16", QT.F16), ("q8_0", QT.Q8_0), ("q4_k", QT.Q4_K)]:
        path = os.path.join(OUT, f"tiny-{family}-{qname}.gguf")
        held = write_family_gguf(path, family, arch, cfg, sd, qtype)
        ref = cls(cfg).eval()
        new_sd = dict(sd)
        for hf, v in held.items():
            new_sd[hf] = torch.from_numpy(v)
        if cfg.tie_word_embeddings:  # else the F32 lm_head copy would overwrite the tied weight
            new_sd.pop("lm_head.weight", None)
        missing, unexpected = ref.load_state_dict(new_sd, strict=False)
        assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
        if cfg.tie_word_embeddings:
            assert ref.lm_head.weight.data_ptr() == ref.get_input_embeddings().weight.data_ptr()
        logits = family_logits(ref, tokens)
        d = np.abs(logits - base).max()
        if qtype == QT.F16:
            assert d < 0.02, f"{family}: F16 weights move the logits by {d}"
        write_logits(os.path.join(OUT, f"tiny-{family}-{qname}.logits"), tokens, logits)
        print(f"  {os.path.basename(path)}: {os.path.getsize(path)} bytes, "
              f"max |logit - F32 model| {d:.4f}")


def feature_checks(family, cls, cfg, sd, tokens, base):
    """Each feature the fixture is meant to exercise must change the logits."""
    def variant(**over):
        c = cfg.__class__(**{**cfg.to_dict(), **over})
        c._attn_implementation = "eager"
        m = cls(c).eval()
        m.load_state_dict(sd, strict=False)
        return np.abs(family_logits(m, tokens) - base).max()
    checks = {}
    if family in ("gemma3", "gemma2", "mistral"):
        if family == "mistral":
            checks["sliding window"] = variant(sliding_window=None)
        else:
            checks["sliding window"] = variant(layer_types=["full_attention", "full_attention"])
    if family == "gemma2":
        checks["attn soft-cap"] = variant(attn_logit_softcapping=None)
        checks["final soft-cap"] = variant(final_logit_softcapping=None)
    if family == "gemma3":
        checks["local rope base"] = variant(rope_local_base_freq=1e6)
    for k, v in checks.items():
        print(f"  {k}: logits move by up to {v:.3f} without it")
        assert v > 0.05, f"{family}: {k} does not bite"
    if family == "gemma2":
        assert np.abs(base).max() < cfg.final_logit_softcapping


def main_families(families):
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    tokens = rng.integers(0, N_VOCAB, size=(N_SEQ, SEQ_LEN))  # the llama fixture's tokens
    for f in families:
        make_family(f, tokens)


def main_llama():
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


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: make_tiny_models.py llama | all | FAMILY... (" + " ".join(FAMILIES) + ")")
    if "llama" in args:
        main_llama()
    fams = FAMILIES if "all" in args else [a for a in args if a != "llama"]
    main_families(fams)


if __name__ == "__main__":
    main()
