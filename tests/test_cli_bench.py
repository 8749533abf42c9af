#!/usr/bin/env python3
# test_cli_bench.py — end-to-end tests of `slm bench --batch`, the batched
# decode measured through the engine, on the default model and the CPU
# backend, kept to a few seconds (tiny prompts, one repetition).
#
# What it checks:
#   - --batch 1,3 -p 8 -n 6 -r 1 --json prints, in order, pp8@b1, tg6@b1,
#     pp8@b3 and tg6@b3, each with a positive rate and one sample; every
#     sequence generated its 6 tokens (generated = B × 6) and the decode test
#     counts all but each sequence's first (n_tokens = B × 5), the prefill
#     test every prompt token (B × 8);
#   - a count that is not one (0, x, an empty item) or -n 1 gives one error
#     line on stderr, nothing on stdout and exit status 1;
#   - --help describes --batch.
# Run: SLM_BUILD_DIR=build python3 tests/test_cli_bench.py (from the source root).
import json
import sys

from cli_e2e import MODEL, check, run_tests, slm


def bench(*args):
    return slm(["bench", "-m", MODEL, "--backend", "cpu", *args])


def test_batched_json():
    rc, out, err = bench("--batch", "1,3", "-p", "8", "-n", "6", "-r", "1", "--json")
    check(rc == 0, "bench --batch runs", (rc, err))
    rows = [json.loads(line) for line in out.splitlines()]
    check([r["test"] for r in rows] == ["pp8@b1", "tg6@b1", "pp8@b3", "tg6@b3"],
          "one prefill and one decode test per count", out)
    for r in rows:
        b = r["n_seq"]
        check(r["avg_ts"] > 0 and len(r["samples_ts"]) == 1 and r["samples_ts"][0] > 0,
              "a positive rate from one sample", r)
        check(r["generated"] == b * 6, "every sequence generated -n tokens", r)
        want = b * 5 if r["test"].startswith("tg") else b * 8
        check(r["n_tokens"] == want, "the tokens the rate counts", r)
        check(r["n_prompt"] == 8, "n_prompt", r)
    check(rows[1]["n_gen"] == 6 and rows[1]["gb_per_s"] > 0, "decode bandwidth", rows[1])


def one_error_line(args, needle):
    rc, out, err = bench(*args)
    lines = err.splitlines()
    check(rc == 1, "exit status 1 for %s" % (args,), (rc, err))
    check(len(lines) == 1 and lines[0].startswith("slm bench: ") and needle in lines[0],
          "one error line for %s" % (args,), err)
    check(out == "", "nothing on stdout for %s" % (args,), out)


def test_errors_and_help():
    one_error_line(["--batch", "0"], "'0'")
    one_error_line(["--batch", "x"], "'x'")
    one_error_line(["--batch", "2,,4"], "--batch")
    one_error_line(["--batch", "2", "-n", "1"], "-n")
    rc, out, err = slm(["bench", "--help"])
    check(rc == 0 and out.startswith("usage: slm bench") and "--batch LIST" in out
          and "S_TG" in out, "--help", (rc, out))


if __name__ == "__main__":
    sys.exit(run_tests([test_batched_json, test_errors_and_help]))
