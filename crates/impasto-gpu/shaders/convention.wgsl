// The network's input convention (channel order, scale, mean): input[c] = rgb[src_c]·scale_c +
// offset_c for an RGB image in 0–255, and its chain rule grad_rgb[src_c] = grad_input[c]·scale_c.
// src is a permutation, so each RGB value is written once and no zeroing is needed.

struct Params {
    pixels: u32,
    backward: u32,
    src0: u32,
    src1: u32,
    src2: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    scale: vec4<f32>,
    offset: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let src_of = array<u32, 3>(p.src0, p.src1, p.src2);
    let n = p.pixels * 3u;
    for (var i = gid.x; i < n; i += nwg.x * 256u) {
        let c = i % 3u;
        let base = i - c;
        if (p.backward != 0u) {
            dst[base + src_of[c]] = src[i] * p.scale[c];
        } else {
            dst[i] = src[base + src_of[c]] * p.scale[c] + p.offset[c];
        }
    }
}
