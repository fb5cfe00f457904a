// out = max(input, 0) with NaN → 0 as the CPU's ReLU: a tapped conv layer's pre-ReLU output,
// kept whole, activated into the next layer's input.

struct Params {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
    _p5: u32,
    _p6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * 256u) {
        let v = input[i];
        out[i] = select(0.0, v, v > 0.0);
    }
}
