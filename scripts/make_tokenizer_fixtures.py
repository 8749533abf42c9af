#!/usr/bin/env python3
"""make_tokenizer_fixtures.py — reference token ids for tests/test_tokenizer.c.

Pinned (checked below): tokenizers==0.22.2 sentencepiece==0.2.3 protobuf==7.36.2
gguf==0.17.1 (transformers==4.57.6 was used to check the statement below; the
script itself does not need it, nor torch).
  python3 -m pip install tokenizers==0.22.2 sentencepiece==0.2.3 protobuf==7.36.2 gguf==0.17.1

Byte-level BPE reference: the Hugging Face `tokenizers` library on the default
model's vocabulary and merges (models/SmolLM2-135M-Instruct.Q4_1.gguf,
tokenizer.ggml.pre = "smollm"). We build the `tokenizers` Tokenizer
EXPLICITLY rather than let transformers convert the GGUF: transformers
4.57.6's GGUF conversion (GGUFLlamaConverter for model "gpt2") gives the
pre-tokenizer ByteLevel(add_prefix_space=False, use_regex=True) alone, while
SmolLM2's real tokenizer.json splits digits first:
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
use_regex=True)] (and it cannot load a GGUF without torch anyway). So:
  BPE(vocab, merges) from the GGUF, that pre-tokenizer sequence, the
  ByteLevel decoder, and the 17 control tokens as special added tokens.
The other presets llama.cpp knows (gpt2, llama3, qwen2, default) are checked
with the same vocabulary under their pre-tokenizers, written as Hugging Face
pre-tokenizers: ByteLevel(use_regex=True) for gpt2; Split(regex, isolated)
steps + ByteLevel(use_regex=False) for the others (llama3 also with
ignore_merges=True). "isolated" Split keeps both matches and the gaps between
them, which is llama.cpp's rule.

SentencePiece reference: the `sentencepiece` library trains a small BPE
model (vocab 1000, byte_fallback, identity normalization, no whitespace
collapsing, user-defined symbols "<tool>" and "[INST]") on text generated
here with a fixed seed; the model goes into a tiny GGUF (tokenizer.ggml.model
= llama: tokens, scores, token types, bos/eos/unk ids, add_space_prefix) and
its own ids and decodes are recorded.

UTF-8 sanitizing reference: Python's bytes.decode("utf-8", "replace") on
random byte strings.

Outputs (committed), under tests/fixtures/tokenizer/:
  bpe_cases.txt   smollm preset and the four others, SmolLM2 vocabulary
  bpe_pieces.txt  the pre-tokenizer's split of each string under each preset
                  (Hugging Face pre_tokenize_str), field 3 = piece end byte
                  offsets: the vocabulary hides many split differences
                  (SmolLM2 has no multi-digit tokens), this does not
  spm_tiny.gguf   the SentencePiece model as GGUF
  spm_cases.txt   sentencepiece ids and decodes
  utf8_lossy.txt  byte strings and their lossy decodes
Line format (tab-separated, '#' lines are comments):
  tag  hex(text)  ids_with_specials  ids_without_specials  hex(decode)
ids are space-separated decimal, "-" for an empty list; hex "-" for empty.
"=" in ids_without_specials: same as ids_with_specials; "=" in the decode
field: same bytes as the text (keeps the files small).
tag: the preset (bpe), "spm", or "lossy" (ids fields are "-").
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PINS = {"tokenizers": "0.22.2", "sentencepiece": "0.2.3", "protobuf": "7.36.2", "gguf": "0.17.1"}


def check_pins():
    import importlib.metadata as md
    bad = []
    for p, v in PINS.items():
        try:
            have = md.version(p)
        except md.PackageNotFoundError:
            have = "none"
        if have != v:
            bad.append(f"{p}=={v} (have {have})")
    if bad:
        sys.exit("make_tokenizer_fixtures.py needs " + ", ".join(bad))


check_pins()
import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as spm_pb2  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

from tokenizer_strings import all_strings  # noqa: E402


# --- byte-level BPE -------------------------------------------------------------

GPT2_RE = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}")
DEFAULT_RES = [r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", r"[0-9][0-9][0-9]"]


def splits(regexes):
    return [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]


def bpe_pre(preset):
    bl_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bl_plain = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if preset == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bl_regex])
    if preset == "gpt2":
        return bl_regex
    if preset == "llama3":
        return pre_tokenizers.Sequence(splits([LLAMA3_RE]) + [bl_plain])
    if preset == "qwen2":
        return pre_tokenizers.Sequence(splits([QWEN2_RE]) + [bl_plain])
    if preset == "default":
        return pre_tokenizers.Sequence(splits(DEFAULT_RES) + [bl_plain])
    raise ValueError(preset)


def read_bpe_vocab():
    r = gguf.GGUFReader(MODEL)
    f = r.fields
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"].contents()]
    assert f["tokenizer.ggml.pre"].contents() == "smollm"
    return tokens, types, merges


def bpe_tokenizer(tokens, types, merges, preset):
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=(preset == "llama3")))
    tk.pre_tokenizer = bpe_pre(preset)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i in range(len(tokens)) if types[i] == 3])
    return tk


def piece_ends(tk, s):
    """Byte offsets where each pre-tokenizer piece of s ends."""
    byte_at = [0]
    for ch in s:
        byte_at.append(byte_at[-1] + len(ch.encode()))
    return [byte_at[end] for _piece, (_start, end) in tk.pre_tokenizer.pre_tokenize_str(s)]


def bpe_pieces(strings):
    tokens, types, merges = read_bpe_vocab()
    lines = []
    for preset in ["smollm", "gpt2", "llama3", "qwen2", "default"]:
        tk = bpe_tokenizer(tokens, types, merges, preset)
        for s in strings:
            lines.append("\t".join([preset, hex_str(s.encode()), ids_str(piece_ends(tk, s)), "-",
                                    "-"]))
    return lines


def same_or(field, other):
    return "=" if field == other else field


def ids_str(ids):
    return " ".join(str(i) for i in ids) if ids else "-"


def hex_str(b):
    return b.hex() if b else "-"


def bpe_cases(strings):
    tokens, types, merges = read_bpe_vocab()
    lines = []
    for preset in ["smollm", "gpt2", "llama3", "qwen2", "default"]:
        tk = bpe_tokenizer(tokens, types, merges, preset)
        subset = strings if preset == "smollm" else strings[::2]
        for s in subset:
            tk.encode_special_tokens = False
            with_sp = tk.encode(s, add_special_tokens=False).ids
            tk.encode_special_tokens = True
            without = tk.encode(s, add_special_tokens=False).ids
            dec = tk.decode(with_sp, skip_special_tokens=False)
            lines.append("\t".join([preset, hex_str(s.encode()), ids_str(with_sp),
                                    same_or(ids_str(without), ids_str(with_sp)),
                                    same_or(hex_str(dec.encode()), hex_str(s.encode()))]))
    return lines


# --- SentencePiece ----------------------------------------------------------------

WORDS = ("the of and to in is was for on that with as by at from his her they this which "
         "model token text language learning machine data train test run small fast cheap "
         "memory bandwidth compute kernel matrix vector cache batch prompt sample decode "
         "encode byte piece merge score vocabulary unicode space tab newline number letter "
         "house water river mountain city country people time year day night light dark "
         "running jumped quickly beautiful understanding information international "
         "don't can't it's we're they'll I'm you've she'd").split()
EXTRA_LINES = [
    "안녕하세요 세계 한국어 문장입니다", "저는 학생입니다 오늘 날씨가 좋습니다",
    "你好世界 我喜欢学习中文 机器学习", "こんにちは 日本語の文章です",
    "Привет мир это русский текст", "def main(): return 0", "x = y + 1; z = x * 2",
    "1 2 3 4 5 6 7 8 9 10 100 1000 2024", "Hello, World! How are you? Fine.",
    "café naïve résumé coöperate", "<tool> call </tool>", "[INST] question [/INST] answer",
]


def spm_training_lines():
    rng = random.Random(99)
    lines = []
    for _ in range(4000):
        n = rng.randint(3, 14)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice([".", ",", "!", "?", "", ":"]))
    for _ in range(40):
        lines.extend(EXTRA_LINES)
    return lines


def spm_model():
    import io
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(spm_training_lines()), model_writer=buf, vocab_size=1000,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=False,
        user_defined_symbols=["<tool>", "[INST]"], character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, seed_sentencepiece_size=100000,
        minloglevel=2)
    return buf.getvalue()


def write_spm_gguf(model_bytes, path):
    proto = spm_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    tokens = [p.piece for p in proto.pieces]
    scores = [p.score for p in proto.pieces]
    types = [int(p.type) for p in proto.pieces]  # sentencepiece's enum = GGUF token_type
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def spm_cases(strings, model_bytes):
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    lines = []
    for s in strings:
        ids = sp.encode(s)
        dec = sp.decode(ids)
        lines.append("\t".join(["spm", hex_str(s.encode()), ids_str(ids), "=",
                                same_or(hex_str(dec.encode()), hex_str(s.encode()))]))
    return lines


# --- lossy UTF-8 --------------------------------------------------------------------

def lossy_cases():
    rng = random.Random(7)
    hand = [b"\xff", b"\xc0\x80", b"\xe2\x82", b"\xe2\x82a", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98", b"\x80\x80", b"a\xf0\x9f\x98\x80b", b"\xe0\x80\xaf", b"\xf5\x80"]
    alphabet = [b"a", b" ", b"\x80", b"\xbf", b"\xc2", b"\xc3\xa9", b"\xe2", b"\x82", b"\xac",
                b"\xed", b"\xa0", b"\xf0", b"\x9f", b"\x98", b"\xf4", b"\x90", b"\xff", b"\xe0"]
    rnd = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(150)]
    rnd += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) for _ in range(50)]
    return ["\t".join(["lossy", b.hex(), "-", "-", hex_str(b.decode("utf-8", "replace").encode())])
            for b in hand + rnd]


HEADER = "# generated by scripts/make_tokenizer_fixtures.py - do not edit\n"


def write_lines(name, lines):
    with open(os.path.join(OUT, name), "w", encoding="ascii") as f:
        f.write(HEADER)
        for line in lines:
            f.write(line + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    strings = all_strings()
    assert len(strings) >= 200, len(strings)
    write_lines("bpe_cases.txt", bpe_cases(strings))
    write_lines("bpe_pieces.txt", bpe_pieces(strings))
    model_bytes = spm_model()
    write_spm_gguf(model_bytes, os.path.join(OUT, "spm_tiny.gguf"))
    write_lines("spm_cases.txt", spm_cases(strings, model_bytes))
    write_lines("utf8_lossy.txt", lossy_cases())
    print(f"wrote {len(strings)} strings to {OUT}")


if __name__ == "__main__":
    main()
