// Pooling's input gradient: grad_in = mask ⊙ ((accumulate ? grad_in : 0) + poolᵀ(grad_out)).
// Max pooling routes each gradient to its window's first maximum, found again from the forward
// input; the mask (optional) is the activation grad_in belongs to, zero where its ReLU was off.
// One thread per input value.

struct Params {
    h: u32,
    w: u32,
    c: u32,
    max_pool: u32,
    accumulate: u32,
    masked: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read> mask_act: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_in: array<f32>;

fn argmax4(top: u32) -> u32 {
    let bottom = top + p.w * p.c;
    let v = array<f32, 4>(input[top], input[top + p.c], input[bottom], input[bottom + p.c]);
    var best = 0u;
    for (var i = 1u; i < 4u; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let oh = p.h / 2u;
    let ow = p.w / 2u;
    let n = p.h * p.w * p.c;
    for (var i = gid.x; i < n; i += nwg.x * 256u) {
        let ch = i % p.c;
        let px = i / p.c;
        let y = px / p.w;
        let x = px % p.w;
        var v = 0.0;
        if (p.accumulate != 0u) {
            v = grad_in[i];
        }
        let oy = y / 2u;
        let ox = x / 2u;
        if (oy < oh && ox < ow) {
            let g = grad_out[(oy * ow + ox) * p.c + ch];
            if (p.max_pool != 0u) {
                let top = ((2u * oy) * p.w + 2u * ox) * p.c + ch;
                if (argmax4(top) == (y % 2u) * 2u + (x % 2u)) {
                    v += g;
                }
            } else {
                v += g * 0.25;
            }
        }
        if (p.masked != 0u && !(mask_act[i] > 0.0)) {
            v = 0.0;
        }
        grad_in[i] = v;
    }
}
