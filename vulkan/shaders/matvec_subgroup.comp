#version 450
// matvec_subgroup.comp — matrix-vector product for devices with subgroup
// arithmetic in compute shaders: subgroupAdd, then one shared slot per subgroup.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "matvec_body.glsl"

shared float red[64];

float reduce64(float v)
{
    v = subgroupAdd(v);
    if (subgroupElect())
        red[gl_SubgroupID] = v;
    barrier();
    float s = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++)
        s += red[i];
    return s;
}
