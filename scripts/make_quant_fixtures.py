#!/usr/bin/env python3
"""make_quant_fixtures.py — known-answer blocks for tests/test_quant.c.

For each of the 15 tensor types slm supports this writes
tests/fixtures/quant/<type>.bin holding
  - a random input row of a few blocks (fixed seed; blocks at very different
    magnitudes, one all-zero block, and for F16/BF16 crafted rounding cases),
  - the bytes gguf.quants.quantize makes of it where gguf-py can quantize the
    type, otherwise random-but-valid blocks (random bytes with finite f16
    scale fields),
  - the values gguf.quants.dequantize gives for those bytes.
The C test decodes the bytes with slm_dequantize_row and must reproduce the
values bit for bit; where gguf-py quantized, it also compares our reference
quantizer's bytes. CI only reads the outputs; rerun this after changing it.

File layout (little-endian):
  8 bytes  magic "SLMQFIX1"
  u32      GGML type id
  u32      n, elements in the row
  u32      flags: bit 0 = bytes come from gguf.quants.quantize(src)
  u32      nbytes, bytes of the quantized row
  f32[n]   src
  u8[nbytes] quantized bytes
  f32[n]   gguf.quants.dequantize(bytes)

Requirements (pinned): gguf==0.17.1 numpy==2.4.6
Usage: python3 scripts/make_quant_fixtures.py   (from the repository root)
"""
import importlib.metadata
import os
import struct
import sys

REQUIREMENTS = {"gguf": "0.17.1", "numpy": "2.4.6"}


def check_versions():
    bad = []
    for pkg, want in REQUIREMENTS.items():
        try:
            have = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != want:
            bad.append(f"{pkg}=={want} (found {have or 'nothing'})")
    if bad:
        sys.exit("make_quant_fixtures.py needs " + ", ".join(bad) +
                 "; install with: pip install " + " ".join(f"{k}=={v}" for k, v in REQUIREMENTS.items()))


check_versions()

import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGML_QUANT_SIZES  # noqa: E402
from gguf import quants  # noqa: E402

OUT_DIR = os.path.join("tests", "fixtures", "quant")
SEED = 20240611

# type -> (file name, blocks in the row, offsets of f16 scale fields in a block)
TYPES = {
    T.F32: ("f32", 64, []),
    T.F16: ("f16", 64, []),
    T.BF16: ("bf16", 64, []),
    T.Q4_0: ("q4_0", 8, [0]),
    T.Q4_1: ("q4_1", 8, [0, 2]),
    T.Q5_0: ("q5_0", 8, [0]),
    T.Q5_1: ("q5_1", 8, [0, 2]),
    T.Q8_0: ("q8_0", 8, [0]),
    T.Q2_K: ("q2_k", 4, [80, 82]),
    T.Q3_K: ("q3_k", 4, [108]),
    T.Q4_K: ("q4_k", 4, [0, 2]),
    T.Q5_K: ("q5_k", 4, [0, 2]),
    T.Q6_K: ("q6_k", 4, [208]),
    T.IQ4_NL: ("iq4_nl", 8, [0]),
    T.IQ4_XS: ("iq4_xs", 4, [0]),
}

# Values where f32 -> f16 / bf16 rounding is delicate: exact ties (to even
# either way), the largest finite f16, the overflow threshold, subnormals and
# the tie at half the smallest subnormal.
CRAFTED = [1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 65504.0, 65519.99, 65520.0, -70000.0,
           2.0**-24, 2.0**-25, 3 * 2.0**-25, 2.0**-14 - 2.0**-25, 1e-7, -0.0,
           1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.3895314e38, 1.17549435e-38]


def make_src(rng, qtype, nblocks):
    block, _ = GGML_QUANT_SIZES[qtype]
    x = rng.standard_normal((nblocks, block)).astype(np.float32)
    mags = np.array([1.0, 1e-3, 40.0, 0.0, 3.0, 1e-5, 0.25, 7.0], dtype=np.float32)
    if block > 1:
        x *= mags[np.arange(nblocks) % len(mags)].reshape(-1, 1)
    x = x.reshape(-1)
    if qtype in (T.F16, T.BF16):
        x[: len(CRAFTED)] = np.array(CRAFTED, dtype=np.float32)
    return x


def random_blocks(rng, qtype, nblocks, scale_offsets):
    _, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for off in scale_offsets:
        mag = rng.uniform(1e-3, 0.5, size=nblocks) * rng.choice([-1.0, 1.0], size=nblocks)
        raw[:, off:off + 2] = mag.astype(np.float16).view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(-1)


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for qtype, (name, nblocks, scale_offsets) in TYPES.items():
        src = make_src(rng, qtype, nblocks)
        try:
            with np.errstate(over="ignore"):  # the crafted F16 overflow cases
                qbytes = np.ascontiguousarray(quants.quantize(src, qtype)).view(np.uint8).reshape(-1)
            flags = 1
        except NotImplementedError:
            qbytes = random_blocks(rng, qtype, nblocks, scale_offsets)
            flags = 0
        deq = np.asarray(quants.dequantize(qbytes, qtype), dtype=np.float32).reshape(-1)
        assert deq.size == src.size, (name, deq.size, src.size)
        path = os.path.join(OUT_DIR, name + ".bin")
        with open(path, "wb") as f:
            f.write(b"SLMQFIX1")
            f.write(struct.pack("<4I", int(qtype), src.size, flags, qbytes.size))
            f.write(src.astype("<f4").tobytes())
            f.write(qbytes.tobytes())
            f.write(deq.astype("<f4").tobytes())
        total += os.path.getsize(path)
        print(f"{path}: {src.size} elements, {qbytes.size} bytes, "
              f"{'gguf-py quantized' if flags else 'random blocks'}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
