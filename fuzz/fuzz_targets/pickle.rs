#![no_main]
//! See `impasto::fuzzing::pickle`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| impasto::fuzzing::pickle(data));
