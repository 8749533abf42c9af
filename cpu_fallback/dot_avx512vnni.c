/*
 * dot_avx512vnni.c — the AVX-512 kernels of dot_avx512.c with VNNI byte dot
 * products (VPDPBUSD): one instruction where AVX-512BW needs two for each
 * 64 unsigned-by-signed byte products summed by fours. Chosen at run time
 * on CPUs with AVX512_VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later).
 */
#define SLM_DOT_VNNI 1
#include "dot_avx512.c"
