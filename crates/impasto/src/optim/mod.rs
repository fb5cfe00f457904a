//! Optimisers over an image's pixels. (Being written.)
