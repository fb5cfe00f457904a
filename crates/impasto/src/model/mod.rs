//! VGG networks: topology, layer names, input conventions.

mod arch;
mod convention;

pub use arch::{Architecture, ConvSpec, Layer};
pub use convention::InputConvention;
mod network;

pub use network::{AlgorithmPolicy, LossGradients, Vgg, VggOptions, Workspace};
