// The style loss's gradient: grad_p += scale · w_p² · (F · D)_p for a C × C matrix D (the
// normalised Gram difference), i.e. the chain rule through G = Fᵀ F with the mask weight w_p
// applied twice, once for each factor of G.

struct Params {
    pixels: u32,
    c: u32,
    scale: f32,
    weighted: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read> d: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

const A_K_FASTEST: bool = true;

fn gemm_m() -> u32 {
    return p.pixels;
}
fn gemm_n() -> u32 {
    return p.c;
}
fn k_range(z: u32) -> vec2<u32> {
    return vec2<u32>(0u, p.c);
}

fn load_a(m: u32, k: u32) -> f32 {
    return features[m * p.c + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    return d[k * p.c + n];
}

fn store(m: u32, n: u32, value: f32) {
    var s = p.scale;
    if (p.weighted != 0u) {
        s *= weight[m] * weight[m];
    }
    grad[m * p.c + n] += s * value;
}
