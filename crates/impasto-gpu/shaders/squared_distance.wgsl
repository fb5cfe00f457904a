// Σ (a − b)² (b optional) as 256 partial sums per call, one per workgroup, written to
// sums[2·(slot·256 + workgroup)..][..2]; the host adds the partials in f64. Each thread walks the data in a
// grid-stride loop, then the workgroup adds its threads' sums in a tree in workgroup memory.
// Content losses use it on (features, target), style losses on the Gram difference.

struct Params {
    n: u32,
    slot: u32,
    has_b: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;

// Each partial is a pair (hi, lo) whose sum carries about twice f32's precision: every square's
// rounding error (fma) and every addition's (TwoSum) is kept in lo. Losses are differenced by
// line searches and finite differences, which plain f32 sums are too noisy for.
var<workgroup> part_hi: array<f32, 256>;
var<workgroup> part_lo: array<f32, 256>;

// a + b = s + e exactly (Knuth's TwoSum).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    return vec2<f32>(s, e);
}

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var hi = 0.0;
    var lo = 0.0;
    for (var i = gid.x; i < p.n; i += nwg.x * 256u) {
        var d = a[i];
        if (p.has_b != 0u) {
            d -= b[i];
        }
        let sq = d * d;
        let sq_err = fma(d, d, -sq);
        let t = two_sum(hi, sq);
        hi = t.x;
        lo += t.y + sq_err;
    }
    part_hi[li] = hi;
    part_lo[li] = lo;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if (li < step) {
            let t = two_sum(part_hi[li], part_hi[li + step]);
            part_hi[li] = t.x;
            part_lo[li] = part_lo[li] + part_lo[li + step] + t.y;
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        sums[(p.slot * 256u + wid.x) * 2u] = part_hi[0];
        sums[(p.slot * 256u + wid.x) * 2u + 1u] = part_lo[0];
    }
}
