//! Reading, resizing and writing images. (Being written.)
