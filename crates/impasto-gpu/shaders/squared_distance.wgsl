// Σ (a − b)² (b optional) as 256 partial sums per call, one per workgroup, written to
// sums[slot·256 + workgroup]; the host adds the partials in f64. Each thread walks the data in a
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

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var s = 0.0;
    for (var i = gid.x; i < p.n; i += nwg.x * 256u) {
        var d = a[i];
        if (p.has_b != 0u) {
            d -= b[i];
        }
        s = fma(d, d, s);
    }
    part[li] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if (li < step) {
            part[li] += part[li + step];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        sums[p.slot * 256u + wid.x] = part[0];
    }
}
