#![no_main]
//! See src/fuzzing.rs: `postern::fuzzing::cookie` must never panic on any input.
libfuzzer_sys::fuzz_target!(|data: &[u8]| postern::fuzzing::cookie(data));
