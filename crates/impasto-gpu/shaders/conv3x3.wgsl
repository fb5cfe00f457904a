// 3×3, stride 1, pad 1 convolution as an implicit GEMM on NHWC maps without a border:
// M = h·w pixels, N = output channels, K = 9·input channels ordered (ky, kx, ci), so B is the
// kernel as a [9·cin][cout] matrix. The same shader computes the input gradient with the flipped
// kernel and the channel counts swapped (B = [9·cout][cin]); the epilogue adds the bias and
// applies the ReLU (forward), or adds to what is there and zeroes where the ReLU let nothing
// through (backward, the mask being the activation that the gradient belongs to).

struct Params {
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    flags: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

const BIAS: u32 = 1u;
const RELU: u32 = 2u;
const ACCUMULATE: u32 = 4u;
const MASK: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> mask_act: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const A_K_FASTEST: bool = true;

fn gemm_m() -> u32 {
    return p.h * p.w;
}
fn gemm_n() -> u32 {
    return p.cout;
}
fn k_range(z: u32) -> vec2<u32> {
    return vec2<u32>(0u, 9u * p.cin);
}

fn load_a(m: u32, k: u32) -> f32 {
    let tap = k / p.cin;
    let ci = k - tap * p.cin;
    let y = i32(m / p.w) + i32(tap / 3u) - 1;
    let x = i32(m % p.w) + i32(tap % 3u) - 1;
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    return input[(u32(y) * p.w + u32(x)) * p.cin + ci];
}

fn load_b(k: u32, n: u32) -> f32 {
    return kernel[k * p.cout + n];
}

fn store(m: u32, n: u32, value: f32) {
    var v = value;
    if ((p.flags & BIAS) != 0u) {
        v += bias[n];
    }
    if ((p.flags & RELU) != 0u) {
        v = select(0.0, v, v > 0.0);
    }
    let i = m * p.cout + n;
    if ((p.flags & ACCUMULATE) != 0u) {
        v += out[i];
    }
    if ((p.flags & MASK) != 0u && !(mask_act[i] > 0.0)) {
        v = 0.0;
    }
    out[i] = v;
}
