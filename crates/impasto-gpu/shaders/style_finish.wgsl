// Adds the split-K partial Gram matrices and turns the sum into the style loss's difference
// D = G / mass − target (C × C), which is both what the loss squares and what its gradient
// multiplies the features by.

struct Params {
    cc: u32,
    splits: u32,
    inv_mass: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> target_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> diff: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.cc; i += nwg.x * 256u) {
        var g = 0.0;
        for (var z = 0u; z < p.splits; z++) {
            g += partial[z * p.cc + i];
        }
        diff[i] = g * p.inv_mass - target_g[i];
    }
}
