"""tokenizer_strings.py — the test strings every tokenizer fixture script
encodes (make_tokenizer_fixtures.py, make_gemma_tokenizer_fixtures.py): English,
code, whitespace runs, numbers, emoji, CJK and other scripts, mixed text,
contractions, special-token texts, and seeded random mixtures. Standard library
only, so a script that needs no pinned packages can import it.
"""
import random

# --- test strings -------------------------------------------------------------

ENGLISH = [
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "The capital of France is Paris.", "Once upon a time, in a small village by the sea,",
    "In machine learning, overfitting means the model memorizes noise.",
    "She sells seashells by the seashore.", "A B C D E F G", "lowercase UPPERCASE MiXeD",
    "e.g. i.e. etc. Mr. Smith & Mrs. Jones", "\"Quoted text\" and 'single quotes'",
    "Hyphen-ated words, semi;colons: and (parentheses) [brackets] {braces}",
    "Email me at someone@example.com or visit https://example.org/path?q=1&r=2#frag",
    "What is the tallest mountain in the world?", "Write a haiku about autumn leaves.",
    "Explain in one sentence why the sky is blue.", "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "...!!!???", "--- *** ___ ~~~ ^^^", "a", "I", " ", "", "x" * 300,
    "The end.", "THE END", "tHe EnD", "Ellipsis… and em—dash and en–dash",
    "«Guillemets» and „low quotes“ and ‘curly’ “double”",
    # odd-length runs: equal-rank pairs overlap, so the leftmost-first rule shows
    "aaa", "xxxxxxx", "lllll", "sssss", "eeeee", "ttttt", "ooooooooo", "=====", "*****",
    "-----", "!!!", "mmm hmm", "zzz zzz zzz", "hahahah", "0000000", "ааааа", "뭐뭐뭐",
]
CODE = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    return n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (size_t i = 0; i < n; i++) { y[i] += a * x[i]; }",
    "x = [1, 2, 3]\nprint(sum(x) / len(x))",
    "if (a != b && c >= d || !e) { return -1; }",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "const f = async (x) => { await g(x); };",
    "<div class=\"main\"><p>Hello</p></div>",
    "{\"key\": \"value\", \"n\": 12.5e-3, \"ok\": true, \"list\": [null]}",
    "    indented\n        more\n\tTabbed\n",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "$ ls -la | grep '^d' > out.txt 2>&1",
    "a+=b; c-=d; e*=f; g/=h; i%=j; k<<=1; l>>=2;",
    "// comment\n/* block */\n# hash\n-- dash",
    "λx. x + 1  // lambda",
    "matrix[i][j] = matrix[j][i] ** 2",
    "std::vector<std::string> v{\"a\", \"b\"};",
    "0x1F 0b1010 0o777 1e10 3.14159 -2.5E-3",
    "@decorator\nclass Foo(Bar):\n    pass\n",
]
WS = [
    "  two leading", "trailing two  ", "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb",
    "a\r\nb", "\n", "\n\n\n", "\t", "   ", "\t \n", " \n \n ", "word \n word",
    "end with newline\n", "\n\nstart with newlines", "mixed \t\n\r\n spaces", "a \t b",
    "                 many spaces", "x" + " " * 40 + "y", "tabs\t\t\t\tand\tmore",
    "line1\nline2\n\nline4\n\n\n", "\u00a0nbsp\u00a0here", "ideographic\u3000space",
    "thin\u2009space", "NEL\u0085char", "line\u2028separator", "para\u2029separator",
    "vertical\x0btab\x0cform", " leading single", "a " * 20,
]
NUMBERS = [
    "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-42",
    "2024-01-15", "10:30pm", "$19.99", "50%", "1st 2nd 3rd 4th", "007", "1 2 3 4 5",
    "1, 2, 3, 4, 5,", "phone: +1 (555) 123-4567", "x1y2z3", "٣٤٥ Arabic-Indic digits",
    "①②③ circled", "Ⅻ roman numeral", "½ ¾ fractions", "१२३ Devanagari digits",
]
EMOJI = [
    "😀", "I love it! 😍😍😍", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🇫🇷🇩🇪 flags", "❤️ heart",
    "🤖 robots and 🚀 rockets", "emoji😀inside", "☕ coffee ☀ sun", "🙂🙃😉😊",
    "a🎉b🎉c", "🧑‍💻 coder", "🏳️‍🌈", "🔥" * 10, "🐍 Python",
]
CJK = [
    "안녕하세요", "안녕하세요, 세계!", "저는 학생입니다.", "한국어 토큰화 테스트입니다",
    "你好", "你好，世界！", "我喜欢学习中文。", "机器学习是人工智能的一个分支。",
    "こんにちは世界", "日本語のテキストです。", "カタカナとひらがな", "東京は日本の首都です",
    "Привет, мир!", "Съешь же ещё этих мягких французских булок", "Γειά σου Κόσμε",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
    "Ελληνικά και English", "Türkçe karakterler: ğüşıöç", "Zażółć gęślą jaźń",
    "Ünïcödé àccénts", "ß ẞ æ œ ø å",
]
MIXED = [
    "Hello 안녕 你好 こんにちは", "English中文混合text", "Le café coûte 3€ 😀",
    "Русский and English and 中文", "코드: print('안녕') # 인사", "数字123和字母abc",
    "mixed😀한국어🎉中文", "Tokyo東京Seoul서울Beijing北京", "αβγ abc 123 !@#",
    "na\u0308ive (combining diaeresis)", "e\u0301 vs \u00e9", "zero\u200bwidth\u200bspace",
    "right\u200fto\u200eleft marks", "soft\u00adhyphen", "tab\tКорея\t한국",
]
CONTRACTIONS = [
    "don't", "I'm", "you're", "we've", "they'll", "she'd", "it's", "DON'T", "I'M", "YOU'RE",
    "WE'VE", "THEY'LL", "SHE'D", "IT'S", "can't won't shouldn't", "y'all'd've",
    "rock 'n' roll", "'s 't 're", "O'Brien's", "the '90s",
]
SPECIAL = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "text<|endoftext|>more", "<|im_end|><|im_end|>", "<|im_start|", "|im_end|>",
    "< |im_start|>", "<|im_start|><|im_start|>x", "a<repo_name>b<file_sep>c",
    "<filename>main.py\n<gh_stars>10", "<jupyter_code>print(1)<jupyter_output>1",
    "<empty_output>", "<<|im_start|>>", "<|IM_START|>", "<s> </s> <unk>", "<tool>call</tool>",
    "[INST] hello [/INST]", "<|im_start|>user\n안녕 😀<|im_end|>", " <|im_end|> ",
]


def random_strings(rng, n):
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
        " \t\n", " ", "   ", ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "안녕하세요세계한국어",
        "你好世界中文字符", "こんにちはカタカナ", "😀😍🎉🚀👍🏽", "éèêëàâäôöûüç", "Привет",
        "'s'll've're'd'm't",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(k))
        out.append(s)
    return out


def all_strings():
    rng = random.Random(1234)
    fixed = ENGLISH + CODE + WS + NUMBERS + EMOJI + CJK + MIXED + CONTRACTIONS + SPECIAL
    return fixed + random_strings(rng, 80)
