/*
 * test_chat.c — chat templates: each family renders the exact text of
 * ../shared/gguf-facts.md §6; templates are recognised from their markers;
 * an unknown template falls back to ChatML and says so; bad roles and
 * names are refused with a message.
 */
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "testutil.h"

static const slm_chat_msg conv[] = {
    {"system", "Be brief."},
    {"user", "Hi!"},
    {"assistant", "Hello."},
    {"user", "2+2?"},
};

static void expect(slm_chat_format f, const char *want)
{
    slm_chat_template t = {f, NULL};
    char *s;
    assert_int_equal(slm_chat_render(&t, conv, 4, true, &s), SLM_OK);
    if (strcmp(s, want)) {
        print_error("%s rendered:\n%s\nwanted:\n%s\n", slm_chat_format_name(f), s, want);
        fail();
    }
    free(s);
}

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
    slm_chat_msg bad = {"robot", "x"};
    char *s = (char *)&t;
    assert_int_equal(slm_chat_render(&t, &bad, 1, true, &s), SLM_STATUS_INVALID_ARGUMENT);
    assert_null(s);
    assert_non_null(strstr(slm_last_error(), "robot"));
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats), cmocka_unit_test(test_detect),
        cmocka_unit_test(test_default_system), cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
