#![no_main]
//! See `impasto::fuzzing::safetensors`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| impasto::fuzzing::safetensors(data));
