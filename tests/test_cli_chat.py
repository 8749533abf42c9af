#!/usr/bin/env python3
# test_cli_chat.py — end-to-end tests of `slm chat` (the interactive chat)
# against the real default model on the CPU backend, with piped stdin and
# greedy decoding (--temp 0), so every answer is deterministic.
#
# What it checks:
#   - the history reaches the model: after "I am Alice." and its answer,
#     the greedy answer to "Say my name." differs from the answer the same
#     question gets without that history (and the second turn's prompt
#     holds the first turn: it is served from the cache). Whether the
#     135M model then says "Alice" is a coin toss of activation rounding:
#     it did until 2026-12-03, and no longer does after a change of float
#     summation order in attention, nor with two-term activations;
#   - the first answer equals `slm run` on the same prompt (one template,
#     one rendering), and after "/reset" the answer equals a fresh chat's:
#     the KV cache reused across turns (and truncated to the common prefix
#     after the reset) changes nothing; the second turn reports cached tokens;
#   - a conversation that outgrows --ctx drops its oldest exchanges with a
#     notice on stderr and goes on answering; a message too long for the
#     context on its own is refused with one error line, the chat goes on,
#     and the exit status is 1; lines after "/exit" are not read;
#   - a 10-turn chat re-evaluates only the new text: each turn sends the
#     whole conversation and the engine's prefix cache serves the rest (see
#     test_ten_turns_evaluate_only_new_text for the bound and its margin);
#   - --help exits 0; a bad option or model exits non-zero with one error line.
# Run: SLM_BUILD_DIR=build python3 tests/test_cli_chat.py (from the source root).
import re
import sys

from cli_e2e import MODEL, check, run_tests
from cli_e2e import slm as run_slm

GREEDY = ["--temp", "0", "-n", "24"]
TIMINGS = re.compile(r"^slm chat: prompt (\d+) tokens \((\d+) cached, (\d+) evaluated in [\d.]+ s, "
                     r"[\d.]+ tok/s\), generated (\d+) tokens")
BLOCK = 16  # the engine's KV block size: only full blocks are found by the prefix cache


def slm(args, stdin=""):
    """Runs `slm ARGS` with stdin; returns (exit status, stdout, stderr lines)."""
    rc, out, err = run_slm(args, stdin)
    return rc, out, err.splitlines()


def chat(lines, *extra):
    return slm(["chat", "-m", MODEL, "--backend", "cpu", *GREEDY, *extra],
               "".join(line + "\n" for line in lines))


def timings(err):
    return [TIMINGS.match(line) for line in err if TIMINGS.match(line)]


def test_history_is_used():
    rc, first, err = slm(["run", "-m", MODEL, "--backend", "cpu", *GREEDY, "-p", "I am Alice."])
    check(rc == 0 and first.endswith("\n"), "slm run", (rc, first, err))
    rc, alone, err = chat(["Say my name."])
    check(rc == 0 and len(timings(err)) == 1, "one-turn chat", (rc, alone, err))

    rc, out, err = chat(["I am Alice.", "Say my name.", "/reset", "Say my name."])
    check(rc == 0, "exit status", (rc, err))
    t = timings(err)
    check(len(t) == 3, "three answers, three timings lines", err)
    check(not [line for line in err if not TIMINGS.match(line)], "nothing else on stderr", err)
    # Answers may hold newlines, so split stdout by the answers we know.
    check(out.startswith(first), "the first answer equals slm run's", (out, first))
    check(out.endswith(alone), "after /reset the answer equals a fresh chat's", (out, alone))
    second = out[len(first):len(out) - len(alone)]
    check(second.endswith("\n") and second.strip(), "a second answer", out)
    check(second.strip() != alone.strip(), "the history changes the greedy answer",
          (second, alone))
    # The second turn reuses the first turn's prompt and answer from the cache.
    n1, cached2, eval2 = int(t[0].group(1)), int(t[1].group(2)), int(t[1].group(3))
    check(cached2 > n1 and eval2 < cached2, "second turn served from the cache", err)
    check(int(t[2].group(2)) > 0, "after /reset the system prompt is still cached", err)


def test_context_overflow():
    turns = ["Hello.", "Tell me about cats.", "And dogs?", "What about birds?"]
    rc, out, err = chat(turns, "-n", "16", "--ctx", "96")
    check(rc == 0, "exit status", (rc, err))
    check(len(timings(err)) == len(turns), "every turn answered", err)
    check(any("dropped the" in line for line in err), "oldest messages dropped", err)
    check(all(int(m.group(1)) <= 96 for m in timings(err)), "prompts fit the context", err)


def test_long_message_refused_and_exit():
    long = " ".join(["word"] * 300)
    rc, out, err = chat([long, "Hi.", "/exit", "never read"], "--ctx", "128")
    check(rc == 1, "exit status 1 after a refused message", (rc, err))
    refused = [line for line in err if "longer than the context" in line]
    check(len(refused) == 1 and refused[0].startswith("slm chat: "), "one error line", err)
    check(len(timings(err)) == 1, "the next message is answered, nothing after /exit", err)


TEN_TURNS = ["Hi, I am Bob.", "What is the capital of France?", "Name three colours.",
             "Write a haiku about the sea.", "What is two plus two?", "Tell me a fact about cats.",
             "What did I say my name was?", "Give me a word that rhymes with moon.",
             "Which planet is largest?", "Thank you, goodbye."]


def test_ten_turns_evaluate_only_new_text():
    rc, out, err = chat(TEN_TURNS)
    check(rc == 0, "exit status", (rc, err))
    t = [[int(g) for g in m.groups()] for m in timings(err)]
    check(len(t) == len(TEN_TURNS), "ten answers, ten timings lines", err)
    print("       turn  prompt  cached  evaluated  new  generated")
    for k, (prompt, cached, evaluated, generated) in enumerate(t):
        check(evaluated == prompt - cached, "evaluated = prompt - cached", t[k])
        new = "-"
        if k > 0:
            # The new text: what this turn's rendering adds beyond the previous
            # request's prompt and answer (the closing of that answer, the new
            # user message, the opening of the next answer).
            new = prompt - t[k - 1][0] - t[k - 1][3]
            check(new > 0, "turn %d adds text" % (k + 1), t)
            # The bound, when the rendered answer tokenizes back to the sampled
            # tokens (greedy SmolLM2 here: it does): at most BLOCK - 1 tokens of
            # the previous request's last, partly filled block are evaluated
            # again, plus the answer's last token, which was sampled but never
            # evaluated (nothing needed its logits). That is new + BLOCK, so the
            # margin is 0: any token more is reuse lost.
            check(evaluated <= new + BLOCK, "turn %d evaluates only the new text" % (k + 1),
                  (k, new, t))
        print("       %4d  %6d  %6d  %9d  %3s  %9d" % (k + 1, prompt, cached, evaluated, new,
                                                    generated))


def test_help_and_errors():
    rc, out, err = slm(["chat", "--help"])
    check(rc == 0 and out.startswith("usage: slm chat") and "/reset" in out, "--help", (rc, out))
    for args in (["--bogus"], ["--temp", "warm"], ["-n", "0"], ["--ctx"],
                 ["--chat-template", "nope"], ["--min-p", "2"], ["-m", "/nonexistent.gguf"]):
        rc, out, err = slm(["chat", "-m", MODEL, "--backend", "cpu", *args])
        check(rc != 0, "non-zero exit for %s" % args, rc)
        check(len(err) == 1 and err[0].startswith("slm chat: "), "one error line for %s" % args,
              err)
        check(out == "", "nothing on stdout for %s" % args, out)


if __name__ == "__main__":
    sys.exit(run_tests([test_help_and_errors, test_history_is_used, test_context_overflow,
                        test_long_message_refused_and_exit,
                        test_ten_turns_evaluate_only_new_text]))
