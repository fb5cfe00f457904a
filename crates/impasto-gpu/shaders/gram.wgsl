// Partial Gram matrices G_z = Σ_p w_p² F_p F_pᵀ over the z-th chunk of pixels (split-K: C × C is
// small while the pixels are many), written to partial[z]; style_finish.wgsl adds them up.
// F is h·w × C (NHWC without a border); w_p is the optional per-pixel mask weight.

struct Params {
    c: u32,
    pixels: u32,
    chunk: u32,
    weighted: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

const A_K_FASTEST: bool = false;

var<private> split: u32;

fn gemm_m() -> u32 {
    return p.c;
}
fn gemm_n() -> u32 {
    return p.c;
}
fn k_range(z: u32) -> vec2<u32> {
    split = z;
    return vec2<u32>(z * p.chunk, min((z + 1u) * p.chunk, p.pixels));
}

fn pixel_weight(px: u32) -> f32 {
    if (p.weighted != 0u) {
        return weight[px];
    }
    return 1.0;
}

fn load_a(m: u32, k: u32) -> f32 {
    return features[k * p.c + m] * pixel_weight(k);
}

fn load_b(k: u32, n: u32) -> f32 {
    return features[k * p.c + n] * pixel_weight(k);
}

fn store(m: u32, n: u32, value: f32) {
    partial[(split * p.c + m) * p.c + n] = value;
}
