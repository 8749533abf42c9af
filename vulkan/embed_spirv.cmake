# embed_spirv.cmake — run as `cmake -DSPV=in.spv -DOUT=out.c -DNAME=x -P`:
# writes the SPIR-V file as a 4-byte-aligned C byte array named
# slm_vk_spv_<NAME> plus its size, with a "generated — do not edit" banner.
file(READ ${SPV} hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR n_bytes "${hex_len} / 2")
if(n_bytes EQUAL 0 OR NOT n_bytes MATCHES "^[0-9]+$")
  message(FATAL_ERROR "embed_spirv: ${SPV} is empty")
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
# 16 bytes per line keeps the generated file readable in a diff.
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen)
string(REGEX REPLACE "(${sixteen})" "\\1\n    " body "${body}")
file(WRITE ${OUT}
"/* ${NAME}.spv.c — generated from vulkan/shaders/${NAME}.comp by
 * vulkan/embed_spirv.cmake — do not edit. */
#include <stddef.h>
_Alignas(4) const unsigned char slm_vk_spv_${NAME}[${n_bytes}] = {
    ${body}
};
const size_t slm_vk_spv_${NAME}_size = ${n_bytes};
")
