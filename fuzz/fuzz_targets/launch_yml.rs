//! The launch.yml reader, as strict as CF's: what it reads renders back the same.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::launch_yml(data));
