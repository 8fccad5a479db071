#![no_main]
//! See src/fuzzing.rs: `postern::fuzzing::config` must never panic on any input.
libfuzzer_sys::fuzz_target!(|data: &[u8]| postern::fuzzing::config(data));
