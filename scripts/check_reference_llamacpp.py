#!/usr/bin/env python3
"""check_reference_llamacpp.py — a reference fixture (SLMF, made by
make_reference.py from transformers) against llama.cpp on the same GGUF.

A second, independent implementation that reads the GGUF natively: if
transformers' dequantization or its Gemma conversion were wrong, the two
would disagree. Starts llama-server (any recent build; checked with build
11434, run on one thread with a full-size sliding-window cache) on the
model, then for each chosen prompt of the fixture:
  - tokenization: llama.cpp's /tokenize of the prompt text (BOS prepended
    when the fixture's prompt begins with it) against the fixture's tokens;
  - greedy: llama.cpp's greedy continuation of the fixture's prompt tokens
    (temperature 0) against the fixture's, counted up to the first
    difference;
  - teacher-forced: at every position of the fixture's sequence (prompt and
    continuation), llama.cpp's top-1 next token after that prefix (one
    /completion per position, n_predict 1, the prompt cache reusing the
    prefix) against the fixture's top-1, and the difference of the log
    probability each gives the fixture's top-1 token.
Prints the agreement; changes nothing. Standard library only (it imports
make_reference.py for the prompts, which needs no package at import).

Measured on tests/fixtures/reference/gemma3-270m-q4_k_m.ref, llama-server
build 11434 on 2 threads: tokenization the same for all 8 prompts;
teacher-forced top-1 per prompt 41/45, 51/53, 57/58, 68/70, 56/57, 55/56,
55/58 and, for the 1,580-token prompt, 1586/1619: 1969/2016 (97.67%);
mean |dlogprob(top-1)| 0.022-0.051, max 0.82; greedy continuations equal
for 15, 3, 23, 26, 40, 40, 16 and 40 of 40 tokens.

Usage: scripts/check_reference_llamacpp.py --model gemma3-270m \\
           --llama-server /path/to/llama-server [--prompts 0,4,7]
"""
import argparse
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def load_make_reference():
    spec = importlib.util.spec_from_file_location("make_reference",
                                                  os.path.join(HERE, "make_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_ref(path):
    b = open(path, "rb").read()
    assert b[:4] == b"SLMF", path
    n_prompts, n_vocab, k = struct.unpack_from("<III", b, 4)
    off, prompts = 16, []
    for _ in range(n_prompts):
        n_prompt, n_gen = struct.unpack_from("<II", b, off)
        off += 8
        n = n_prompt + n_gen
        tokens = list(struct.unpack_from(f"<{n}i", b, off))
        off += 4 * n
        rows = []
        for _ in range(n - 1):
            lse, = struct.unpack_from("<f", b, off)
            ids = struct.unpack_from(f"<{k}i", b, off + 4)
            logits = struct.unpack_from(f"<{k}f", b, off + 4 + 4 * k)
            off += 4 + 8 * k
            rows.append((lse, ids, logits))
        prompts.append(dict(n_prompt=n_prompt, n_gen=n_gen, tokens=tokens, rows=rows))
    assert off == len(b), "trailing bytes"
    return n_vocab, prompts


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    mr = load_make_reference()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(mr.MODELS), default="gemma3-270m")
    ap.add_argument("--llama-server", required=True, help="path to llama.cpp's llama-server")
    ap.add_argument("--prompts", default="", help="comma-separated prompt indices (default all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    spec = mr.MODELS[args.model]
    _, ref = read_ref(os.path.join(mr.FIXTURES, spec["out"]))
    chosen = [int(i) for i in args.prompts.split(",")] if args.prompts else range(len(ref))
    ctx = max(len(p["tokens"]) for p in ref) + 64

    port = free_port()
    env = dict(os.environ)
    bindir = os.path.dirname(os.path.abspath(args.llama_server))
    env["LD_LIBRARY_PATH"] = bindir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    srv = subprocess.Popen([args.llama_server, "-m", os.path.join(mr.MODEL_DIR, spec["gguf"]),
                            "--host", "127.0.0.1", "--port", str(port), "-c", str(ctx),
                            "-np", "1", "-t", str(args.threads), "--swa-full"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        break
            except Exception:
                pass
            if srv.poll() is not None:
                sys.exit("llama-server exited")
            time.sleep(0.5)
        tot_pos = tot_agree = 0
        for i in chosen:
            p, text = ref[i], spec["prompts"][i]
            toks, n_prompt = p["tokens"], p["n_prompt"]
            lt = post(base + "/tokenize", {"content": text})["tokens"]
            if spec["bos"] is not None:
                lt = [spec["bos"]] + lt
            tok_ok = lt == toks[:n_prompt]
            g = post(base + "/completion", {
                "prompt": toks[:n_prompt], "n_predict": p["n_gen"], "temperature": 0,
                "cache_prompt": False, "return_tokens": True, "ignore_eos": False})["tokens"]
            ref_gen = toks[n_prompt:]
            same = next((j for j, (a, b) in enumerate(zip(g, ref_gen)) if a != b),
                        min(len(g), len(ref_gen)))
            agree, dl = 0, []
            for pos in range(len(toks) - 1):
                r = post(base + "/completion", {
                    "prompt": toks[:pos + 1], "n_predict": 1, "n_probs": 8, "temperature": 0,
                    "cache_prompt": True, "return_tokens": True})
                top = r["completion_probabilities"][0]["top_logprobs"]
                lse, ids, logits = p["rows"][pos]
                agree += top[0]["id"] == ids[0]
                lp = {t["id"]: t["logprob"] for t in top}
                if ids[0] in lp:
                    dl.append(abs(lp[ids[0]] - (logits[0] - lse)))
            n = len(toks) - 1
            tot_pos += n
            tot_agree += agree
            print(f"prompt {i}: {n_prompt}+{p['n_gen']} tokens; tokenization "
                  f"{'same' if tok_ok else 'DIFFERENT'}; greedy same for {same}/{len(ref_gen)} "
                  f"(llama.cpp made {len(g)}); teacher-forced top-1 {agree}/{n} "
                  f"({100 * agree / n:.2f}%); |dlogprob(top-1)| mean {sum(dl) / len(dl):.4f} "
                  f"max {max(dl):.4f}", flush=True)
        print(f"all: teacher-forced top-1 {tot_agree}/{tot_pos} ({100 * tot_agree / tot_pos:.2f}%)")
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
