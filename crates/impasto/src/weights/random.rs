//! Random weights, for tests, examples and timing where the real ones (80–550 MB) are not at
//! hand. The features they give are those of an untrained network: fine for checking that a
//! pipeline runs and for measuring speed, useless for the look of a transfer.

use crate::model::{Architecture, InputConvention};

use super::{ConvParams, VggWeights};

impl VggWeights {
    /// He-initialised random weights (uniform in `±√(6 / fan_in)`, zero biases) for
    /// `architecture`, the same for the same `seed` on every machine. Their
    /// [`source`](VggWeights::source) is `random (seed N)`.
    ///
    /// ```
    /// use impasto::model::Architecture;
    /// use impasto::weights::VggWeights;
    ///
    /// let weights = VggWeights::random(Architecture::Vgg16, 7);
    /// assert_eq!(weights.convs.len(), 13);
    /// assert_eq!(weights, VggWeights::random(Architecture::Vgg16, 7));
    /// ```
    pub fn random(architecture: Architecture, seed: u64) -> VggWeights {
        // xorshift64: deterministic everywhere, no dependency for what needs no quality.
        let mut state = seed ^ 0x2545_F491_4F6C_DD1D;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let convs = architecture
            .conv_specs()
            .iter()
            .map(|s| {
                let bound = (6.0 / (9.0 * s.in_channels as f64)).sqrt();
                ConvParams {
                    weight: (0..s.weight_len())
                        .map(|_| (uniform() * bound) as f32)
                        .collect(),
                    bias: vec![0.0; s.out_channels],
                }
            })
            .collect();
        VggWeights {
            architecture,
            convention: InputConvention::CaffeBgr,
            convs,
            source: format!("random (seed {seed})"),
            source_sha256: String::new(),
        }
    }
}
