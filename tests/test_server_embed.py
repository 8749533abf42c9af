#!/usr/bin/env python3
# test_server_embed.py — POST /v1/embeddings of `slm serve` and the `slm embed`
# command, end to end on the default model (CPU backend).
#
# What it checks:
#   - OpenAI's response shape: object "list", one item per input in order
#     (object "embedding", index i), the model id, usage.prompt_tokens ==
#     total_tokens > 0; every vector has the model's width and unit L2 norm;
#   - the four input forms: a string, an array of strings, an array of token
#     ids, an array of token-id arrays (equal ids give equal vectors, a
#     prefix another; usage counts the ids); "<|im_start|>" in a text is
#     ordinary text, not the control token;
#   - a batch of inputs equals each input embedded alone (within 1e-6: the
#     engine reduces each row in a fixed order, so it is in fact bitwise);
#     different texts give different vectors and a text is closer to a
#     paraphrase than to an unrelated one by more than 0.1 in cosine (a
#     sanity check on meaning; measured 0.93 against 0.71);
#   - encoding_format "base64" decodes to the float answer's numbers;
#   - pooling "last" differs from the default (mean) and is unit length;
#   - bad input → 400 naming the field: no input, empty string, empty array,
#     a mixed array, a token outside the vocabulary, an input longer than the
#     context, dimensions other than the width, an unknown encoding_format,
#     an unknown field; unknown model → 404; the server goes on answering;
#   - the OpenAI Python client gets the same vectors (floats and its default
#     base64 decoding);
#   - `slm embed` prints, for the same text, the vector the server returns
#     (JSON lines and plain), and reads inputs from stdin lines.
# Run: SLM_BUILD_DIR=build python3 tests/test_server_embed.py (from the source root).
import base64
import functools
import json
import math
import os
import struct
import sys

import test_server
from cli_e2e import run_tests, slm
from test_server import KEY, MODEL, Server, check, request

CTX = 128
TEXTS = ["The cat sat on the mat.", "A kitten was sitting on the rug.",
         "Quarterly revenue grew by twelve percent.", "hello"]


def embed(port, body, want=200):
    st, text, _ = request(port, "POST", "/v1/embeddings", body)
    check(st == want, "status %d for %s" % (want, json.dumps(body)[:200]), (st, text))
    return json.loads(text)


def vectors(r):
    return [d["embedding"] for d in r["data"]]


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def close(a, b, tol=1e-6):
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tol


def width(port):
    return len(vectors(embed(port, {"input": "x"}))[0])


def test_shape(port):
    r = embed(port, {"input": TEXTS, "model": os.path.basename(MODEL)[:-5]})
    check(r["object"] == "list" and r["model"] == os.path.basename(MODEL)[:-5], "envelope", r)
    check([d["object"] for d in r["data"]] == ["embedding"] * len(TEXTS), "items", r["data"])
    check([d["index"] for d in r["data"]] == list(range(len(TEXTS))), "indices in order")
    u = r["usage"]
    check(u["prompt_tokens"] == u["total_tokens"] and u["prompt_tokens"] >= len(TEXTS),
          "usage", u)
    vs = vectors(r)
    check(len({len(v) for v in vs}) == 1 and len(vs[0]) == 576, "width of SmolLM2-135M",
          [len(v) for v in vs])
    for v in vs:
        check(abs(norm(v) - 1) < 1e-5, "unit norm", norm(v))
    check(not close(vs[0], vs[2], 1e-3), "different texts, different vectors")
    check(cos(vs[0], vs[1]) > cos(vs[0], vs[2]) + 0.1,
          "a paraphrase is nearer than an unrelated text",
          (cos(vs[0], vs[1]), cos(vs[0], vs[2])))
    one = embed(port, {"input": TEXTS[0]})
    check(one["usage"]["prompt_tokens"] > 0, "usage of one input", one["usage"])


def test_batch_equals_single(port):
    batch = vectors(embed(port, {"input": TEXTS}))
    for i, t in enumerate(TEXTS):
        solo = vectors(embed(port, {"input": t}))[0]
        check(close(batch[i], solo), "input %d batched equals alone" % i,
              max(abs(x - y) for x, y in zip(batch[i], solo)))


def test_token_inputs(port):
    ids = [1, 504, 2364, 3326, 335, 260, 1123, 30]
    a = vectors(embed(port, {"input": ids}))
    check(len(a) == 1, "a flat id array is one input", len(a))
    b = vectors(embed(port, {"input": [ids, ids[:4], ids]}))
    check(len(b) == 3 and close(a[0], b[0]) and close(b[0], b[2]), "id arrays")
    check(not close(b[0], b[1], 1e-3), "a prefix is another input")
    r = embed(port, {"input": [ids[:4]]})
    check(r["usage"]["prompt_tokens"] == 4, "usage counts the ids", r["usage"])
    # A special token's text is ordinary text in an input (it is data, not a
    # prompt): several tokens, not the one control token.
    r = embed(port, {"input": "<|im_start|>"})
    check(r["usage"]["prompt_tokens"] >= 4, "special-token text stays text", r["usage"])


def test_base64_and_pooling(port):
    f = vectors(embed(port, {"input": TEXTS[:2]}))
    b = embed(port, {"input": TEXTS[:2], "encoding_format": "base64"})
    for i, d in enumerate(b["data"]):
        raw = base64.b64decode(d["embedding"])
        vals = struct.unpack("<%df" % (len(raw) // 4), raw)
        check(close(vals, f[i], 1e-7), "base64 %d = float" % i)
    last = vectors(embed(port, {"input": TEXTS[0], "pooling": "last"}))[0]
    check(abs(norm(last) - 1) < 1e-5 and not close(last, f[0], 1e-3), "last pooling differs")
    mean = vectors(embed(port, {"input": TEXTS[0], "pooling": "mean"}))[0]
    check(close(mean, f[0]), "the default for this model is mean")


def test_bad_input(port):
    d = width(port)
    cases = [({}, "input"), ({"input": ""}, "input"), ({"input": []}, "input"),
             ({"input": ["a", 5]}, "input"), ({"input": [[1, 2], "a", 3.5]}, "input"),
             ({"input": [1, 99999999]}, "input"), ({"input": "word " * 300}, "input"),
             ({"input": "a", "dimensions": d - 1}, "dimensions"),
             ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
             ({"input": "a", "pooling": "max"}, "pooling")]
    for body, param in cases:
        r = embed(port, body, 400)
        check(r["error"]["param"] == param and r["error"]["message"], "param of %s" % body,
              r)
    r = embed(port, {"input": "a", "truncate": True}, 400)
    check(r["error"]["code"] == "unsupported_parameter" and "'truncate'" in
          r["error"]["message"], "an unknown field is named", r)
    r = embed(port, {"input": "word " * 300}, 400)
    check(r["error"]["code"] == "context_length_exceeded", "context code", r)
    r = embed(port, {"input": "a", "model": "nope"}, 404)
    check(r["error"]["code"] == "model_not_found", "unknown model", r)
    st, text, _ = request(port, "POST", "/v1/embeddings", '{"input": ')
    check(st == 400 and json.loads(text)["error"]["code"] == "invalid_json", "bad JSON", text)
    check(len(vectors(embed(port, {"input": "a", "dimensions": d}))[0]) == d,
          "dimensions equal to the width")
    check(len(vectors(embed(port, {"input": TEXTS}))) == len(TEXTS), "still answering")


def test_openai_client(port):
    try:
        import openai
    except ImportError:
        if os.environ.get("SLM_PY_REQUIRE") == "1":
            raise test_server.Failure("the openai package is missing from .venv")
        print("skipped: openai client test (the openai package is not installed)")
        return
    client = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key=KEY, max_retries=0)
    want = vectors(embed(port, {"input": TEXTS}))
    r = client.embeddings.create(model=os.path.basename(MODEL)[:-5], input=TEXTS,
                                 encoding_format="float")
    check([close(d.embedding, w) for d, w in zip(r.data, want)] == [True] * len(TEXTS),
          "openai floats")
    check(r.usage.prompt_tokens > 0, "openai usage", r.usage)
    r = client.embeddings.create(model="", input=TEXTS[0])  # the client asks for base64
    check(close(r.data[0].embedding, want[0], 1e-7), "openai default (base64) decoding")
    try:
        client.embeddings.create(model="", input="a", dimensions=8)
        raise test_server.Failure("dimensions 8 accepted")
    except openai.BadRequestError:
        pass


def test_cli(port):
    want = vectors(embed(port, {"input": TEXTS[:2]}))
    base = ["embed", "-m", MODEL, "--backend", "cpu"]
    rc, out, err = slm(base + ["-p", TEXTS[0], TEXTS[1]])
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 2, "two JSON lines", (rc, out[:200], err))
    got = [json.loads(line) for line in lines]
    check([g["index"] for g in got] == [0, 1], "indices", got)
    for g, w in zip(got, want):
        check(close(g["embedding"], w), "slm embed = the server's vector")
    rc, out, err = slm(base + ["--format", "plain"], stdin="%s\n\n%s\n" % tuple(TEXTS[:2]))
    rows = [[float(x) for x in line.split()] for line in out.splitlines()]
    check(rc == 0 and len(rows) == 2 and all(close(r, w) for r, w in zip(rows, want)),
          "stdin lines, plain numbers", (rc, err))
    rc, out, err = slm(base + ["--pooling", "last", "-p", TEXTS[0]])
    last = vectors(embed(port, {"input": TEXTS[0], "pooling": "last"}))[0]
    check(rc == 0 and close(json.loads(out)["embedding"], last), "--pooling last", err)
    rc, out, err = slm(base + ["--pooling", "max", "-p", "x"])
    check(rc == 1 and out == "" and "--pooling" in err, "bad --pooling", err)
    rc, out, err = slm(base + ["--ctx", "16", "-p", "a", "-p", "word " * 40])
    check(rc == 1 and "input 1:" in err and "context" in err, "too long an input named", err)
    rc, out, err = slm(["embed", "--help"])
    check(rc == 0 and "usage: slm embed" in out, "--help", (rc, err))


def on_port(t, port):
    """t(port) under t's own name, for cli_e2e.run_tests."""
    f = functools.partial(t, port)
    f.__name__ = t.__name__
    return f


def main():
    if not os.path.exists(MODEL):
        print("skipped: %s not found (scripts/fetch-model fetches it)" % MODEL)
        return 0
    srv = Server("--parallel", "8", "--ctx", str(CTX), "--api-key", KEY)

    def test_server_alive(port):
        check(srv.proc.poll() is None, "server alive after all tests", srv.log[-5:])

    tests = [test_shape, test_batch_equals_single, test_token_inputs, test_base64_and_pooling,
             test_bad_input, test_openai_client, test_cli, test_server_alive]
    try:
        return run_tests([on_port(t, srv.port) for t in tests])
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
