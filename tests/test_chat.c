/*
 * test_chat.c — chat templates: each family renders the exact text of
 * ../shared/gguf-facts.md §6 (EXAONE and Gemma's system folding: the texts
 * their Hugging Face Jinja templates give, written out by hand, see each
 * test); templates are recognised from their markers; a file without a
 * template gets the family its vocabulary's turn tokens name, or plain; an
 * unknown template falls back to ChatML and says so; bad roles and names
 * are refused with a message; in every family the content spans cover
 * exactly the messages' (trimmed where the family trims) contents and the
 * markup lies outside them, so content is never parsed for control tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"
#include "gguf_write.h"
#include "testutil.h"
#include "tokenizer.h"

static const slm_chat_msg conv[] = {
    {"system", "Be brief."},
    {"user", "Hi!"},
    {"assistant", "Hello."},
    {"user", "2+2?"},
};

static void expect_msgs(slm_chat_format f, const slm_chat_msg *m, int n, const char *want)
{
    slm_chat_template t = {f, NULL};
    char *s;
    assert_int_equal(slm_chat_render(&t, m, n, true, &s), SLM_OK);
    if (strcmp(s, want)) {
        print_error("%s rendered:\n%s\nwanted:\n%s\n", slm_chat_format_name(f), s, want);
        fail();
    }
    free(s);
}

static void expect(slm_chat_format f, const char *want) { expect_msgs(f, conv, 4, want); }

static void test_formats(void **state)
{
    (void)state;
    expect(SLM_CHAT_CHATML,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
           "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(SLM_CHAT_LLAMA3,
           "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(SLM_CHAT_LLAMA2, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
                            "<s>[INST] 2+2? [/INST]");
    expect(SLM_CHAT_PHI3, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi!<|end|>\n"
                          "<|assistant|>\nHello.<|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n");
    expect(SLM_CHAT_GEMMA, "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n"
                           "<start_of_turn>model\nHello.<end_of_turn>\n"
                           "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
    /* LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct's template (as EXAONE 3.0's):
     * [|role|]content, "\n" after a user turn, "[|endofturn|]\n" after the
     * others, "[|assistant|]" as the generation prompt. */
    expect(SLM_CHAT_EXAONE, "[|system|]Be brief.[|endofturn|]\n[|user|]Hi!\n"
                            "[|assistant|]Hello.[|endofturn|]\n[|user|]2+2?\n[|assistant|]");
    expect(SLM_CHAT_PLAIN, "Be brief.\n\nHi!\n\nHello.\n\n2+2?");
}

/* EXAONE's template opens with an empty system turn when the conversation
 * has none, and keeps contents verbatim (no trim). */
static void test_exaone(void **state)
{
    (void)state;
    const slm_chat_msg m[] = {{"user", " Hi \n"}, {"assistant", "Yo"}, {"user", "?"}};
    expect_msgs(SLM_CHAT_EXAONE, m, 3,
                "[|system|][|endofturn|]\n[|user|] Hi \n\n[|assistant|]Yo[|endofturn|]\n"
                "[|user|]?\n[|assistant|]");
    assert_string_equal(slm_chat_end_of_turn(SLM_CHAT_EXAONE), "[|endofturn|]");
    assert_string_equal(slm_chat_end_of_turn(SLM_CHAT_PLAIN), "");
}

/* Gemma has no system role. google/gemma-3-270m-it's template puts a
 * leading system message's text and "\n\n" at the start of the first user
 * turn, and trims the turn contents; llama.cpp (llm_chat_apply_template,
 * LLM_CHAT_TEMPLATE_GEMMA) also trims the system text and joins several
 * system messages, which slm follows. */
static void test_gemma_system(void **state)
{
    (void)state;
    const slm_chat_msg one[] = {{"system", "You are terse."}, {"user", "  Hi\n"}};
    expect_msgs(SLM_CHAT_GEMMA, one, 2,
                "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    const slm_chat_msg two[] = {{"system", " A. "}, {"system", "B."}, {"user", "Hi"}};
    expect_msgs(SLM_CHAT_GEMMA, two, 3,
                "<start_of_turn>user\nA.B.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    const slm_chat_msg blank[] = {{"system", " \n"}, {"user", "Hi"}};
    expect_msgs(SLM_CHAT_GEMMA, blank, 2,
                "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
}

/* A tokenizer whose vocabulary is toks (SentencePiece; no template key). */
static slm_tokenizer *vocab_of(const char *const *toks, int n)
{
    char path[64];
    strcpy(path, "/tmp/slm_chat_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    slm_gguf_writer *w;
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(slm_gguf_put_str(w, "tokenizer.ggml.model", "llama", 5), SLM_OK);
    assert_int_equal(slm_gguf_put_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (uint64_t)n),
                     SLM_OK);
    assert_int_equal(slm_gguf_writer_write(w, path, NULL, NULL, NULL, NULL), SLM_OK);
    slm_gguf_writer_free(w);
    slm_gguf *g;
    slm_tokenizer *t;
    assert_int_equal(slm_gguf_open(path, &g), SLM_OK);
    unlink(path);
    assert_int_equal(slm_tokenizer_load(g, &t), SLM_OK);
    slm_gguf_close(g);
    return t;
}

/* No tokenizer.chat_template: the turn tokens of the vocabulary choose
 * (both of a family's pair must be there), else plain. */
static void test_from_vocab(void **state)
{
    (void)state;
    static const char *const gemma[] = {"<pad>", "<eos>", "<bos>", "<start_of_turn>",
                                        "<end_of_turn>", "a"};
    static const char *const exaone[] = {"[PAD]", "[BOS]", "[|endofturn|]", "[|assistant|]", "a"};
    static const char *const chatml[] = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"};
    static const char *const half[] = {"<unk>", "<s>", "</s>", "[INST]", "<start_of_turn>"};
    static const char *const base[] = {"<unk>", "<s>", "</s>", "a", "b"};
    static const struct {
        const char *const *toks;
        int n;
        slm_chat_format f;
        const char *note;
    } cases[] = {
        {gemma, 6, SLM_CHAT_GEMMA, "<start_of_turn>"},
        {exaone, 5, SLM_CHAT_EXAONE, "[|assistant|]"},
        {chatml, 5, SLM_CHAT_CHATML, "<|im_start|>"},
        {half, 5, SLM_CHAT_PLAIN, "base model"},
        {base, 5, SLM_CHAT_PLAIN, "base model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        slm_tokenizer *t = vocab_of(cases[i].toks, cases[i].n);
        slm_chat_template ct;
        const char *note = slm_chat_from_vocab(t, &ct);
        assert_int_equal(ct.format, cases[i].f);
        assert_null(ct.default_system);
        assert_non_null(strstr(note, cases[i].note));
        slm_tokenizer_free(t);
    }
    slm_chat_template ct;
    assert_non_null(slm_chat_from_vocab(NULL, &ct));
    assert_int_equal(ct.format, SLM_CHAT_PLAIN);
}

static void test_detect(void **state)
{
    (void)state;
    static const struct {
        const char *tmpl;
        slm_chat_format f;
    } cases[] = {
        {"{% for m in messages %}<|im_start|>{{m.role}}...", SLM_CHAT_CHATML},
        {"{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>' }}", SLM_CHAT_LLAMA3},
        {"{{ bos_token + '[INST] ' + content + ' [/INST]' }}", SLM_CHAT_LLAMA2},
        {"{{'<|user|>' + '\n' + m + '<|end|>'}}{{'<|assistant|>'}}", SLM_CHAT_PHI3},
        {"{{ '<start_of_turn>' + role }}", SLM_CHAT_GEMMA},
        /* EXAONE-3.5-2.4B-Instruct's template text */
        {"{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
         "{{ '[|system|][|endofturn|]\\n' }}{% endif %}{{ '[|' + message['role'] + '|]' + "
         "message['content'] }}{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}"
         "{{ '[|endofturn|]\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
         "{{ '[|assistant|]' }}{% endif %}",
         SLM_CHAT_EXAONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        slm_chat_template t;
        assert_true(slm_chat_detect(cases[i].tmpl, strlen(cases[i].tmpl), &t));
        assert_int_equal(t.format, cases[i].f);
    }
    slm_chat_template t;
    assert_false(slm_chat_detect("{{ messages }}", 14, &t));
    assert_int_equal(t.format, SLM_CHAT_CHATML);
}

/* SmolLM2's template adds its own system message when there is none. */
static void test_default_system(void **state)
{
    (void)state;
    const char *tmpl = "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are "
                       "a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
                       "}}{% endif %}";
    slm_chat_template t;
    assert_true(slm_chat_detect(tmpl, strlen(tmpl), &t));
    char *s;
    slm_chat_msg one = {"user", "Hi"};
    assert_int_equal(slm_chat_render(&t, &one, 1, true, &s), SLM_OK);
    assert_string_equal(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                           "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(s);
    assert_int_equal(slm_chat_render(&t, conv, 2, false, &s), SLM_OK);
    assert_string_equal(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                           "Hi!<|im_end|>\n");
    free(s);
}

static void test_errors(void **state)
{
    (void)state;
    slm_chat_template t;
    assert_int_equal(slm_chat_from_name("jinja", &t), SLM_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(slm_last_error(), "'jinja'"));
    assert_int_equal(slm_chat_from_name("mistral", &t), SLM_OK);
    assert_int_equal(t.format, SLM_CHAT_LLAMA2);
    assert_int_equal(slm_chat_from_name("exaone", &t), SLM_OK);
    assert_int_equal(t.format, SLM_CHAT_EXAONE);
    assert_int_equal(slm_chat_from_name("plain", &t), SLM_OK);
    assert_int_equal(t.format, SLM_CHAT_PLAIN);
    slm_chat_msg bad = {"robot", "x"};
    char *s = (char *)&t;
    assert_int_equal(slm_chat_render(&t, &bad, 1, true, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_null(s);
    assert_non_null(strstr(slm_last_error(), "robot"));
}

/* Whether [p, p + n) is s, or s with its ends trimmed as the families do. */
static bool is_content(const char *p, size_t n, const char *s)
{
    const char *e = s + strlen(s);
    if ((size_t)(e - s) == n && !memcmp(p, s, n))
        return true;
    while (s < e && strchr(" \n\t\r", *s))
        s++;
    while (e > s && strchr(" \n\t\r", e[-1]))
        e--;
    return (size_t)(e - s) == n && !memcmp(p, s, n);
}

static void test_content_spans(void **state)
{
    (void)state;
    const slm_chat_msg msgs[] = {{"system", " Be <|im_start|> brief. "},
                                 {"user", "Hi [INST] <start_of_turn>!\n"},
                                 {"assistant", "Hello."},
                                 {"user", "2+2?"}};
    for (int f = 0; f < SLM_CHAT_FORMAT_COUNT; f++) {
        slm_chat_template t = {(slm_chat_format)f, f == SLM_CHAT_CHATML ? "Default." : NULL};
        char *text, *plain;
        slm_tok_range *sp;
        size_t n;
        assert_int_equal(slm_chat_render_spans(&t, msgs, 4, true, &text, &sp, &n), SLM_OK);
        assert_int_equal(slm_chat_render(&t, msgs, 4, true, &plain), SLM_OK);
        assert_string_equal(text, plain); /* spans change nothing of the text */
        assert_int_equal(n, 4); /* each message once (Gemma folds the system text in) */
        size_t last = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(sp[i].begin >= last && sp[i].end > sp[i].begin &&
                        sp[i].end <= strlen(text));
            last = sp[i].end;
            bool found = false;
            for (int k = 0; k < 4 && !found; k++)
                found = is_content(text + sp[i].begin, sp[i].end - sp[i].begin,
                                   msgs[k].content);
            if (!found)
                fail_msg("%s: span %zu '%.*s' is no message's content",
                         slm_chat_format_name((slm_chat_format)f), i,
                         (int)(sp[i].end - sp[i].begin), text + sp[i].begin);
        }
        free(text), free(plain), free(sp);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),      cmocka_unit_test(test_exaone),
        cmocka_unit_test(test_gemma_system), cmocka_unit_test(test_detect),
        cmocka_unit_test(test_from_vocab),   cmocka_unit_test(test_default_system),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_content_spans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
