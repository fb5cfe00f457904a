// 2×2, stride-2 pooling in floor mode (an odd last row or column is dropped, as in PyTorch), on
// NHWC maps without a border. One thread per output value, in a grid-stride loop.

struct Params {
    h: u32, // input height
    w: u32, // input width
    c: u32,
    max_pool: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let n = oh * ow * p.c;
    for (var i = gid.x; i < n; i += nwg.x * 256u) {
        let ch = i % p.c;
        let px = i / p.c;
        let oy = px / ow;
        let ox = px % ow;
        let top = ((2u * oy) * p.w + 2u * ox) * p.c + ch;
        let bottom = top + p.w * p.c;
        let v0 = input[top];
        let v1 = input[top + p.c];
        let v2 = input[bottom];
        let v3 = input[bottom + p.c];
        if (p.max_pool != 0u) {
            // The first maximum wins ties, as in PyTorch's CPU kernel and the CPU engine.
            var best = v0;
            if (v1 > best) { best = v1; }
            if (v2 > best) { best = v2; }
            if (v3 > best) { best = v3; }
            out[i] = best;
        } else {
            out[i] = (v0 + v1 + v2 + v3) * 0.25;
        }
    }
}
