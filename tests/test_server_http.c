/*
 * test_server_http.c — the model-free pieces of `slm serve`: OpenAI request
 * parsing (every accepted shape and every refusal with its status, param
 * and message), the response and stream-chunk JSON read back with jansson,
 * server-sent-event framing, UTF-8 repair, the Prometheus rendering (parsed
 * back, buckets cumulative), and the engine→connection hand-off of a job
 * driven by a real second thread (and its latency metrics, per choice).
 * Issue 15's fields: n, logprobs,
 * logit_bias, echo/best_of/suffix, tools refused, unknown fields refused
 * naming them, engine messages mapped to their field, and the JSON of
 * several choices with logprobs (chat and completions, whole and streamed).
 * The end-to-end server is tests/test_server.py and test_server_features.py.
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
                                      NULL, 0, NULL};

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
               {"\"n\":17", "n", "between 1 and 16"},
               {"\"n\":0", "n", "between 1 and 16"},
               {"\"top_p\":0", "top_p", "greater than 0"},
               {"\"repeat_penalty\":0", "repeat_penalty", "greater than 0"},
               {"\"logit_bias\":\"x\"", "logit_bias", "must be an object"},
               {"\"logit_bias\":{\"x\":1}", "logit_bias", "not a token id"},
               {"\"logit_bias\":{\"-3\":1}", "logit_bias", "not a token id"},
               {"\"logit_bias\":{\"12345678901\":1}", "logit_bias", "not a token id"},
               {"\"logit_bias\":{\"5\":\"1\"}", "logit_bias", "must be a number"},
               {"\"logit_bias\":{\"5\":100.5}", "logit_bias", "between -100 and 100"},
               {"\"logprobs\":1", "logprobs", "boolean"},
               {"\"top_logprobs\":3", "top_logprobs", "needs 'logprobs'"},
               {"\"logprobs\":true,\"top_logprobs\":21", "top_logprobs", "between 0 and 20"},
               {"\"tools\":[{\"type\":\"function\"}]", "tools", "tool-call"},
               {"\"functions\":[{\"name\":\"f\"}]", "functions", "not supported"},
               {"\"tool_choice\":\"auto\"", "tool_choice", "not supported"},
               {"\"function_call\":{\"name\":\"f\"}", "function_call", "not supported"},
               {"\"echo\":true", "echo", "field of /v1/completions"},
               {"\"prompt\":\"x\"", "prompt", "field of /v1/completions"},
               {"\"frobnicate\":1", "frobnicate", "unknown field 'frobnicate'"},
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
    expect_error("{\"prompt\":\"a\",\"best_of\":3,\"n\":2}", false, 400, "best_of", "equal n");
    expect_error("{\"prompt\":\"a\",\"suffix\":\"z\"}", false, 400, "suffix", "insertion");
    expect_error("{\"prompt\":[1,2],\"echo\":true}", false, 400, "echo", "text prompt");
    expect_error("{\"prompt\":\"a\",\"echo\":true,\"logprobs\":1}", false, 400, "echo",
                 "log-probabilities");
    expect_error("{\"prompt\":\"a\",\"logprobs\":6}", false, 400, "logprobs", "between 0 and 5");
    expect_error("{\"prompt\":\"a\",\"top_logprobs\":2}", false, 400, "top_logprobs",
                 "field of /v1/chat/completions");
    expect_error("{\"prompt\":\"a\",\"messages\":[]}", false, 400, "messages",
                 "field of /v1/chat/completions");
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

/* The whole answer with one choice of text that ended with finish. */
static char *one_choice_json(const slm_srv_reply *rep, const char *text, size_t len,
                             slm_finish_reason finish, int prompt_tokens, int completion_tokens)
{
    slm_srv_choices cs;
    assert_int_equal(slm_srv_choices_init(&cs, 1), 0);
    assert_int_equal(slm_srv_buf_append(&cs.c[0].text, text, len), 0);
    cs.c[0].done = true;
    cs.c[0].finish = finish;
    char *json = slm_srv_choices_response_json(rep, &cs, prompt_tokens, completion_tokens);
    slm_srv_choices_free(&cs);
    return json;
}

static void test_responses(void **state)
{
    (void)state;
    slm_srv_request rq = {.chat = true};
    slm_srv_reply rep = {&rq, "chatcmpl-1", "m", 1700000000, NULL};
    json_t *o = load(one_choice_json(&rep, "Hi \"there\"\n", 11, SLM_FINISH_LENGTH, 12, 5));
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
    o = load(slm_srv_chunk_json(&rep, 0, "", 0, NULL, true, NULL));
    assert_string_equal(str_at(o, "object"), "chat.completion.chunk");
    assert_string_equal(str_at(o, "choices.0.delta.role"), "assistant");
    assert_true(json_is_null(json_object_get(o, "usage")));
    assert_true(json_is_null(json_object_get(json_array_get(json_object_get(o, "choices"), 0),
                                             "finish_reason")));
    json_decref(o);
    o = load(slm_srv_chunk_json(&rep, 0, "\xc3\xa9t\xc3", 4, NULL, false, NULL)); /* cut UTF-8 */
    assert_string_equal(str_at(o, "choices.0.delta.content"), "\xc3\xa9t\xef\xbf\xbd");
    assert_null(str_at(o, "choices.0.delta.role"));
    json_decref(o);
    o = load(slm_srv_chunk_json(&rep, 0, "", 0, NULL, false, "stop"));
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
    o = load(slm_srv_chunk_json(&rep, 0, "ab", 2, NULL, false, NULL));
    assert_string_equal(str_at(o, "object"), "text_completion");
    assert_string_equal(str_at(o, "choices.0.text"), "ab");
    assert_null(json_object_get(o, "usage")); /* only with include_usage */
    json_decref(o);
    o = load(one_choice_json(&rep, "\xff", 1, SLM_FINISH_STOP, 1, 1));
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

/* The fields issue 15 added, accepted: n, logprobs, logit_bias, echo,
 * best_of = n, the harmless ones, tool_choice "none", empty tools. */
static void test_parse_features(void **state)
{
    (void)state;
    slm_srv_request r;
    slm_srv_error e;
    assert_int_equal(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":3,"
                           "\"logprobs\":true,\"top_logprobs\":20,\"logit_bias\":{\"17\":-100,"
                           "\"4\":2.5},\"user\":\"u\",\"store\":false,\"metadata\":{},"
                           "\"service_tier\":\"auto\",\"parallel_tool_calls\":true,"
                           "\"tool_choice\":\"none\",\"tools\":[],\"response_format\":null}",
                           true, &r, &e),
                     0);
    assert_int_equal(r.n, 3);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 20);
    assert_int_equal(r.sampling.n_logit_bias, 2);
    assert_ptr_equal(r.sampling.logit_bias, r.logit_bias);
    for (int i = 0; i < 2; i++) /* object order is jansson's: find both */
        assert_true((r.logit_bias[i].token == 17 && r.logit_bias[i].bias == -100.0f) ||
                    (r.logit_bias[i].token == 4 && r.logit_bias[i].bias == 2.5f));
    assert_int_not_equal(r.logit_bias[0].token, r.logit_bias[1].token);
    slm_srv_request_free(&r);

    assert_int_equal(parse("{\"prompt\":\"Once\",\"logprobs\":0,\"best_of\":2,"
                           "\"n\":2,\"suffix\":\"\"}", false, &r, &e),
                     0);
    assert_true(r.logprobs && r.top_logprobs == 0 && !r.echo && r.n == 2);
    slm_srv_request_free(&r);
    assert_int_equal(parse("{\"prompt\":\"Once\",\"echo\":true}", false, &r, &e), 0);
    assert_true(r.echo && !r.logprobs);
    slm_srv_request_free(&r);
    assert_int_equal(parse("{\"prompt\":\"Once\",\"logprobs\":null}", false, &r, &e), 0);
    assert_false(r.logprobs);
    assert_int_equal(r.n, 1);
    slm_srv_request_free(&r);

    /* The engine's refusals name their field. */
    static const struct {
        const char *msg, *param;
    } m[] = {{"sampling.top_p: 0 must be > 0", "top_p"},
             {"sampling.logit_bias: token 99999 is outside the vocabulary of 49152",
              "logit_bias"},
             {"sampling.repeat_penalty: 0 must be > 0", "repeat_penalty"},
             {"n: 17 choices, the range is 1..16", "n"},
             {"top_logprobs: needs logprobs", "top_logprobs"},
             {"the prompt is 9000 tokens, which leaves no room", "messages"},
             {"sampling.nonsense: x", "messages"}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        assert_string_equal(slm_srv_engine_error_param(m[i].msg, true), m[i].param);
    assert_string_equal(slm_srv_engine_error_param("bad", false), "prompt");
}

/* A two-entry vocabulary for the logprob JSON: token 1 is "Hi", 2 is
 * " \xc3" (half a UTF-8 character: token is repaired, bytes are exact). */
static const char *fake_piece(void *ctx, int32_t tok, size_t *len)
{
    (void)ctx;
    static const char *p[] = {"", "Hi", " \xc3"};
    if (tok < 0 || tok > 2)
        return NULL;
    *len = strlen(p[tok]);
    return p[tok];
}

static slm_choice_event event_of(int choice, const char *text, const slm_token_logprobs *lp,
                                 int n_lp, const slm_result *done)
{
    return (slm_choice_event){sizeof(slm_choice_event), choice, text, strlen(text), lp, n_lp,
                              done};
}

static json_t *at(json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(tok)) : json_object_get(v, tok);
    return v;
}

static void test_choices_json(void **state)
{
    (void)state;
    slm_srv_vocab vocab = {fake_piece, NULL};
    slm_srv_request rq = {.chat = true, .n = 2, .logprobs = true, .top_logprobs = 2};
    slm_srv_reply rep = {&rq, "chatcmpl-1", "m", 1700000000, &vocab};
    slm_token_logprobs lp[2] = {
        {{1, -0.5f}, 2, {{1, -0.5f}, {2, -1.25f}}},
        {{2, -INFINITY}, 2, {{1, -0.1f}, {2, -INFINITY}}},
    };
    slm_result fin = {.size = sizeof fin, .finish = SLM_FINISH_LENGTH};
    slm_result stop = {.size = sizeof stop, .finish = SLM_FINISH_STOP};
    slm_srv_choices eng, got;
    assert_int_equal(slm_srv_choices_init(&eng, 2), 0);
    assert_int_equal(slm_srv_choices_init(&got, 2), 0);
    slm_choice_event ev = event_of(1, "Hi \xc3", lp, 2, &stop);
    assert_int_equal(slm_srv_choices_add(&eng, &ev), 0);
    ev = event_of(0, "Hi", lp, 1, NULL);
    assert_int_equal(slm_srv_choices_add(&eng, &ev), 0);
    ev = event_of(5, "x", NULL, 0, NULL);
    assert_int_equal(slm_srv_choices_add(&eng, &ev), -1); /* no such choice */
    ev = event_of(0, "", NULL, 0, &fin);
    assert_int_equal(slm_srv_choices_add(&eng, &ev), 0);
    assert_true(eng.dirty);
    assert_int_equal(slm_srv_choices_move(&eng, &got), 0);
    assert_false(eng.dirty);
    assert_int_equal(eng.c[1].text.len, 0);

    json_t *o = load(slm_srv_choices_response_json(&rep, &got, 7, 3));
    assert_int_equal(json_array_size(at(o, "choices")), 2);
    assert_string_equal(str_at(o, "choices.0.message.content"), "Hi");
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "length");
    assert_string_equal(str_at(o, "choices.1.finish_reason"), "stop");
    assert_int_equal(json_integer_value(at(o, "choices.1.index")), 1);
    assert_string_equal(str_at(o, "choices.0.logprobs.content.0.token"), "Hi");
    assert_true(json_real_value(at(o, "choices.0.logprobs.content.0.logprob")) == -0.5);
    assert_int_equal(json_array_size(at(o, "choices.0.logprobs.content.0.top_logprobs")), 2);
    assert_true(json_real_value(at(o, "choices.0.logprobs.content.0.top_logprobs.1.logprob")) ==
                -1.25);
    /* A banned token's -inf is OpenAI's -9999; bad UTF-8 is repaired in
     * token, exact in bytes. */
    assert_true(json_real_value(at(o, "choices.1.logprobs.content.1.logprob")) == -9999.0);
    assert_string_equal(str_at(o, "choices.1.logprobs.content.1.token"), " \xef\xbf\xbd");
    assert_int_equal(json_integer_value(at(o, "choices.1.logprobs.content.1.bytes.1")), 0xc3);
    assert_int_equal(json_integer_value(at(o, "usage.completion_tokens")), 3);
    json_decref(o);

    /* Completions: parallel arrays with text offsets after the echoed
     * prompt. */
    slm_srv_request cq = {.chat = false, .n = 2, .logprobs = true, .top_logprobs = 2,
                          .echo = true, .prompt = "Say:"};
    rep.rq = &cq;
    o = load(slm_srv_choices_response_json(&rep, &got, 7, 3));
    assert_string_equal(str_at(o, "choices.1.text"), "Say:Hi \xef\xbf\xbd");
    assert_string_equal(str_at(o, "choices.1.logprobs.tokens.0"), "Hi");
    assert_int_equal(json_integer_value(at(o, "choices.1.logprobs.text_offset.0")), 4);
    assert_int_equal(json_integer_value(at(o, "choices.1.logprobs.text_offset.1")), 6);
    assert_true(json_real_value(at(o, "choices.1.logprobs.token_logprobs.1")) == -9999.0);
    assert_true(json_real_value(at(o, "choices.1.logprobs.top_logprobs.0.Hi")) == -0.5);
    json_decref(o);

    /* Streamed: completions echo first, then a chunk per choice with text,
     * then each finish once. */
    slm_srv_buf out = {0};
    assert_int_equal(slm_srv_choice_events(&rep, &got, true, &out), 0);
    int events = 0, finishes = 0;
    for (char *p = out.data; p && (p = strstr(p, "data: ")); p += 6) {
        char *end = strstr(p, "\n\n");
        assert_non_null(end);
        json_t *c = load(strndup(p + 6, (size_t)(end - p - 6)));
        if (events < 2) /* the echo of each choice */
            assert_string_equal(str_at(c, "choices.0.text"), "Say:");
        finishes += str_at(c, "choices.0.finish_reason") != NULL;
        if (events == 3) { /* choice 1's text: offsets continue after the echo */
            assert_int_equal(json_integer_value(at(c, "choices.0.index")), 1);
            assert_int_equal(json_integer_value(at(c, "choices.0.logprobs.text_offset.1")), 6);
        }
        json_decref(c);
        events++;
    }
    assert_int_equal(events, 6); /* 2 echoes, 2 texts, 2 finishes */
    assert_int_equal(finishes, 2);
    out.len = 0;
    assert_int_equal(slm_srv_choice_events(&rep, &got, false, &out), 0);
    assert_int_equal(out.len, 0); /* finishes go out once */
    slm_srv_buf_free(&out);
    slm_srv_choices_free(&eng);
    slm_srv_choices_free(&got);
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
    atomic_store(&m.connections, 5);
    slm_engine_stats es = {.size = sizeof es, .running = 3, .waiting = 2, .kv_blocks_used = 17,
                           .kv_blocks_total = 1024, .generated_tokens = 99, .preemptions = 4};
    char *t = slm_srv_metrics_render(&m, &es);
    assert_non_null(t);
    assert_true(sample(t, "slm_requests_running") == 3);
    assert_true(sample(t, "slm_requests_waiting") == 2);
    assert_true(sample(t, "slm_kv_blocks_used") == 17);
    assert_true(sample(t, "slm_http_connections") == 5);
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

/* One piece of choice 0's text, as the engine's on_choice hands it. */
static void choice_text(slm_srv_job *j, const char *text, size_t len)
{
    slm_choice_event ev = {sizeof ev, 0, text, len, NULL, 0, NULL};
    slm_srv_job_on_choice(j, &ev);
}

/* A job set up for one choice, as slm_srv_generate makes it. */
static slm_srv_job *job_one(slm_srv_metrics *m)
{
    slm_srv_job *j = slm_srv_job_new(m);
    assert_non_null(j);
    assert_int_equal(slm_srv_choices_init(&j->ch, 1), 0);
    return j;
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
        choice_text(p->job, p->text + at, k);
        at += k;
        if (tu_int(0, 3) == 0)
            usleep(1000);
    }
    slm_result r = {.size = sizeof r, .finish = SLM_FINISH_LENGTH, .completion_tokens = 7,
                    .error = ""};
    slm_srv_job_on_done(p->job, &r);
    return NULL;
}

/* The loop's side of a job: the wake hook posts to a pipe, as the server's
 * eventfd does; the reader waits on it, acknowledges, and takes. */
static void wake_pipe(void *ctx, slm_srv_job *j)
{
    (void)j;
    int fd = *(int *)ctx;
    assert_int_equal(write(fd, "w", 1), 1);
}

static void test_job_handoff(void **state)
{
    (void)state;
    slm_srv_metrics m;
    slm_srv_metrics_init(&m);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    for (int round = 0; round < 20; round++) {
        static producer p;
        p.job = job_one(&m);
        p.job->wake = wake_pipe;
        p.job->wake_ctx = &pfd[1];
        int n = tu_int(0, 2000);
        for (int i = 0; i < n; i++)
            p.text[i] = (char)tu_int('a', 'z');
        p.text[n] = 0;
        p.pieces = tu_int(1, 50);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, produce, &p), 0);
        slm_srv_choices got;
        assert_int_equal(slm_srv_choices_init(&got, 1), 0);
        int wakes = 0;
        for (bool done = false; !done;) {
            char c;
            assert_int_equal(read(pfd[0], &c, 1), 1);
            wakes++;
            slm_srv_job_woken(p.job);
            done = slm_srv_job_take(p.job, &got);
        }
        pthread_join(th, NULL);
        /* One wake-up at most per piece and the end: never one per byte. */
        assert_true(wakes >= 1 && wakes <= p.pieces + 1);
        assert_int_equal(got.c[0].text.len, (size_t)n);
        assert_true(n == 0 || !memcmp(got.c[0].text.data, p.text, (size_t)n));
        assert_int_equal(p.job->result.finish, SLM_FINISH_LENGTH);
        assert_int_equal(p.job->result.completion_tokens, 7);
        slm_srv_choices_free(&got);
        slm_srv_job_release(p.job); /* the connection's reference: frees (ASan checks) */
    }
    close(pfd[0]);
    close(pfd[1]);
    assert_true(atomic_load(&m.finished[SLM_FINISH_LENGTH]) == 20);
}

/* While a wake-up is pending, more output does not wake again; after the
 * loop acknowledged it, the next output does. */
static void test_job_wake_once(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    slm_srv_job *j = job_one(NULL);
    j->wake = wake_pipe;
    j->wake_ctx = &pfd[1];
    choice_text(j, "ab", 2);
    choice_text(j, "cd", 2);
    char buf[8];
    assert_int_equal(read(pfd[0], buf, sizeof buf), 1);
    slm_srv_job_woken(j);
    slm_srv_choices got;
    assert_int_equal(slm_srv_choices_init(&got, 1), 0);
    assert_false(slm_srv_job_take(j, &got));
    assert_int_equal(got.c[0].text.len, 4);
    choice_text(j, "e", 1);
    assert_int_equal(read(pfd[0], buf, sizeof buf), 1);
    slm_srv_job_woken(j);
    j->wake = NULL; /* the connection ended: done is not announced */
    slm_result r = {.size = sizeof r, .finish = SLM_FINISH_STOP, .error = ""};
    slm_srv_job_on_done(j, &r); /* drops the engine's reference */
    assert_true(slm_srv_job_take(j, &got));
    assert_int_equal(got.c[0].text.len, 5);
    assert_memory_equal(got.c[0].text.data, "abcde", 5);
    slm_srv_choices_free(&got);
    slm_srv_job_release(j);
    close(pfd[0]);
    close(pfd[1]);
}

/* Time between tokens is per choice: with n = 2 the two choices' events of
 * one step come microseconds apart, and that gap is not an inter-token
 * time. Two steps 20 ms apart: one time to first token, and one
 * inter-token time per choice, each at least the 20 ms slept (never a
 * near-zero gap between choices). */
static void test_job_latency_per_choice(void **state)
{
    (void)state;
    slm_srv_metrics m;
    slm_srv_metrics_init(&m);
    slm_srv_job *j = slm_srv_job_new(&m);
    assert_non_null(j);
    assert_int_equal(slm_srv_choices_init(&j->ch, 2), 0);
    for (int step = 0; step < 2; step++) {
        if (step)
            usleep(20000);
        for (int k = 0; k < 2; k++) {
            slm_choice_event ev = {sizeof ev, k, "ab", 2, NULL, 0, NULL};
            slm_srv_job_on_choice(j, &ev);
        }
    }
    unsigned long long ttft = 0, itl = 0;
    for (int i = 0; i <= SLM_SRV_TTFT_BUCKETS; i++)
        ttft += atomic_load(&m.ttft.counts[i]);
    for (int i = 0; i <= SLM_SRV_ITL_BUCKETS; i++)
        itl += atomic_load(&m.itl.counts[i]);
    assert_int_equal(ttft, 1);
    assert_int_equal(itl, 2);
    for (int i = 0; i < SLM_SRV_ITL_BUCKETS && m.itl.bounds[i] < 0.02; i++)
        assert_int_equal(atomic_load(&m.itl.counts[i]), 0);
    slm_result r = {.size = sizeof r, .finish = SLM_FINISH_LENGTH, .error = ""};
    slm_srv_job_on_done(j, &r);
    slm_srv_job_release(j);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_chat),     cmocka_unit_test(test_parse_defaults_and_prompts),
        cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_responses),
        cmocka_unit_test(test_sse),            cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_job_handoff),    cmocka_unit_test(test_job_wake_once),
        cmocka_unit_test(test_job_latency_per_choice),
        cmocka_unit_test(test_parse_features), cmocka_unit_test(test_choices_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
