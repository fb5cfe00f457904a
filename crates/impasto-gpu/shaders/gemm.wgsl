// The tiled matrix product shared by conv3x3, gram and gram_gradient (appended to each of them):
// a workgroup of 16×16 threads computes a 64×64 tile of C = A·B, 4×4 values per thread, walking
// K in steps of 16 through workgroup memory (8 KiB, well inside the 16 KiB WebGPU guarantees).
// The including shader defines gemm_m(), gemm_n(), k_range(z) (the K interval of workgroup
// layer z, for split-K), load_a(m, k), load_b(k, n), store(m, n, value), and the const
// A_K_FASTEST (whether A's K index is the contiguous one in memory, so that neighbouring threads
// load neighbouring addresses). Out-of-range elements load as zero.

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.x * TM;
    let n0 = wid.y * TN;
    let m_size = gemm_m();
    let n_size = gemm_n();
    let kr = k_range(wid.z);
    let t = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += TK) {
        for (var i = 0u; i < 4u; i++) {
            let e = t + i * 256u;
            var mm: u32;
            var kk: u32;
            if (A_K_FASTEST) {
                mm = e / TK;
                kk = e % TK;
            } else {
                kk = e / TM;
                mm = e % TM;
            }
            let ka = k0 + kk;
            let m = m0 + mm;
            var va = 0.0;
            if (ka < kr.y && m < m_size) {
                va = load_a(m, ka);
            }
            a_tile[kk * TM + mm] = va;
            let kb = e / TN;
            let nn = e % TN;
            let kbb = k0 + kb;
            let n = n0 + nn;
            var vb = 0.0;
            if (kbb < kr.y && n < n_size) {
                vb = load_b(kbb, n);
            }
            b_tile[kb * TN + nn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = a_tile[kk * TM + lid.y + 16u * i];
                b[i] = b_tile[kk * TN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x + 16u * j;
            if (m < m_size && n < n_size) {
                store(m, n, acc[i * 4u + j]);
            }
        }
    }
}
