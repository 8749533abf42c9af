#!/usr/bin/env python3
# test_server.py — end-to-end tests of `slm serve` (the OpenAI-compatible
# HTTP server) against the real default model on the CPU backend.
#
# PyPI: openai==3.54.0 (the official client; the project's .venv pins it).
# Everything else is the standard library. Without the openai package the
# client test is reported as skipped and the rest still runs.
#
# What it checks:
#   - /health says loading (503) or ok (200), /v1/models lists the model;
#   - 64 concurrent streaming clients each get a complete, well-formed event
#     stream whose greedy text (and token count) equals the same request run
#     alone, non-streaming — batching must not change anyone's answer;
#   - every kind of bad input gets its status and an OpenAI-style error
#     body, and the server keeps serving;
#   - a client that disconnects mid-stream has its request cancelled and its
#     KV blocks freed (seen in /metrics);
#   - a full queue answers 503 with Retry-After; SIGTERM drains: the
#     in-flight stream completes and the process exits 0;
#   - the official openai client works, streaming and not.
# Run: SLM_BUILD_DIR=build python3 tests/test_server.py (from the source root).
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

MODEL = os.environ.get("SLM_TEST_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf")
BUILD = os.environ.get("SLM_BUILD_DIR", "build")
SLM = os.path.join(BUILD, "slm")
KEY = "test-key-%d" % os.getpid()
N_CLIENTS = 64
CTX = 256


class Server:
    """An `slm serve` child on a free loopback port (the server picks it:
    --port 0, and says which on stderr)."""

    def __init__(self, *extra, model=None):
        self.log = []
        self.proc = subprocess.Popen(
            [SLM, "serve", "-m", model or MODEL, "--backend", "cpu", "--port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        got_port = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                m = re.search(r"listening on http://[^:]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    got_port.set()
            got_port.set()

        threading.Thread(target=pump, daemon=True).start()
        if not got_port.wait(30) or self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.log))
        self.saw_loading = False
        deadline = time.time() + 120
        while time.time() < deadline:
            st, body, _ = request(self.port, "GET", "/health")
            if st == 503:
                check(json.loads(body) == {"status": "loading"}, "503 /health body", body)
                self.saw_loading = True
            elif st == 200:
                check(json.loads(body) == {"status": "ok"}, "200 /health body", body)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server never became ready:\n" + "\n".join(self.log))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Failure(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise Failure("%s %s" % (what, str(detail)[:800]))


def request(port, method, path, body=None, key=KEY, headers=None, timeout=120):
    """One request on a fresh connection: (status, body text, headers)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8"), dict(r.getheaders())
    except ConnectionError:
        return -1, "", {}
    finally:
        c.close()


def metrics(port):
    st, text, _ = request(port, "GET", "/metrics")
    check(st == 200, "/metrics status", st)
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def stream(port, path, body, on_event=None, key=KEY):
    """Posts a streaming request and parses the event stream strictly.
    Returns (status, list of decoded events (dicts, then the string
    "[DONE]")). on_event(i, conn) may return False to hang up early."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", path, body=json.dumps(body),
              headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
    r = c.getresponse()
    if r.status != 200:
        text = r.read().decode()
        c.close()
        return r.status, text, dict(r.getheaders())
    check(r.getheader("Content-Type", "").startswith("text/event-stream"), "content type",
          r.getheader("Content-Type"))
    events, buf = [], b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            raw, buf = buf.split(b"\n\n", 1)
            line = raw.decode("utf-8")
            check(line.startswith("data: ") and "\n" not in line, "event framing", repr(line))
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
            if on_event and on_event(len(events) - 1, c) is False:
                c.close()
                return 200, events, {}
    c.close()
    check(buf == b"", "bytes after the last event", buf)
    return 200, events, dict(r.getheaders())


def stream_text(events, chat, include_usage):
    """Checks a complete stream's shape; returns (text, finish, usage)."""
    check(events and events[-1] == "[DONE]", "stream ends with [DONE]", events[-3:])
    objs = events[:-1]
    check(all(isinstance(e, dict) and "error" not in e for e in objs), "no error events", objs)
    ids = {e["id"] for e in objs}
    check(len(ids) == 1, "one id per stream", ids)
    want_obj = "chat.completion.chunk" if chat else "text_completion"
    check(all(e["object"] == want_obj for e in objs), "chunk object", want_obj)
    usage = None
    if include_usage:
        last = objs.pop()
        check(last["choices"] == [] and last["usage"]["total_tokens"] ==
              last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"],
              "usage chunk", last)
        usage = last["usage"]
        check(all(e["usage"] is None for e in objs), "usage null before the end", objs)
    finishes = [e["choices"][0]["finish_reason"] for e in objs]
    check(finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1]),
          "exactly one finish_reason, last", finishes)
    if chat:
        check(objs[0]["choices"][0]["delta"].get("role") == "assistant", "first delta role",
              objs[0])
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in objs)
    else:
        text = "".join(e["choices"][0]["text"] for e in objs)
    return text, finishes[-1], usage


# ---- the request set: 64 different greedy requests -------------------------

TOPICS = ["the sea", "a red fox", "prime numbers", "tea", "the moon", "Paris", "bees",
          "winter", "a robot", "volcanoes", "chess", "rain", "bread", "music", "trees",
          "the desert"]


def make_request(i):
    chat = i % 2 == 0
    body = {"temperature": 0, "max_tokens": 12 + i % 9}
    if i % 5 == 0:  # the newer spelling
        body["max_completion_tokens"] = body.pop("max_tokens")
    topic = TOPICS[i % len(TOPICS)]
    if chat:
        body["messages"] = [{"role": "user", "content": "Write one sentence about %s (%d)."
                             % (topic, i)}]
    else:
        body["prompt"] = "Here is a short story about %s, number %d:" % (topic, i)
    if i % 7 == 3:
        body["stop"] = [".", "\n\n"]
    return chat, body


def solo(port, chat, body):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    st, text, _ = request(port, "POST", path, body)
    check(st == 200, "solo status", text)
    r = json.loads(text)
    check(r["object"] == ("chat.completion" if chat else "text_completion"), "object", r)
    ch = r["choices"][0]
    u = r["usage"]
    check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and
          u["prompt_tokens"] > 0, "usage", u)
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    check(u["completion_tokens"] <= limit, "completion tokens within max_tokens", u)
    check(ch["finish_reason"] == "stop" or u["completion_tokens"] == limit,
          "length finish means max_tokens reached", r)
    return (ch["message"]["content"] if chat else ch["text"]), ch["finish_reason"], u


def test_concurrent_streams_equal_solo(port):
    reqs = [make_request(i) for i in range(N_CLIENTS)]
    want = [solo(port, chat, body) for chat, body in reqs]
    check(any(w[0] for w in want), "some output at all", want[:3])
    results = [None] * N_CLIENTS
    errors = []
    start = threading.Barrier(N_CLIENTS)

    def client(i):
        chat, body = reqs[i]
        body = dict(body, stream=True)
        if i % 2:
            body["stream_options"] = {"include_usage": True}
        try:
            start.wait()
            st, events, _ = stream(port, "/v1/chat/completions" if chat else "/v1/completions",
                                   body)
            check(st == 200, "stream status", events)
            results[i] = stream_text(events, chat, bool(i % 2))
        except Exception as e:  # collected and reported below
            errors.append("client %d: %r" % (i, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(N_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "stream errors", errors[:4])
    for i, ((text, finish, usage), (wtext, wfinish, wusage)) in enumerate(zip(results, want)):
        check(text == wtext, "client %d text differs from solo" % i, (text, wtext))
        check(finish == wfinish, "client %d finish" % i, (finish, wfinish))
        if usage:
            check(usage == wusage, "client %d usage" % i, (usage, wusage))


def error_case(port, method, path, body, status, key=KEY, param=None, code=None, needle=None,
               headers=None):
    st, text, hdrs = request(port, method, path, body, key=key, headers=headers)
    check(st == status, "%s %s -> %d" % (method, path, status), (st, text))
    err = json.loads(text).get("error")
    check(isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"] and
          isinstance(err.get("type"), str) and "param" in err and "code" in err,
          "OpenAI error body", text)
    if param is not None:
        check(err["param"] == param, "error param", err)
    if code is not None:
        check(err["code"] == code, "error code", err)
    if needle is not None:
        check(needle in err["message"], "error message mentions " + needle, err)
    return hdrs


def test_bad_input(port):
    msgs = [{"role": "user", "content": "hi"}]
    chat = "/v1/chat/completions"
    error_case(port, "POST", chat, '{"messages": [', 400, code="invalid_json")
    error_case(port, "POST", chat, {"messages": msgs, "max_tokens": "x"}, 400, param="max_tokens")
    error_case(port, "POST", chat, {"messages": msgs, "temperature": "hot"}, 400,
               param="temperature")
    error_case(port, "POST", chat, {"model": ""}, 400, param="messages")
    error_case(port, "POST", "/v1/completions", {"max_tokens": 3}, 400, param="prompt")
    error_case(port, "POST", chat, {"messages": msgs, "n": 17}, 400, param="n")
    error_case(port, "POST", chat, {"messages": msgs, "stop": 3}, 400, param="stop")
    error_case(port, "POST", chat, {"messages": msgs, "model": "gpt-4o"}, 404,
               code="model_not_found")
    long_prompt = " ".join("word%d" % i for i in range(CTX * 2))
    error_case(port, "POST", "/v1/completions", {"prompt": long_prompt, "max_tokens": 4}, 400,
               needle="context")
    error_case(port, "POST", chat, {"messages": [{"role": "user", "content": long_prompt}]}, 400,
               needle="context")
    big = json.dumps({"prompt": "a" * (1 << 20), "max_tokens": 1})
    error_case(port, "POST", "/v1/completions", big, 413)
    error_case(port, "POST", chat, {"messages": msgs}, 401, key=None, code="invalid_api_key")
    error_case(port, "POST", chat, {"messages": msgs}, 401, key="wrong")
    error_case(port, "GET", "/v1/models", None, 401, key=KEY + "x")
    error_case(port, "GET", "/v1/nothing", None, 404)
    hdrs = error_case(port, "GET", chat, None, 405)
    check(hdrs.get("Allow") == "POST", "405 Allow header", hdrs)
    error_case(port, "DELETE", "/health", None, 405)
    # The model field may name the served model several ways.
    name = os.path.basename(MODEL)
    for m in (name, name[:-5], ""):
        st, text, _ = request(port, "POST", chat, {"messages": msgs, "model": m, "max_tokens": 1})
        check(st == 200, "model '%s' accepted" % m, text)
    st, text, _ = request(port, "GET", "/v1/models")
    check(st == 200 and json.loads(text)["data"][0]["id"] == name[:-5], "/v1/models", text)
    st, _, _ = request(port, "GET", "/health", key=None)
    check(st == 200, "still healthy after bad input", st)


def wait_metrics(port, cond, what, timeout=30):
    deadline = time.time() + timeout
    while True:
        m = metrics(port)
        if cond(m):
            return m
        if time.time() > deadline:
            raise Failure("timed out waiting for " + what + ": " + json.dumps(
                {k: v for k, v in m.items() if "bucket" not in k}))
        time.sleep(0.05)


def test_disconnect_frees_blocks(port):
    idle = wait_metrics(port, lambda m: m["slm_requests_running"] == 0 and
                        m["slm_requests_waiting"] == 0, "idle")
    body = {"prompt": "List every number from one to one thousand: one, two,",
            "max_tokens": CTX - 40, "temperature": 0, "ignore_eos": True, "stream": True}
    seen = {}

    def hang_up(i, conn):
        if i == 4:  # a few tokens in
            seen["busy"] = metrics(port)
            conn.sock.shutdown(socket.SHUT_RDWR)
            return False
        return True

    stream(port, "/v1/completions", body, on_event=hang_up)
    check("busy" in seen, "stream got far enough to hang up", seen)
    check(seen["busy"]["slm_kv_blocks_used"] > idle["slm_kv_blocks_used"],
          "the stream held KV blocks", (seen["busy"]["slm_kv_blocks_used"],
                                        idle["slm_kv_blocks_used"]))
    key = 'slm_requests_finished_total{reason="cancelled"}'
    after = wait_metrics(port, lambda m: m[key] == idle[key] + 1 and
                         m["slm_requests_running"] == 0 and
                         m["slm_kv_blocks_used"] == idle["slm_kv_blocks_used"],
                         "the cancelled request to free its blocks")
    check(after["slm_generation_tokens_total"] - idle["slm_generation_tokens_total"] <
          body["max_tokens"], "generation stopped early")


def test_openai_client(port):
    try:
        import openai
    except ImportError:
        if os.environ.get("SLM_PY_REQUIRE") == "1":
            raise Failure("the openai package is missing from .venv (scripts/setup installs it)")
        print("skipped: openai client test (pip install openai==3.54.0)")
        return
    client = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key=KEY, max_retries=0)
    chat, body = make_request(0)
    want = solo(port, chat, body)[0]
    r = client.chat.completions.create(model=os.path.basename(MODEL), messages=body["messages"],
                                       temperature=0, max_tokens=body["max_completion_tokens"])
    check(r.choices[0].message.content == want, "openai chat text", (r, want))
    check(r.usage.completion_tokens > 0, "openai usage", r.usage)
    parts = []
    for ev in client.chat.completions.create(model="", messages=body["messages"], temperature=0,
                                             max_tokens=body["max_completion_tokens"],
                                             stream=True,
                                             stream_options={"include_usage": True}):
        if ev.choices and ev.choices[0].delta.content:
            parts.append(ev.choices[0].delta.content)
    check("".join(parts) == want, "openai chat stream text", (parts, want))
    chat, body = make_request(1)
    want = solo(port, chat, body)[0]
    r = client.completions.create(model="", prompt=body["prompt"], temperature=0,
                                  max_tokens=body["max_tokens"])
    check(r.choices[0].text == want, "openai completion text", (r, want))
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="", prompt=body["prompt"], temperature=0, max_tokens=body["max_tokens"],
        stream=True))
    check(text == want, "openai completion stream", (text, want))
    check([m.id for m in client.models.list()] == [os.path.basename(MODEL)[:-5]], "models.list")
    try:
        client.chat.completions.create(model="nope", messages=body and [{"role": "user",
                                                                         "content": "x"}])
        raise Failure("unknown model accepted")
    except openai.NotFoundError:
        pass
    bad = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="bad", max_retries=0)
    try:
        bad.models.list()
        raise Failure("bad key accepted")
    except openai.AuthenticationError:
        pass


def test_queue_full_and_sigterm():
    """A one-slot server: a burst overflows its queue (503 + Retry-After);
    then SIGTERM while a stream runs must let that stream finish and exit 0."""
    srv = Server("--parallel", "1", "--queue", "1", "--ctx", str(CTX), "--api-key", KEY,
                 "--grace", "60")
    try:
        body = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0,
                "ignore_eos": True}
        statuses = []

        def burst():
            st, text, h = request(srv.port, "POST", "/v1/completions", body)
            statuses.append((st, text, h))

        threads = [threading.Thread(target=burst) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        full = [s for s in statuses if s[0] == 503]
        ok = [s for s in statuses if s[0] == 200]
        check(full and ok and len(full) + len(ok) == 6, "burst gives 200s and 503s",
              [s[0] for s in statuses])
        err = json.loads(full[0][1])["error"]
        check(err["code"] == "queue_full" and full[0][2].get("Retry-After"), "503 queue full",
              full[0])
        texts = {json.loads(s[1])["choices"][0]["text"] for s in ok}
        check(len(texts) == 1, "the admitted identical requests agree", texts)

        got = {}

        def on_event(i, conn):
            if i == 1:
                srv.proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                st, _, _ = request(srv.port, "GET", "/health", timeout=5)
                got["health_after_term"] = st
            return True

        st, events, _ = stream(srv.port, "/v1/completions", dict(body, stream=True), on_event)
        check(st == 200, "stream status", events)
        text, finish, _ = stream_text(events, False, False)
        check(finish == "length" and text == next(iter(texts)), "drained stream complete",
              (text, finish))
        check(got.get("health_after_term") in (-1, 503), "no new work while draining", got)
        rc = srv.proc.wait(timeout=30)
        check(rc == 0, "exit status after SIGTERM", (rc, srv.log[-5:]))
    finally:
        srv.stop()


def run_on_server(server_args, tests, after=()):
    """Runs each test t(port) against one shared `slm serve` started with
    server_args (when the first test runs, so a missing model skips), checks
    that it outlived them and stops it, then runs the tests in `after` (no
    argument). Returns the exit status (cli_e2e.run_tests)."""
    from cli_e2e import run_tests
    srv = None

    def serving(t):
        def run():
            nonlocal srv
            if srv is None:
                srv = Server(*server_args)
            t(srv.port)
        run.__name__ = t.__name__
        return run

    def test_server_alive():
        nonlocal srv
        check(srv is not None and srv.proc.poll() is None, "server alive after all tests",
              srv and srv.log[-5:])
        srv.stop()
        srv = None

    try:
        return run_tests([serving(t) for t in tests] + [test_server_alive] + list(after))
    finally:
        if srv is not None:
            srv.stop()


def main():
    return run_on_server(["--parallel", str(N_CLIENTS), "--ctx", str(CTX), "--api-key", KEY],
                         [test_bad_input, test_concurrent_streams_equal_solo,
                          test_disconnect_frees_blocks, test_openai_client],
                         after=[test_queue_full_and_sigterm])


if __name__ == "__main__":
    sys.exit(main())
