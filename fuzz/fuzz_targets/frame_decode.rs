//! Frame decoding never panics and round-trips what it accepts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wharf_wire::fuzzing::frame_decode(data));
