#!/usr/bin/env python3
"""make_gemma_tokenizer_fixtures.py — llama.cpp's token ids for Gemma 3's
SentencePiece tokenizer, for tests/test_tokenizer.c (test_spm_gemma3).

Reference: llama.cpp's llama-tokenize, build 11434 (libllama 0.6.0-dev; the
peer build under ~/.cache/slm-peers/llama.cpp-11434.0.0), on
gemma-3-270m-q4_k_m.gguf (262,144 tokens, tokenizer.ggml.model "llama",
add_space_prefix false). Each string is fed byte-exactly on stdin
(--stdin --no-escape) without BOS (--no-bos), once with special-token
parsing (llama-tokenize's default) and once without (--no-parse-special).
No Python packages are needed beyond the standard library.

  scripts/make_gemma_tokenizer_fixtures.py [MODEL] [LLAMA_TOKENIZE]

MODEL defaults to models/gemma-3-270m-q4_k_m.gguf, then
~/.cache/slm-peers/models/gemma-3-270m-q4_k_m.gguf; LLAMA_TOKENIZE to
$LLAMA_TOKENIZE, then the peer build's bin/llama-tokenize.

Output (committed): tests/fixtures/tokenizer/gemma3_cases.txt, in the line
format of make_tokenizer_fixtures.py (tag "gemma3", hex(text), ids with
special parsing, ids without ("=" when equal), and the decode field).
NOTE: the decode field is not from llama.cpp (llama-tokenize does not
detokenize): it is the text with each literal "▁" read as a space, the
property the test checks ("=" when that is the text itself), which holds
for Gemma (no space prefix, byte fallback, every text parsed as a special
token decodes to itself).
"""
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_strings import all_strings  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "gemma3_cases.txt")
NAME = "gemma-3-270m-q4_k_m.gguf"
PEERS = os.path.expanduser("~/.cache/slm-peers")
LLAMA_BUILD = "11434"

# Gemma's own markers and neighbours of them, whitespace runs around the
# lengths Gemma has whole tokens for, and text Gemma's vocabulary treats
# specially (HTML-ish tags and <unusedN> are user-defined tokens there).
GEMMA = [
    "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nWrite a poem.<end_of_turn>\n<start_of_turn>model\nRoses<end_of_turn>\n",
    "<start_of_turn>", "<end_of_turn>", "<start_of_turn", "end_of_turn>", "<bos>", "<eos>",
    "<pad>", "<unk>", "<mask>", "[@BOS@]", "<start_of_image>", "<end_of_image>",
    "<image_soft_token>", "<unused0>", "<unused99>", "text<end_of_turn>more",
    " <start_of_turn> ", "<start_of_turn><start_of_turn>x", "<<start_of_turn>>",
    "<table><tr><td>cell</td></tr></table>", "<h1>Title</h1>\n<br>", "<div>\n</div>",
    "<|im_start|>user\nHi<|im_end|>", "[INST] hi [/INST]", "<s>x</s>",
]
WS_RUNS = [" " * n for n in (1, 2, 3, 7, 8, 15, 16, 17, 30, 31, 32, 33, 64)] + \
    ["\n" * n for n in (1, 2, 3, 5, 8, 31, 32, 33)] + \
    ["\t" * n for n in (1, 2, 4, 9)] + \
    ["x" + " " * 31 + "y", "x\n\n\n\n\ny", "  \n  \n", " \t \t ", "\r\n\r\n", "a" + "\u3000" * 3]
INVALID = [b"\xff", b"\x80abc", b"caf\xc3", b"\xe2\x96", b"ok\xf0\x9f\x98", b"\xc0\xaf", b"a\x00b"]


def find_model(arg):
    for p in ([arg] if arg else []) + [os.path.join(ROOT, "models", NAME),
                                       os.path.join(PEERS, "models", NAME)]:
        if os.path.exists(p):
            return p
    sys.exit(f"make_gemma_tokenizer_fixtures.py: {NAME} not found (scripts/fetch-model)")


def find_tool(arg):
    p = arg or os.environ.get("LLAMA_TOKENIZE") or \
        os.path.join(PEERS, f"llama.cpp-{LLAMA_BUILD}.0.0", "bin", "llama-tokenize")
    if not os.path.exists(p):
        sys.exit(f"make_gemma_tokenizer_fixtures.py: llama-tokenize not found at {p}")
    return p


def llama_ids(tool, model, data, special):
    args = [tool, "-m", model, "--stdin", "--no-escape", "--no-bos", "--ids", "--log-disable"]
    if not special:
        args.append("--no-parse-special")
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(tool))
    r = subprocess.run(args, input=data, capture_output=True, env=env, check=True)
    line = r.stdout.decode().strip().splitlines()[-1]
    assert line.startswith("[") and line.endswith("]"), line
    return [int(x) for x in line[1:-1].split(",") if x.strip()]


def strings():
    rng = random.Random(2718)
    pool = "abc XYZ 123 \n\t안녕你好こんにちは😀🎉éàü<>_/" + "\u2581"
    rand = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 60))) for _ in range(30)]
    out = [s.encode() for s in all_strings() + GEMMA + WS_RUNS + rand] + INVALID
    return [s for s in out if s]  # llama-tokenize rejects an empty prompt


def main():
    model = find_model(sys.argv[1] if len(sys.argv) > 1 else None)
    tool = find_tool(sys.argv[2] if len(sys.argv) > 2 else None)
    ss = strings()
    # Two llama-tokenize processes at a time: each loads the 262k vocabulary.
    with ThreadPoolExecutor(2) as ex:
        sps = list(ex.map(lambda s: llama_ids(tool, model, s, True), ss))
        pls = list(ex.map(lambda s: llama_ids(tool, model, s, False), ss))
    lines = []
    for s, sp, pl in zip(ss, sps, pls):
        fmt = lambda v: " ".join(map(str, v)) if v else "-"  # noqa: E731
        # A literal "▁" in the text decodes as the space it stands for.
        dec = s.replace("\u2581".encode(), b" ")
        lines.append("\t".join(["gemma3", s.hex(), fmt(sp), "=" if pl == sp else fmt(pl),
                                 "=" if dec == s else dec.hex()]))
    with open(OUT, "w", encoding="ascii") as f:
        f.write("# generated by scripts/make_gemma_tokenizer_fixtures.py - do not edit\n")
        f.write(f"# reference: llama.cpp build {LLAMA_BUILD} llama-tokenize on {NAME}, no BOS\n")
        for line in lines:
            f.write(line + "\n")
    print(f"wrote {len(lines)} cases to {OUT}")


if __name__ == "__main__":
    main()
