//! Identifier validation never panics, and what it accepts re-validates to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(subject) = credit_node::identifier::Subject::parse(s) {
        let again = credit_node::identifier::Subject::parse(&subject.to_string());
        assert!(again.is_ok());
    }
    let _ = credit_node::identifier::Uscc::parse(s);
    let _ = credit_node::identifier::ResidentId::parse(s);
});
