// common.glsl — bindings every slm compute shader shares (included after
// #version). The backend keeps one descriptor set for the whole device:
//   binding 0: every device memory block, as an array of storage buffers
//              (block index + element offset address a tensor, both pushed as
//              push constants; the index is dynamically uniform);
//   binding 1: the host-visible step buffer: a header of int offsets, then
//              the step's token ids, positions, sequences, KV slots, block
//              tables, logit rows and a small float arena (rope frequencies).
// Views of one binding with different element types alias the same memory.
#extension GL_GOOGLE_include_directive : require

#define MAX_BLOCKS 24

layout(set = 0, binding = 0) buffer BufF { float f[]; } bf[MAX_BLOCKS];
layout(set = 0, binding = 0) buffer BufU { uint u[]; } bu[MAX_BLOCKS];
layout(set = 0, binding = 1) readonly buffer StepI { int s[]; } st;
layout(set = 0, binding = 1) readonly buffer StepF { float f[]; } stf;

// Step header slots (must match vk_internal.h).
#define ST_N_TOKENS 0
#define ST_TOKENS 1
#define ST_POS 2
#define ST_SEQ 3
#define ST_SLOT 4
#define ST_BT_START 5
#define ST_BT_LEN 6
#define ST_BT 7
#define ST_LOGIT 8
#define ST_N_LOGIT 9

int step_at(int field, int i) { return st.s[st.s[field] + i]; }

// Element i of a 1-D launch that may be split over x and y (x is capped at
// 65535 groups, the minimum every device allows).
uint flat_id(uint wg)
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * wg;
}
