#![no_main]
//! libFuzzer entry point; the harness is [`keyquorum_fuzz::decode_oprf`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyquorum_fuzz::decode_oprf(data));
