#!/usr/bin/env python3
# test_cli_run.py — end-to-end tests of `slm run` and of what every `slm`
# command prints on a redirected stderr, against the real default model on
# the CPU backend with greedy decoding (--temp 0).
#
# What it checks:
#   - run streams its answer to stdout, ends it with a newline, and prints
#     exactly one timings line on stderr ("prompt N tokens in ..., generated
#     M tokens in ..., <backend>") with M <= -n; --raw sends the prompt as
#     text (a different prompt, so a different count of prompt tokens);
#   - a prompt longer than --ctx, an unknown --chat-template, a bad sampling
#     value and an environment variable the backend options cannot carry each
#     give one error line on stderr, nothing on stdout, exit status 1;
#   - progress on a redirected stderr is a few whole lines, never "\r":
#     `slm synth` prints them always, model loading only with -v.
# Run: SLM_BUILD_DIR=build python3 tests/test_cli_run.py (from the source root).
import os
import re
import sys
import tempfile

from cli_e2e import MODEL, check, run_tests, slm

TIMINGS = re.compile(r"^slm run: prompt (\d+) tokens in [\d.]+ s \([\d.]+ tok/s\), "
                     r"generated (\d+) tokens in [\d.]+ s \([\d.]+ tok/s\), cpu")


def run(*args, env=None):
    return slm(["run", "-m", MODEL, "--backend", "cpu", "--temp", "0", *args], env=env)


def test_answer_and_timings():
    rc, out, err = run("-n", "12", "-p", "Say hi.")
    check(rc == 0 and out.strip() and out.endswith("\n"), "an answer on stdout", (rc, out, err))
    lines = err.splitlines()
    check(len(lines) == 1 and TIMINGS.match(lines[0]), "one timings line", err)
    prompt, generated = (int(g) for g in TIMINGS.match(lines[0]).groups())
    check(0 < generated <= 12, "at most -n tokens", lines[0])
    rc, raw, err = run("-n", "12", "--raw", "-p", "Say hi.")
    m = TIMINGS.match(err)
    check(rc == 0 and m, "--raw answers", (rc, err))
    check(int(m.group(1)) < prompt, "--raw sends the text without the template",
          (prompt, err))


def one_error_line(rc, out, err, what, needle):
    lines = err.splitlines()
    check(rc == 1, "exit status 1 for %s" % what, (rc, err))
    check(len(lines) == 1 and lines[0].startswith("slm run: ") and needle in lines[0],
          "one error line for %s" % what, err)
    check(out == "", "nothing on stdout for %s" % what, out)


def test_errors():
    long = " ".join(["word"] * 300)
    one_error_line(*run("--ctx", "64", "-p", long), "a prompt longer than --ctx", "context")
    one_error_line(*run("--chat-template", "nope", "-p", "Hi."), "an unknown template", "nope")
    one_error_line(*run("--top-p", "0", "-p", "Hi."), "--top-p 0", "--top-p")
    one_error_line(*run("-p", "Hi.", env={"SLM_VK_DEVICE": "Ge Force"}),
                   "a device name with a space", "SLM_VK_DEVICE")
    rc, out, err = slm(["run", "--help"])
    check(rc == 0 and out.startswith("usage: slm run") and "SLM_VK_DEVICE" in out, "--help",
          (rc, out))


def test_progress_lines():
    # Loading: silent on a redirected stderr, a few lines with -v.
    rc, out, err = run("-v", "-n", "2", "-p", "Hi.")
    check(rc == 0 and "\r" not in err, "no carriage returns with -v", repr(err))
    loading = [line for line in err.splitlines() if "loading" in line]
    check(2 <= len(loading) <= 5 and loading[-1].endswith("100%"), "a few loading lines", err)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.gguf")
        rc, out, err = slm(["synth", "-o", path, "--shape", "smollm2-135m", "--type", "q4_0",
                            "--layers", "1"])
        check(rc == 0 and os.path.getsize(path) > 0, "synth wrote the file", (rc, err))
    lines = err.splitlines()
    check("\r" not in err and 2 <= len(lines) <= 6, "synth: a few plain lines", repr(err))
    check(lines[-2].endswith("100%") and lines[-1].startswith("slm synth: wrote"),
          "synth: 100% then the summary", lines)


if __name__ == "__main__":
    sys.exit(run_tests([test_answer_and_timings, test_errors, test_progress_lines]))
