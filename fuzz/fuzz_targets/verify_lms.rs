#![no_main]
//! libFuzzer entry point; the harness is [`keyquorum_fuzz::verify_lms`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyquorum_fuzz::verify_lms(data));
