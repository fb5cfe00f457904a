#![no_main]
//! See `impasto::fuzzing::torch_zip`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| impasto::fuzzing::torch_zip(data));
