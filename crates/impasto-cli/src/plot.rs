//! Loss curves as PNG or SVG. (Being written.)
