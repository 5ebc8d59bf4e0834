//! Archive extraction: nothing outside the target, only plain files and directories.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::unpack(data));
