# cli_e2e.py — what the end-to-end tests of the `slm` command
# (tests/test_cli_*.py) share: where the model and the binary are, running
# `slm`, a check that fails with its detail, and the runner that skips
# without the default model and reports each test. Not a test itself (ctest
# runs tests/test_*.py); the tests import it from their own folder.
import os
import subprocess
import time
import traceback

MODEL = os.environ.get("SLM_TEST_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf")
BUILD = os.environ.get("SLM_BUILD_DIR", "build")
SLM = os.path.join(BUILD, "slm")


class Failure(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise Failure("%s %s" % (what, str(detail)[:1500]))


def slm(args, stdin="", env=None):
    """Runs `slm ARGS` with stdin (and env added to the environment);
    returns (exit status, stdout, stderr)."""
    p = subprocess.run([SLM, *args], input=stdin, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout, p.stderr


def run_tests(tests):
    """Runs each test function; returns the exit status (0: all passed or
    skipped without the model)."""
    if not os.path.exists(MODEL):
        print("skipped: %s not found (scripts/fetch-model fetches it)" % MODEL)
        return 0
    if not os.access(SLM, os.X_OK):
        print("FAILED: %s is not built (set SLM_BUILD_DIR)" % SLM)
        return 1
    passed, failed = 0, 0
    for t in tests:
        t0 = time.time()
        try:
            t()
            passed += 1
            print("ok     %s (%.1f s)" % (t.__name__, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAILED %s\n%s" % (t.__name__, traceback.format_exc()), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
