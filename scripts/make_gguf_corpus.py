#!/usr/bin/env python3
"""make_gguf_corpus.py — writes the GGUF reader's test fixtures.

tests/fixtures/gguf/good/NAME.gguf   valid files (v3 with every value type, v2,
                                     general.alignment=64, an empty file, edge
                                     cases, and one written by gguf-py's
                                     GGUFWriter to prove compatibility)
tests/fixtures/gguf/good/NAME.txt    what each good file holds, read back with
                                     gguf-py's GGUFReader (an implementation
                                     independent of ours) after checking it
                                     agrees with what this script meant to write
tests/fixtures/gguf/bad/NAME.gguf    malformed files, one distinct defect each
tests/fixtures/gguf/bad/expected.txt NAME STATUS message-substring

Our own files are written byte by byte with struct (little-endian), so a
defect can be placed exactly; only gguf_py.gguf comes from GGUFWriter.
tests/test_gguf.c reads these outputs; CI never runs this script.

Manifest format (one record per line, space separated):
  file VERSION ALIGNMENT DATA_START FILE_SIZE N_KV N_TENSORS
  kv KEY TYPE VALUE             scalar: integers in decimal, floats as
                                float.hex(), bools 0/1, strings as x+hex bytes
  arr KEY ELEM_TYPE COUNT V...  the elements, encoded as for scalars
  tensor NAME TYPE N_DIMS NE0 NE1 NE2 NE3 OFFSET NBYTES FNV1A64-OF-DATA

Pinned PyPI packages: gguf==0.17.1, numpy (any 1.x/2.x).
Run: python3 scripts/make_gguf_corpus.py   (from anywhere)
"""
import os
import struct
import sys

REQUIREMENTS = ["gguf==0.17.1"]


def check_requirements():
    from importlib.metadata import version, PackageNotFoundError
    for req in REQUIREMENTS:
        name, want = req.split("==")
        try:
            have = version(name)
        except PackageNotFoundError:
            sys.exit(f"make_gguf_corpus: needs {req} (pip install {req})")
        if have != want:
            sys.exit(f"make_gguf_corpus: needs {req}, found {name}=={have}")


check_requirements()
import numpy as np  # noqa: E402
import gguf  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")

# Value type ids (gguf-facts §1.3).
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
              F32: "<f", BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
TYPE_NAME = {U8: "uint8", I8: "int8", U16: "uint16", I16: "int16", U32: "uint32",
             I32: "int32", F32: "float32", BOOL: "bool", STR: "string", ARR: "array",
             U64: "uint64", I64: "int64", F64: "float64"}

# GGML tensor types used here: id -> (block elements, bytes per block).
GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34), 12: (256, 144),
        14: (256, 210), 16: (256, 66), 28: (1, 8), 30: (1, 2)}
F32_T, F16_T, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, IQ2_XXS, F64_T, BF16 = 0, 1, 2, 3, 8, 12, 14, 16, 28, 30


# --- byte-level writer --------------------------------------------------------

def gstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<Q", len(b)) + b


def value_bytes(vtype, value):
    if vtype == STR:
        return gstr(value)
    if vtype == ARR:
        et, items = value
        out = struct.pack("<IQ", et, len(items))
        for it in items:
            out += value_bytes(et, it)
        return out
    return struct.pack(SCALAR_FMT[vtype], value)


def kv_bytes(key, vtype, value):
    return gstr(key) + struct.pack("<I", vtype) + value_bytes(vtype, value)


def nbytes_of(ttype, dims):
    be, bb = GGML[ttype]
    n = 1
    for d in dims:
        n *= d
    assert dims[0] % be == 0
    return n // be * bb


def pattern(seed, n):
    """Deterministic tensor bytes, different per tensor."""
    return bytes((seed * 131 + i * 7 + (i >> 8)) & 0xFF for i in range(n))


def align_up(x, a):
    return (x + a - 1) // a * a


def build(kvs, tensors, version=3, alignment=32, pad_last=True):
    """A valid file: kvs = [(key, type, value)], tensors = [(name, dims, type)].
    Tensors are laid out contiguously, each padded to the alignment. Returns
    (bytes, layout) where layout lists (name, dims, type, offset, nbytes, data)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += kv_bytes(k, t, v)
    layout, off = [], 0
    for i, (name, dims, ttype) in enumerate(tensors):
        nb = nbytes_of(ttype, dims)
        layout.append((name, dims, ttype, off, nb, pattern(i + 1, nb)))
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, off)
        off = align_up(off + nb, alignment)
    out += b"\0" * (align_up(len(out), alignment) - len(out))
    for j, (_, _, _, o, nb, data) in enumerate(layout):
        out += data
        if pad_last or j + 1 < len(layout):
            out += b"\0" * (align_up(len(out), alignment) - len(out))
    return out, layout


# --- manifests (from gguf-py's reader) -----------------------------------------

def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def enc(vtype, part):
    """One value from a GGUFReader part (numpy array) as manifest text."""
    if vtype == STR:
        return "x" + bytes(part).hex()
    v = part[0]
    if vtype in (F32, F64):
        return float(v).hex()
    if vtype == BOOL:
        return "1" if int(v) else "0"
    return str(int(v))


def decode_str(token):
    return bytes.fromhex(token[1:])


def manifest(path):
    r = gguf.GGUFReader(path)
    fields = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    align = r.alignment
    lines = [f"file {int(r.fields['GGUF.version'].parts[-1][0])} {align} {r.data_offset} "
             f"{os.path.getsize(path)} {len(fields)} {len(r.tensors)}"]
    for f in fields:
        assert " " not in f.name and f.name
        t = int(f.types[0])
        if t == ARR:
            et = int(f.types[1]) if len(f.types) > 1 else int(f.parts[-2][0])
            items = [enc(et, f.parts[i]) for i in f.data]
            lines.append(" ".join(["arr", f.name, TYPE_NAME[et], str(len(items))] + items))
        else:
            lines.append(f"kv {f.name} {TYPE_NAME[t]} {enc(t, f.parts[f.data[0]])}")
    for t in r.tensors:
        dims = [int(d) for d in t.shape] + [1] * (4 - len(t.shape))
        data = bytes(np.asarray(t.data).view(np.uint8).reshape(-1)) if t.n_bytes else b""
        assert len(data) == t.n_bytes
        lines.append(f"tensor {t.name} {int(t.tensor_type)} {len(t.shape)} "
                     + " ".join(map(str, dims))
                     + f" {t.data_offset - r.data_offset} {t.n_bytes} {fnv1a64(data):016x}")
    return lines, r


def intended_value(vtype, value):
    """Manifest text of what we meant to write, to compare with the reader's."""
    if vtype == STR:
        return "x" + (value.encode() if isinstance(value, str) else value).hex()
    if vtype == F32:
        return float(np.float32(value)).hex()
    if vtype == F64:
        return float(value).hex()
    if vtype == BOOL:
        return "1" if value else "0"
    return str(int(value))


def check_intent(lines, kvs, layout):
    """Asserts the reader saw exactly the kvs and tensors we wrote."""
    want = []
    for k, t, v in kvs:
        if t == ARR:
            et, items = v
            want.append(" ".join(["arr", k, TYPE_NAME[et], str(len(items))]
                                 + [intended_value(et, it) for it in items]))
        else:
            want.append(f"kv {k} {TYPE_NAME[t]} {intended_value(t, v)}")
    for name, dims, ttype, off, nb, data in layout:
        d4 = list(dims) + [1] * (4 - len(dims))
        want.append(f"tensor {name} {ttype} {len(dims)} " + " ".join(map(str, d4))
                    + f" {off} {nb} {fnv1a64(data):016x}")
    got = lines[1:]
    assert got == want, "\n".join(f"got  {g}\nwant {w}" for g, w in zip(got, want) if g != w)


def write_good(name, data, kvs=None, layout=None):
    path = os.path.join(OUT, "good", name + ".gguf")
    with open(path, "wb") as f:
        f.write(data)
    lines, _ = manifest(path)
    if kvs is not None:
        check_intent(lines, kvs, layout)
    with open(os.path.join(OUT, "good", name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# --- the valid files ------------------------------------------------------------

ALL_SCALARS = [
    ("test.u8", U8, 200), ("test.i8", I8, -100), ("test.u16", U16, 65000),
    ("test.i16", I16, -32000), ("test.u32", U32, 4000000000), ("test.i32", I32, -2000000000),
    ("test.f32", F32, 3.25), ("test.bool_true", BOOL, True), ("test.bool_false", BOOL, False),
    ("test.str", STR, "héllo, wörld"), ("test.str_empty", STR, ""),
    ("test.u64", U64, 18000000000000000000), ("test.i64", I64, -9000000000000000000),
    ("test.f64", F64, -2.718281828459045),
]
ALL_ARRAYS = [
    ("test.arr_u8", ARR, (U8, [0, 1, 255])), ("test.arr_i8", ARR, (I8, [-128, 0, 127])),
    ("test.arr_u16", ARR, (U16, [1, 65535])), ("test.arr_i16", ARR, (I16, [-32768, 5])),
    ("test.arr_u32", ARR, (U32, [7, 4294967295, 0])), ("test.arr_i32", ARR, (I32, [-1, 2, -3, 4])),
    ("test.arr_f32", ARR, (F32, [0.5, -1.75, 1e-5])), ("test.arr_bool", ARR, (BOOL, [True, False, True])),
    ("test.arr_str", ARR, (STR, ["<|endoftext|>", "", "Ġhello", "▁wörld", "a b"])),
    ("test.arr_u64", ARR, (U64, [0, 18446744073709551615])),
    ("test.arr_i64", ARR, (I64, [-9223372036854775808, 9223372036854775807])),
    ("test.arr_f64", ARR, (F64, [1e300, -0.0])), ("test.arr_empty", ARR, (U32, [])),
    ("test.per_layer", ARR, (U32, [9, 9, 3])),
]


def good_files():
    kvs = [("general.architecture", STR, "llama"), ("general.name", STR, "corpus v3")] \
        + ALL_SCALARS + ALL_ARRAYS
    tensors = [("token_embd.weight", [64, 3], Q8_0), ("norm.weight", [5], F32_T),
               ("f16.weight", [7, 3], F16_T), ("q4_0.weight", [96, 2], Q4_0),
               ("q4_k.weight", [256, 2], Q4_K), ("iq2_xxs.weight", [256], IQ2_XXS),
               ("bf16.4d", [3, 2, 2, 2], BF16), ("q6_k.weight", [512, 1], Q6_K)]
    data, layout = build(kvs, tensors)
    write_good("v3_all_types", data, kvs, layout)

    kvs = [("general.architecture", STR, "llama"), ("llama.block_count", U64, 2),
           ("tokenizer.ggml.tokens", ARR, (STR, ["a", "bc", "def"]))]
    tensors = [("a", [32, 2], Q4_1), ("b", [3], F32_T)]
    data, layout = build(kvs, tensors, version=2)
    write_good("v2", data, kvs, layout)

    kvs = [("general.alignment", U32, 64), ("general.architecture", STR, "llama")]
    tensors = [("x", [10], F32_T), ("y", [32, 3], Q8_0), ("z", [3], F16_T)]
    data, layout = build(kvs, tensors, alignment=64)
    write_good("align64", data, kvs, layout)

    # Edge cases: no padding after the last tensor, a zero-size tensor, F64.
    kvs = [("general.architecture", STR, "edge")]
    tensors = [("empty", [0, 4], F32_T), ("f64", [3], F64_T), ("last", [5], F32_T)]
    data, layout = build(kvs, tensors, pad_last=False)
    write_good("edge", data, kvs, layout)

    data, layout = build([], [])
    write_good("empty", data, [], layout)

    write_good("gguf_py", gguf_py_file())


def gguf_py_file():
    """A file written by gguf-py's GGUFWriter (the writer llama.cpp's
    converters use), returned as bytes."""
    tmp = os.path.join(OUT, "good", "gguf_py.tmp")
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_head_count([4, 2])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_bool("test.flag", True)
    w.add_int8("test.i8", -5)
    w.add_uint64("test.u64", 1 << 40)
    w.add_float64("test.f64", 0.125)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<|endoftext|>", "Ġthe", "ĊĊ", "é"])
    w.add_token_types([3, 1, 1, 1])
    w.add_token_scores([0.0, -1.5, -2.0, -3.25])
    w.add_string("test.empty", "")
    rng = np.random.default_rng(7)
    w.add_tensor("token_embd.weight", rng.standard_normal((4, 64)).astype(np.float32))
    w.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(64).astype(np.float16))
    q8 = rng.integers(0, 256, size=(2, 34 * 2), dtype=np.uint8)  # 2 rows of 64 as Q8_0
    w.add_tensor("blk.0.attn_q.weight", q8,
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(tmp, "rb") as f:
        data = f.read()
    os.remove(tmp)
    return data


# --- the malformed files ---------------------------------------------------------

def hdr(version=3, nt=0, nkv=0, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, nt, nkv)


def tinfo(name, dims, ttype, offset, n_dims=None):
    n_dims = len(dims) if n_dims is None else n_dims
    return gstr(name) + struct.pack("<I", n_dims) \
        + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, offset)


def with_tensors(infos, kvs=(), data_len=256, alignment=32):
    """Header + kvs + the given raw tensor infos + padding + data_len bytes."""
    out = hdr(nt=len(infos), nkv=len(kvs))
    for k, t, v in kvs:
        out += kv_bytes(k, t, v)
    out += b"".join(infos)
    out += b"\0" * (align_up(len(out), alignment) - len(out))
    return out + pattern(9, data_len)


def bad_files():
    """NAME -> (bytes, STATUS, message substring). Each has one defect."""
    good, _ = build([("general.name", STR, "x")], [("t", [32], F32_T)])
    name_kv = kv_bytes("general.name", STR, "x")
    B = {}
    B["bad_magic"] = (b"GGUX" + good[4:], "BAD_FORMAT", "bad magic 47 47 55 58")
    B["version_0"] = (hdr(version=0), "BAD_FORMAT", "version 0 is not supported")
    B["version_1"] = (hdr(version=1), "UNSUPPORTED", "version 1 is not supported")
    B["version_4"] = (hdr(version=4), "UNSUPPORTED", "version 4 is not supported")
    be = b"GGUF" + struct.pack(">IQQ", 3, 0, 1) + struct.pack(">Q", 1) + b"k" \
        + struct.pack(">I", U32) + struct.pack(">I", 1)
    B["big_endian"] = (be, "UNSUPPORTED", "big-endian GGUF files are not supported")
    B["empty_file"] = (b"", "BAD_FORMAT", "file is 0 bytes, shorter than the 24-byte")
    B["truncated_header"] = (good[:20], "BAD_FORMAT", "file is 20 bytes, shorter than the 24-byte")
    B["kv_count_absurd"] = (hdr(nkv=1 << 60) + name_kv, "BAD_FORMAT",
                            "kv count 1152921504606846976 is impossible in a file of")
    B["tensor_count_absurd"] = (hdr(nt=0xFFFFFFFFFFFFFFFF) + b"\0" * 64, "BAD_FORMAT",
                                "tensor count 18446744073709551615 is impossible")
    end = 24 + len(name_kv)
    B["kv_truncated"] = (hdr(nkv=2) + name_kv, "BAD_FORMAT",
                         f"kv 1: key needs 8 bytes at offset {end} but the file ends at {end}")
    B["key_length_past_eof"] = (hdr(nkv=1) + struct.pack("<Q", 1000) + b"general.name" + b"\0" * 12,
                                "BAD_FORMAT", "kv 0: key length 1000 at offset 24 runs past the end")
    B["string_value_past_eof"] = (hdr(nkv=1) + gstr("general.name") + struct.pack("<IQ", STR, 1 << 40)
                                  + b"abc", "BAD_FORMAT",
                                  "kv 0 'general.name': string value length 1099511627776")
    B["scalar_value_truncated"] = (hdr(nkv=1) + gstr("a.b") + struct.pack("<I", U64) + b"\1\2\3",
                                   "BAD_FORMAT", "kv 0 'a.b': value needs 8 bytes")
    B["key_empty"] = (hdr(nkv=1) + gstr("") + struct.pack("<II", U32, 5), "BAD_FORMAT",
                      "kv 0: empty key")
    B["key_nul"] = (hdr(nkv=1) + gstr(b"gen\0ral") + struct.pack("<II", U32, 5), "BAD_FORMAT",
                    "kv 0 'gen?ral': key contains a NUL byte")
    B["duplicate_key"] = (hdr(nkv=3) + name_kv + kv_bytes("a", U8, 1) + kv_bytes("general.name", STR, "y"),
                          "BAD_FORMAT", "duplicate key 'general.name' (kv 0 and kv 2)")
    B["value_type_13"] = (hdr(nkv=1) + gstr("a.b") + struct.pack("<II", 13, 0), "BAD_FORMAT",
                          "kv 0 'a.b': value type 13 is not a GGUF type")
    B["array_elem_type_13"] = (hdr(nkv=1) + gstr("a.b") + struct.pack("<IIQ", ARR, 13, 1) + b"\0" * 8,
                               "BAD_FORMAT", "array element type 13 is not a GGUF type")
    B["nested_array"] = (hdr(nkv=1) + gstr("a.b") + struct.pack("<IIQ", ARR, ARR, 1)
                         + struct.pack("<IQ", U8, 1) + b"\1", "BAD_FORMAT",
                         "kv 0 'a.b': nested arrays are not supported")
    # count * 4 wraps to 0 in 64 bits: a reader multiplying first would accept it.
    B["array_count_overflow"] = (hdr(nkv=1) + gstr("a.b") + struct.pack("<IIQ", ARR, U32, 1 << 62)
                                 + b"\0" * 16, "BAD_FORMAT", "array of 4611686018427387904 uint32")
    B["string_array_truncated"] = (hdr(nkv=1) + gstr("tokenizer.ggml.tokens")
                                   + struct.pack("<IIQ", ARR, STR, 3) + gstr("a")
                                   + struct.pack("<Q", 500) + b"bcd" + b"\0" * 8, "BAD_FORMAT",
                                   "array string length 500")
    B["alignment_not_u32"] = (hdr(nkv=1) + kv_bytes("general.alignment", I32, 32), "BAD_FORMAT",
                              "'general.alignment' is int32, must be uint32")
    B["alignment_zero"] = (hdr(nkv=1) + kv_bytes("general.alignment", U32, 0), "BAD_FORMAT",
                           "general.alignment 0 is not a non-zero power of two")
    B["alignment_not_pow2"] = (hdr(nkv=1) + kv_bytes("general.alignment", U32, 48), "BAD_FORMAT",
                               "general.alignment 48 is not a non-zero power of two")
    B["tensor_name_empty"] = (with_tensors([tinfo("", [32], F32_T, 0)]), "BAD_FORMAT",
                              "tensor 0: empty name")
    B["tensor_name_too_long"] = (with_tensors([tinfo("n" * 64, [32], F32_T, 0)]), "BAD_FORMAT",
                                 "name is 64 bytes, longer than 63")
    B["tensor_name_nul"] = (with_tensors([tinfo(b"a\0b", [32], F32_T, 0)]), "BAD_FORMAT",
                            "tensor 0 'a?b': name contains a NUL byte")
    B["duplicate_tensor_name"] = (with_tensors([tinfo("w", [32], F32_T, 0), tinfo("v", [8], F32_T, 128),
                                                tinfo("w", [8], F32_T, 192)], data_len=256),
                                  "BAD_FORMAT", "duplicate tensor name 'w' (tensors 0 and 2)")
    B["n_dims_0"] = (with_tensors([tinfo("t", [], F32_T, 0)]), "BAD_FORMAT",
                     "tensor 0 't': n_dims 0 is outside 1..4")
    B["n_dims_5"] = (with_tensors([tinfo("t", [32, 1, 1, 1, 1], F32_T, 0)]), "BAD_FORMAT",
                     "tensor 0 't': n_dims 5 is outside 1..4")
    B["dim_negative"] = (with_tensors([tinfo("t", [32, (1 << 64) - 5], F32_T, 0)]), "BAD_FORMAT",
                         "tensor 0 't': dimension 1 is -5 (negative)")
    B["dims_overflow"] = (with_tensors([tinfo("t", [1 << 31, 1 << 31, 4], F32_T, 0)]), "BAD_FORMAT",
                          "tensor 0 't': dimensions overflow int64 at dimension 2")
    B["nbytes_overflow"] = (with_tensors([tinfo("t", [1 << 62], F64_T, 0)]), "BAD_FORMAT",
                            "tensor 0 't': data size overflows 64 bits")
    B["tensor_info_truncated"] = (hdr(nt=1) + gstr("tensor") + struct.pack("<IQ", 2, 32) + b"\0\0",
                                  "BAD_FORMAT", "tensor 0 'tensor': dimension needs 8 bytes")
    B["type_99"] = (with_tensors([tinfo("t", [32], 99, 0)]), "BAD_FORMAT",
                    "tensor 0 't': type 99 is not a known GGML type")
    B["type_removed_4"] = (with_tensors([tinfo("t", [32], 4, 0)]), "BAD_FORMAT",
                           "tensor 0 't': type 4 is a removed GGML type")
    B["type_removed_36"] = (with_tensors([tinfo("t", [32], 36, 0)]), "BAD_FORMAT",
                            "tensor 0 't': type 36 is a removed GGML type")
    B["ne0_not_block_multiple"] = (with_tensors([tinfo("t", [33, 2], Q4_0, 0)]), "BAD_FORMAT",
                                   "ne0 = 33 is not a multiple of the q4_0 block size 32")
    B["offset_misaligned"] = (with_tensors([tinfo("t", [4], F32_T, 16)]), "BAD_FORMAT",
                              "tensor 0 't': offset 16 is not a multiple of the alignment 32")
    B["offset_misaligned_64"] = (with_tensors([tinfo("t", [4], F32_T, 32)],
                                              kvs=[("general.alignment", U32, 64)], alignment=64),
                                 "BAD_FORMAT", "offset 32 is not a multiple of the alignment 64")
    B["tensor_data_past_eof"] = (with_tensors([tinfo("blk.0.attn_q.weight", [64, 4], Q8_0, 0)],
                                              data_len=200),
                                 "BAD_FORMAT", "'blk.0.attn_q.weight': data [offset 0, 272 bytes] "
                                 "ends past the end of the file")
    # offset + data_start wraps past 2^64 back into the file.
    B["offset_wraps"] = (with_tensors([tinfo("t", [8], F32_T, (1 << 64) - 64)]), "BAD_FORMAT",
                         "data [offset 18446744073709551552, 32 bytes] ends past the end")
    B["overlapping_tensors"] = (with_tensors([tinfo("a", [32], F32_T, 0), tinfo("b", [16], F32_T, 96)],
                                             data_len=256), "BAD_FORMAT",
                                "tensors 0 'a' [offset 0, 128 bytes] and 1 'b' [offset 96] overlap")
    B["overlap_hidden_by_empty"] = (with_tensors([tinfo("big", [64], F32_T, 0), tinfo("nil", [0], F32_T, 64),
                                                  tinfo("c", [8], F32_T, 128)], data_len=320),
                                    "BAD_FORMAT", "tensors 0 'big' [offset 0, 256 bytes] and 2 'c'")
    return B


def main():
    for sub in ("good", "bad"):
        d = os.path.join(OUT, sub)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.endswith((".gguf", ".txt")):
                os.remove(os.path.join(d, f))
    good_files()
    bad = bad_files()
    lines = []
    for name, (data, status, msg) in sorted(bad.items()):
        with open(os.path.join(OUT, "bad", name + ".gguf"), "wb") as f:
            f.write(data)
        lines.append(f"{name} {status} {msg}")
    with open(os.path.join(OUT, "bad", "expected.txt"), "w") as f:
        f.write("# NAME STATUS message-substring (written by scripts/make_gguf_corpus.py)\n")
        f.write("\n".join(lines) + "\n")
    print(f"make_gguf_corpus: {len(os.listdir(os.path.join(OUT, 'good')))} good files, "
          f"{len(bad)} bad files in {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
