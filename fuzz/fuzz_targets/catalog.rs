//! The catalog parser never panics, whatever the bytes; errors always name a location.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = credit_node::catalog::Catalog::parse("fuzz.toml", data);
});
