/*
 * test_server_http.c — the model-free pieces of `slm serve`: OpenAI request
 * parsing (every accepted shape and every refusal with its status, param
 * and message), the response and stream-chunk JSON read back with jansson,
 * server-sent-event framing, UTF-8 repair, the Prometheus rendering (parsed
 * back, buckets cumulative), and the engine→connection hand-off of a job
 * driven by a real second thread. The end-to-end server is tests/test_server.py.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tools/server_job.h"
#include "../tools/server_metrics.h"
#include "../tools/server_openai.h"
#include "testutil.h"

static const slm_srv_model_names names = {"SmolLM2-135M-Instruct.Q4_1",
                                          {"SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2"}};
static const slm_sampling defaults = {sizeof(slm_sampling), 0.8f, 40, 0.95f, 0.05f, 1.0f, 0, 0, 1234,
                                      NULL};

static int parse(const char *body, bool chat, slm_srv_request *r, slm_srv_error *e)
{
    memset(e, 0, sizeof *e);
    return slm_srv_request_parse(body, strlen(body), chat, &names, &defaults, r, e);
}

/* Expects a refusal with this status, param (NULL: any) and a message
 * holding `needle`. */
static void expect_error(const char *body, bool chat, int status, const char *param,
                         const char *needle)
{
    slm_srv_request r;
    slm_srv_error e;
    int rc = parse(body, chat, &r, &e);
    if (rc != -1 || e.status != status)
        fail_msg("body %s: rc %d status %d (want %d): %s", body, rc, e.status, status,
                 e.message);
    if (param && (!e.param || strcmp(e.param, param)))
        fail_msg("body %s: param %s, want %s", body, e.param ? e.param : "null", param);
    if (!strstr(e.message, needle))
        fail_msg("body %s: message '%s' lacks '%s'", body, e.message, needle);
    assert_null(r.root); /* freed on failure */
}

static void test_parse_chat(void **state)
{
    (void)state;
    slm_srv_request r;
    slm_srv_error e;
    const char *body =
        "{\"model\":\"SmolLM2-135M-Instruct.Q4_1\",\"messages\":[{\"role\":\"developer\","
        "\"content\":\"be brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"Hel\"},{\"type\":\"text\",\"text\":\"lo\"}]},{\"role\":\"assistant\",\"content\":null}],"
        "\"max_tokens\":7,\"max_completion_tokens\":9,\"temperature\":0,\"top_p\":0.5,"
        "\"top_k\":3,\"min_p\":0.1,\"seed\":-5,\"stop\":[\"a\",\"\",\"bc\"],"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-1,\"n\":1,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"user\":\"ignored\",\"logit_bias\":{}}";
    assert_int_equal(parse(body, true, &r, &e), 0);
    assert_true(r.chat && r.stream && r.include_usage);
    assert_int_equal(r.n_messages, 3);
    assert_string_equal(r.messages[0].role, "system"); /* developer → system */
    assert_string_equal(r.messages[0].content, "be brief");
    assert_string_equal(r.messages[1].content, "Hello"); /* parts joined */
    assert_string_equal(r.messages[2].content, "");
    assert_int_equal(r.max_tokens, 9); /* max_completion_tokens wins */
    /* Exact: these are the JSON numbers stored as float. */
    assert_true(r.sampling.temperature == 0.0f && r.sampling.top_p == 0.5f);
    assert_true(r.sampling.min_p == 0.1f && r.sampling.presence_penalty == 0.5f);
    assert_true(r.sampling.frequency_penalty == -1.0f);
    assert_int_equal(r.sampling.top_k, 3);
    assert_true(r.has_seed && r.sampling.seed == (uint64_t)(int64_t)-5);
    assert_int_equal(r.n_stop, 2); /* the empty stop string is dropped */
    assert_string_equal(r.stop[1], "bc");
    slm_srv_request_free(&r);
}

static void test_parse_defaults_and_prompts(void **state)
{
    (void)state;
    slm_srv_request r;
    slm_srv_error e;
    assert_int_equal(parse("{\"prompt\":\"Once\",\"stop\":\"\\n\",\"model\":\"\"}", false, &r, &e),
                     0);
    assert_string_equal(r.prompt, "Once");
    assert_true(!r.stream && !r.has_seed && r.max_tokens == 0);
    assert_true(r.sampling.temperature == defaults.temperature &&
                r.sampling.top_k == defaults.top_k && r.sampling.seed == defaults.seed);
    assert_int_equal(r.n_stop, 1);
    slm_srv_request_free(&r);

    /* include_usage without stream has no meaning and is dropped. */
    assert_int_equal(parse("{\"prompt\":[\"x\"],\"model\":\"SmolLM2\",\"max_tokens\":16.0,"
                           "\"stream_options\":{\"include_usage\":true}}",
                           false, &r, &e),
                     0);
    assert_string_equal(r.prompt, "x");
    assert_false(r.include_usage);
    assert_int_equal(r.max_tokens, 16);
    slm_srv_request_free(&r);

    int n = tu_int(1, 40);
    char body[1024] = "{\"prompt\":[[";
    int32_t want[40];
    for (int i = 0; i < n; i++) {
        want[i] = tu_int(0, 49151);
        snprintf(body + strlen(body), sizeof body - strlen(body), "%s%d", i ? "," : "",
                 (int)want[i]);
    }
    strcat(body, "]]}");
    assert_int_equal(parse(body, false, &r, &e), 0);
    assert_int_equal(r.n_tokens, n);
    assert_memory_equal(r.tokens, want, (size_t)n * sizeof *want);
    slm_srv_request_free(&r);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}", true, 400, NULL,
                 "not valid JSON");
    expect_error("[1,2]", true, 400, NULL, "must be a JSON object");
    expect_error("", false, 400, NULL, "not valid JSON");
    expect_error("{\"model\":null}", true, 400, "messages", "'messages' is required");
    expect_error("{\"messages\":[]}", true, 400, "messages", "non-empty");
    expect_error("{\"messages\":[{\"content\":\"hi\"}]}", true, 400, "messages", "role");
    expect_error("{\"messages\":[{\"role\":\"tool\",\"content\":\"hi\"}]}", true, 400,
                 "messages", "not supported");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
                 true, 400, "messages", "only");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", true, 400, "messages",
                 "must be a string");
    const char *u = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
    struct {
        const char *field;
        const char *param;
        const char *needle;
    } bad[] = {{"\"max_tokens\":\"x\"", "max_tokens", "must be an integer"},
               {"\"max_tokens\":0", "max_tokens", "between"},
               {"\"max_tokens\":1.5", "max_tokens", "must be an integer"},
               {"\"max_completion_tokens\":-3", "max_completion_tokens", "between"},
               {"\"temperature\":\"hot\"", "temperature", "must be a number"},
               {"\"temperature\":2.5", "temperature", "between"},
               {"\"top_p\":-0.1", "top_p", "between"},
               {"\"top_k\":1.5", "top_k", "integer"},
               {"\"min_p\":true", "min_p", "number"},
               {"\"seed\":\"7\"", "seed", "integer"},
               {"\"presence_penalty\":3", "presence_penalty", "between"},
               {"\"frequency_penalty\":[]", "frequency_penalty", "number"},
               {"\"n\":2", "n", "only n=1"},
               {"\"stop\":5", "stop", "string or an array"},
               {"\"stop\":[\"a\",1]", "stop", "stop[1]"},
               {"\"stream\":\"yes\"", "stream", "boolean"},
               {"\"stream_options\":1", "stream_options", "object"},
               {"\"model\":7", "model", "must be a string"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(b, sizeof b, "{%s,%s}", u, bad[i].field);
        expect_error(b, true, 400, bad[i].param, bad[i].needle);
    }
    snprintf(b, sizeof b, "{%s,\"model\":\"gpt-4o\"}", u);
    expect_error(b, true, 404, "model", "gpt-4o");
    expect_error("{\"prompt\":5}", false, 400, "prompt", "must be");
    expect_error("{\"prompt\":[\"a\",\"b\"]}", false, 400, "prompt", "only one prompt");
    expect_error("{\"prompt\":[1,-2]}", false, 400, "prompt", "prompt[1]");
    expect_error("{\"temperature\":1}", false, 400, "prompt", "'prompt' is required");
    /* The body need not be NUL-terminated: parse only a prefix. */
    slm_srv_request r;
    slm_srv_error e;
    const char *two = "{\"prompt\":\"a\"}garbage";
    assert_int_equal(slm_srv_request_parse(two, 14, false, &names, &defaults, &r, &e), 0);
    slm_srv_request_free(&r);
}

static json_t *load(char *text)
{
    assert_non_null(text);
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v)
        fail_msg("not JSON (%s): %s", je.text, text);
    free(text);
    return v;
}

static const char *str_at(json_t *root, const char *path)
{
    /* path: dot-separated keys, numbers index arrays */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(tok)) : json_object_get(v, tok);
    return json_string_value(v);
}

static void test_responses(void **state)
{
    (void)state;
    slm_srv_request rq = {.chat = true};
    slm_srv_reply rep = {&rq, "chatcmpl-1", "m", 1700000000};
    json_t *o = load(slm_srv_response_json(&rep, "Hi \"there\"\n", 11, "length", 12, 5));
    assert_string_equal(str_at(o, "object"), "chat.completion");
    assert_string_equal(str_at(o, "choices.0.message.content"), "Hi \"there\"\n");
    assert_string_equal(str_at(o, "choices.0.message.role"), "assistant");
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "length");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "usage"),
                                                        "total_tokens")), 17);
    assert_int_equal(json_integer_value(json_object_get(o, "created")), 1700000000);
    json_decref(o);

    /* Chat chunks: the role chunk, a content chunk, the final one. */
    rq.include_usage = true;
    o = load(slm_srv_chunk_json(&rep, "", 0, true, NULL));
    assert_string_equal(str_at(o, "object"), "chat.completion.chunk");
    assert_string_equal(str_at(o, "choices.0.delta.role"), "assistant");
    assert_true(json_is_null(json_object_get(o, "usage")));
    assert_true(json_is_null(json_object_get(json_array_get(json_object_get(o, "choices"), 0),
                                             "finish_reason")));
    json_decref(o);
    o = load(slm_srv_chunk_json(&rep, "\xc3\xa9t\xc3", 4, false, NULL)); /* cut UTF-8 */
    assert_string_equal(str_at(o, "choices.0.delta.content"), "\xc3\xa9t\xef\xbf\xbd");
    assert_null(str_at(o, "choices.0.delta.role"));
    json_decref(o);
    o = load(slm_srv_chunk_json(&rep, "", 0, false, "stop"));
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "stop");
    assert_int_equal(json_object_size(json_object_get(
                         json_array_get(json_object_get(o, "choices"), 0), "delta")), 0);
    json_decref(o);
    o = load(slm_srv_usage_chunk_json(&rep, 3, 4));
    assert_int_equal(json_array_size(json_object_get(o, "choices")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "usage"),
                                                        "completion_tokens")), 4);
    json_decref(o);

    /* Text completions. */
    rq = (slm_srv_request){.chat = false};
    o = load(slm_srv_chunk_json(&rep, "ab", 2, false, NULL));
    assert_string_equal(str_at(o, "object"), "text_completion");
    assert_string_equal(str_at(o, "choices.0.text"), "ab");
    assert_null(json_object_get(o, "usage")); /* only with include_usage */
    json_decref(o);
    o = load(slm_srv_response_json(&rep, "\xff", 1, "stop", 1, 1));
    assert_string_equal(str_at(o, "choices.0.text"), "\xef\xbf\xbd");
    json_decref(o);

    slm_srv_error e;
    slm_srv_error_set(&e, 404, "invalid_request_error", "model", NULL, "no %s", "model\x01\"");
    o = load(slm_srv_error_json(&e));
    assert_string_equal(str_at(o, "error.message"), "no model\x01\"");
    assert_string_equal(str_at(o, "error.param"), "model");
    assert_true(json_is_null(json_object_get(json_object_get(o, "error"), "code")));
    json_decref(o);
}

static void test_sse(void **state)
{
    (void)state;
    slm_srv_buf b = {0};
    int n = tu_int(1, 300);
    for (int i = 0; i < n; i++)
        assert_int_equal(slm_srv_sse_event(&b, "{\"a\":1}"), 0);
    assert_int_equal(slm_srv_sse_done(&b), 0);
    const char *one = "data: {\"a\":1}\n\n";
    assert_int_equal(b.len, (size_t)n * strlen(one) + 14);
    for (int i = 0; i < n; i++)
        assert_memory_equal(b.data + (size_t)i * strlen(one), one, strlen(one));
    assert_string_equal(b.data + (size_t)n * strlen(one), "data: [DONE]\n\n");
    slm_srv_buf_free(&b);
}

/* Reads the value of one sample line "name{labels} value" from the text. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return atof(p + n + 1);
    fail_msg("series %s missing", series);
    return -1;
}

static void test_metrics(void **state)
{
    (void)state;
    slm_srv_metrics m;
    slm_srv_metrics_init(&m);
    int n = tu_int(5, 200);
    double sum = 0;
    int le_01 = 0;
    for (int i = 0; i < n; i++) {
        double s = tu_uniform(0, 0.3f);
        sum += s;
        le_01 += s <= 0.1;
        slm_srv_histogram_observe(&m.ttft, s);
    }
    slm_srv_metrics_finished(&m, SLM_FINISH_CANCELLED);
    slm_srv_metrics_http(&m, 404);
    slm_srv_metrics_http(&m, 418);
    slm_engine_stats es = {.size = sizeof es, .running = 3, .waiting = 2, .kv_blocks_used = 17,
                           .kv_blocks_total = 1024, .generated_tokens = 99, .preemptions = 4};
    char *t = slm_srv_metrics_render(&m, &es);
    assert_non_null(t);
    assert_true(sample(t, "slm_requests_running") == 3);
    assert_true(sample(t, "slm_requests_waiting") == 2);
    assert_true(sample(t, "slm_kv_blocks_used") == 17);
    assert_true(sample(t, "slm_kv_blocks_total") == 1024);
    assert_true(sample(t, "slm_generation_tokens_total") == 99);
    assert_true(sample(t, "slm_preemptions_total") == 4);
    assert_true(sample(t, "slm_time_to_first_token_seconds_bucket{le=\"0.1\"}") == le_01);
    assert_true(sample(t, "slm_time_to_first_token_seconds_bucket{le=\"+Inf\"}") == n);
    assert_true(sample(t, "slm_time_to_first_token_seconds_count") == n);
    /* Sum kept in whole microseconds: within 1 µs per observation. */
    assert_true(fabs(sample(t, "slm_time_to_first_token_seconds_sum") - sum) <= 1e-6 * n + 1e-6);
    assert_true(sample(t, "slm_inter_token_latency_seconds_count") == 0);
    assert_true(sample(t, "slm_requests_finished_total{reason=\"cancelled\"}") == 1);
    assert_true(sample(t, "slm_requests_finished_total{reason=\"stop\"}") == 0);
    assert_true(sample(t, "slm_http_responses_total{status=\"404\"}") == 1);
    assert_true(sample(t, "slm_http_responses_total{status=\"other\"}") == 1);
    assert_non_null(strstr(t, "# TYPE slm_time_to_first_token_seconds histogram\n"));
    /* Buckets never decrease. */
    double prev = -1;
    for (const char *p = strstr(t, "slm_inter_token"); p; p = strstr(p + 1, "_bucket{le=")) {
        const char *sp = strchr(p, ' ');
        if (strncmp(p, "slm_inter", 9) && strncmp(p, "_bucket", 7))
            break;
        if (!strncmp(p, "_bucket", 7)) {
            double v = atof(sp + 1);
            assert_true(v >= prev);
            prev = v;
        }
    }
    free(t);
    t = slm_srv_metrics_render(&m, NULL); /* while loading */
    assert_true(sample(t, "slm_kv_blocks_used") == 0);
    free(t);
}

/* The engine side of a job, on its own thread: random pieces, then done. */
typedef struct {
    slm_srv_job *job;
    char text[4096];
    int pieces;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    size_t at = 0, len = strlen(p->text);
    for (int i = 0; i < p->pieces; i++) {
        size_t k = i + 1 == p->pieces ? len - at : (size_t)tu_int(0, (int)(len - at));
        slm_srv_job_on_token(p->job, p->text + at, k);
        at += k;
        if (tu_int(0, 3) == 0)
            usleep(1000);
    }
    slm_result r = {.size = sizeof r, .finish = SLM_FINISH_LENGTH, .completion_tokens = 7,
                    .error = ""};
    slm_srv_job_on_done(p->job, &r);
    return NULL;
}

static void test_job_handoff(void **state)
{
    (void)state;
    slm_srv_metrics m;
    slm_srv_metrics_init(&m);
    for (int round = 0; round < 20; round++) {
        static producer p;
        p.job = slm_srv_job_new(&m);
        assert_non_null(p.job);
        int n = tu_int(0, 2000);
        for (int i = 0; i < n; i++)
            p.text[i] = (char)tu_int('a', 'z');
        p.text[n] = 0;
        p.pieces = tu_int(1, 50);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, produce, &p), 0);
        slm_srv_buf got = {0};
        bool done = false;
        while (!done)
            assert_int_not_equal(slm_srv_job_wait(p.job, -1, &got, &done), SLM_SRV_WAIT_GONE);
        pthread_join(th, NULL);
        assert_int_equal(got.len, (size_t)n);
        assert_true(n == 0 || !memcmp(got.data, p.text, (size_t)n));
        assert_int_equal(p.job->result.finish, SLM_FINISH_LENGTH);
        assert_int_equal(p.job->result.completion_tokens, 7);
        slm_srv_buf_free(&got);
        slm_srv_job_release(p.job); /* the connection's reference: frees (ASan checks) */
    }
    assert_true(atomic_load(&m.finished[SLM_FINISH_LENGTH]) == 20);
}

static void test_peer_gone(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_false(slm_srv_peer_gone(sv[0]));
    assert_int_equal(write(sv[1], "GET", 3), 3); /* pipelined data is not a hang-up */
    assert_false(slm_srv_peer_gone(sv[0]));
    slm_srv_job *j = slm_srv_job_new(NULL);
    slm_srv_buf got = {0};
    bool done = false;
    close(sv[1]);
    assert_true(slm_srv_peer_gone(sv[0]));
    assert_int_equal(slm_srv_job_wait(j, sv[0], &got, &done), SLM_SRV_WAIT_GONE);
    close(sv[0]);
    slm_srv_job_release(j);
    slm_srv_job_release(j);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_chat),     cmocka_unit_test(test_parse_defaults_and_prompts),
        cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_responses),
        cmocka_unit_test(test_sse),            cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_job_handoff),    cmocka_unit_test(test_peer_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
