#!/usr/bin/env python3
# test_cli_cost.py — end-to-end tests of `slm cost` on the real default
# model, CPU backend, with a tiny workload (8 prompt + 4 output tokens, two
# requests per level) so the whole file takes seconds.
#
# What it checks:
#   - a sweep over levels 1,2 writes well-formed JSON (the run's facts, one
#     object per level, token counts that add up, ordered percentiles, the
#     model's sha256 prefix) and a Markdown report that is also what stdout
#     got; the prices follow from the profile and the measured rates
#     (a bought card's $/hour recomputed here, $/Mtok within 1e-6 relative);
#   - the SVG charts parse as XML, one series per metric (throughput: all
#     users and per user; cost: the measured levels, and three reference
#     lines); --compare of a report with itself gives ratios of 1.00x;
#   - a KV cap the second level's users do not fit in stops the sweep with
#     a message, level 1 still reported;
#   - a profile with a missing or bad field, an unknown --hardware name, bad
#     option values: one error line naming the culprit, exit status 1;
#   - --url against a real `slm serve` (started here with test_server.py's
#     helper) on a free port: levels with positive throughput, TTFT within
#     end-to-end, the streamed usage's token counts, the engine-only
#     figures (KV blocks, host memory) null; nothing listening on the URL:
#     one error line naming it, exit status 1;
#   - --help describes the options.
# Nothing is asserted about speed (benchmarks report; tests never time).
# Run: SLM_BUILD_DIR=build python3 tests/test_cli_cost.py (from the source root).
import hashlib
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET

from cli_e2e import MODEL, check, run_tests, slm
from test_server import Server

TINY = ["--in", "8", "--out", "4", "--requests", "2"]


def cost(*args):
    return slm(["cost", "-m", MODEL, "--backend", "cpu", *args])


def rel(a, b):
    return abs(a - b) <= 1e-6 * abs(b)


def check_level(lv, level):
    check(lv["level"] == level and lv["requests"] == 2, "level and request count", lv)
    check(lv["input_tokens"] == 16 and lv["output_tokens"] == 8, "token counts add up", lv)
    for k in ("ttft_ms", "tpot_ms", "e2e_ms"):
        p = lv[k]
        check(0 < p["p50"] <= p["p90"] <= p["p99"], "%s percentiles ordered" % k, p)
    check(lv["ttft_ms"]["p99"] <= lv["e2e_ms"]["p99"], "TTFT within end-to-end", lv)
    check(lv["output_tok_s"] > 0 and rel(lv["input_tok_s"], 2 * lv["output_tok_s"]),
          "input and output rates over one wall time", lv)
    check(1 <= lv["kv_blocks_peak"] <= lv["kv_blocks_total"], "KV blocks", lv)
    check(lv["host_peak_bytes"] > 0 and lv["device_used_bytes"] is None,
          "host peak; no device memory on the CPU", lv)


def check_svg(path, n_series, n_refs, y_title):
    """The chart parses as XML, has n_series series (one per metric) and
    n_refs reference lines, and its axes say their units."""
    root = ET.parse(path).getroot()
    check(root.tag == "{http://www.w3.org/2000/svg}svg", "an SVG root", root.tag)
    groups = root.findall("{http://www.w3.org/2000/svg}g")
    series = [g for g in groups if g.get("class") == "series"]
    refs = [g for g in groups if g.get("class") == "reference"]
    check(len(series) == n_series and len(refs) == n_refs, "series and reference lines",
          (path, len(series), len(refs)))
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    check(y_title in texts, "the y axis title", texts)


def test_sweep_reports():
    with tempfile.TemporaryDirectory() as d:
        js, md = os.path.join(d, "c.json"), os.path.join(d, "c.md")
        rc, out, err = cost("--levels", "1,2", *TINY, "--hardware", "rtx4090",
                            "--electricity", "0.2", "--utilization", "0.5", "--json", js,
                            "--md", md, "--svg", os.path.join(d, "c"))
        check(rc == 0, "the sweep runs", (rc, err))
        lines = [line for line in err.splitlines() if line.startswith("slm cost: level")]
        check(len(lines) == 2, "one stderr line per level", err)
        r = json.load(open(js))
        text = open(md).read()
        check_svg(os.path.join(d, "c-throughput.svg"), 2, 0, "output tokens per second")
        check_svg(os.path.join(d, "c-cost.svg"), 1, 3, "$ per million output tokens")
        rc, cmp, err = slm(["cost", "--compare", js, js])
        check(rc == 0 and cmp.count("1.00x") == 8, "--compare: a report against itself",
              (rc, cmp, err))
    sha = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    check(r["model_sha256"] == sha[:16], "model sha256 prefix", r["model_sha256"])
    check(r["backend"].startswith("cpu") and r["commit"] and r["machine"]["cores"] >= 1,
          "backend, commit, machine", r)
    check(r["workload"] == {"kind": "fixed", "requests_per_level": 2, "seed": 1, "in": 8,
                            "out": 4}, "workload", r["workload"])
    check(r["stopped"] is None and len(r["levels"]) == 2, "both levels ran", r["stopped"])
    for lv, level in zip(r["levels"], (1, 2)):
        check_level(lv, level)
    hw = r["hardware"]
    check(hw["name"] == "RTX 4090" and hw["file"].endswith("rtx4090.conf"), "the profile", hw)
    # Bought card: purchase over the busy hours of its amortization, plus
    # load power busy and idle power for the idle half, at $0.2/kWh.
    per_hour = (hw["purchase_usd"] / (hw["amortization_years"] * 8760 * 0.5)
                + 0.2 * (hw["power_load_w"] + hw["power_idle_w"]) / 1000)
    for lv in r["levels"]:
        c = lv["cost"]
        check(c["power_source"] == "profile" or (c["power_source"] == "rapl" and
                                                  lv["measured_power_w"] is not None),
              "power source", c)
        if c["power_source"] == "profile":
            check(rel(c["usd_per_hour"], per_hour), "$/hour from the profile", (c, per_hour))
        check(rel(c["usd_per_mtok_output"], c["usd_per_hour"] / (lv["output_tok_s"] * 3600) * 1e6),
              "$/M output tokens", c)
        check(rel(c["usd_per_mtok_blended"],
                  c["usd_per_hour"] / ((lv["output_tok_s"] + lv["input_tok_s"]) * 3600) * 1e6),
              "$/M blended", c)
    good = [lv["level"] for lv in r["levels"] if lv["meets_targets"]]
    best = max((lv for lv in r["levels"] if lv["meets_targets"]),
               key=lambda lv: lv["output_tok_s"], default=None)
    check(r["goodput_level"] == (best["level"] if best else None), "goodput level", (good, r))
    # Markdown: the file is what stdout got; one row per level under the header.
    check(out == text, "stdout is the Markdown report")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    check(len(rows) == 4 and rows[0].startswith("| users |") and rows[1].startswith("| ---"),
          "header, separator and two rows", rows)
    cols = rows[0].count("|")
    check(all(row.count("|") == cols for row in rows), "every row has the header's columns", rows)
    check(rows[2].startswith("| 1 ") and rows[3].startswith("| 2 "), "rows in level order", rows)


def test_stops_when_users_do_not_fit():
    # 12 tokens a request fit one 16-token block of 360 KiB: the cap leaves
    # room for one user only.
    with tempfile.TemporaryDirectory() as d:
        js = os.path.join(d, "c.json")
        rc, out, err = cost("--levels", "1,2,4", *TINY, "--kv-bytes-max", "400000",
                            "--json", js)
        check(rc == 0, "a stopped sweep still reports", (rc, err))
        r = json.load(open(js))
    check([lv["level"] for lv in r["levels"]] == [1], "level 1 only", r["levels"])
    check(r["stopped"].startswith("level 2:") and "KV blocks" in r["stopped"], "why", r)
    check("slm cost: stopping the sweep: level 2:" in err, "said on stderr", err)
    check("sweep stopped: level 2" in out, "said in the report", out)


def test_url_against_slm_serve():
    srv = Server()
    try:
        with tempfile.TemporaryDirectory() as d:
            js = os.path.join(d, "u.json")
            url = "http://127.0.0.1:%d" % srv.port
            rc, out, err = slm(["cost", "--url", url, "--levels", "1,2", *TINY, "--json", js])
            check(rc == 0, "the sweep against the server runs", (rc, err, srv.log))
            r = json.load(open(js))
    finally:
        srv.stop()
    check(r["backend"] == url and r["model_sha256"] is None, "backend is the URL", r)
    check(r["model"] == os.path.basename(MODEL)[:-len(".gguf")], "the model the server named",
          r["model"])
    check(r["hardware"]["note"].startswith("--url"), "not priced without --hardware", r)
    check([lv["level"] for lv in r["levels"]] == [1, 2], "both levels", r["levels"])
    for lv in r["levels"]:
        check(lv["requests"] == 2 and lv["input_tokens"] == 16 and lv["output_tokens"] == 8,
              "token counts from the stream's usage", lv)
        check(lv["output_tok_s"] > 0 and lv["input_tok_s"] > 0 and lv["requests_s"] > 0,
              "positive throughput", lv)
        for k in ("ttft_ms", "tpot_ms", "e2e_ms"):
            p = lv[k]
            check(0 < p["p50"] <= p["p90"] <= p["p99"], "%s percentiles ordered" % k, p)
        check(lv["ttft_ms"]["p99"] <= lv["e2e_ms"]["p99"] and
              lv["ttft_ms"]["p50"] <= lv["e2e_ms"]["p50"], "TTFT within end-to-end", lv)
        for k in ("kv_blocks_peak", "kv_blocks_total", "kv_pool_bytes", "host_peak_bytes",
                  "device_used_bytes", "cached_tokens", "preemptions", "cost"):
            check(lv[k] is None, "%s absent, not zero" % k, lv)
    check("| - | - |" in out, "Markdown shows the absent figures as -", out)


def test_url_nothing_listening():
    rc, out, err = slm(["cost", "--url", "http://127.0.0.1:1", "--levels", "1,2", *TINY])
    lines = err.splitlines()
    check(rc == 1 and len(lines) == 1 and lines[0].startswith("slm cost: http://127.0.0.1:1/"),
          "one error line naming the URL", (rc, err))
    check("connect" in lines[0].lower(), "says it could not connect", lines[0])
    check(out == "", "nothing on stdout", out)


def one_error(args, *needles):
    rc, out, err = cost(*args)
    lines = err.splitlines()
    check(rc == 1 and len(lines) == 1 and lines[0].startswith("slm cost: "),
          "one error line for %s" % (args,), (rc, err))
    for n in needles:
        check(n in lines[0], "the error names %r" % n, lines[0])
    check(out == "", "nothing on stdout", out)


def test_profile_errors():
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "bad.conf")
        with open(bad, "w") as f:
            f.write("name = X\nmatch = X\npurchase_usd = 300\namortization_years = 3\n"
                    "power_load_w = 100\nprice_source = s\nprice_date = d\n")
        one_error(["--hardware", bad, *TINY], "bad.conf", "power_idle_w")
        with open(bad, "a") as f:
            f.write("power_idle_w = ten\n")
        one_error(["--hardware", bad, *TINY], "bad.conf:8", "power_idle_w", "ten")
        # a broken profile in the folder is found even when auto-detecting
        one_error(["--hardware-dir", d, *TINY], "bad.conf")
    one_error(["--hardware", "no-such-card", *TINY], "--hardware no-such-card")


def test_option_errors():
    one_error(["--levels", "1,0"], "--levels")
    one_error(["--utilization", "0"], "--utilization")
    one_error(["--mix", "chat", "--in", "8"], "--mix chat")
    one_error(["--mix", "code"], "--mix")
    one_error(["--out", "1"], "--out")
    one_error(["--frobnicate", "1"], "--frobnicate")
    one_error(["--url", "127.0.0.1:8080"], "--url")
    one_error(["--url", "http://127.0.0.1:8080", "--kv-bytes-max", "1000"], "--kv-bytes-max")
    rc, out, err = slm(["cost", "--help"])
    check(rc == 0 and out.startswith("usage: slm cost") and "--levels" in out and
          "lognormal" in out and "--kv-bytes-max" in out and "--url" in out and
          "ignore_eos" in out, "--help", (rc, out))


if __name__ == "__main__":
    sys.exit(run_tests([test_sweep_reports, test_stops_when_users_do_not_fit,
                        test_profile_errors, test_option_errors, test_url_against_slm_serve,
                        test_url_nothing_listening]))
