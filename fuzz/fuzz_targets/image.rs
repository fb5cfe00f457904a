#![no_main]
//! See `impasto::fuzzing::image`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| impasto::fuzzing::image(data));
