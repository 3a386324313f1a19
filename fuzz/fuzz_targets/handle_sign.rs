#![no_main]
//! libFuzzer entry point; the harness is [`keyquorum_fuzz::handle_sign`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyquorum_fuzz::handle_sign(data));
