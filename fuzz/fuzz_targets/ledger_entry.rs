//! Ledger entry decoding never panics, agrees with the allocation-free validator, and whatever
//! decodes re-encodes to the same bytes (the encoding is canonical).
#![no_main]
use credit_node::ledger::entry::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = Entry::decode(data);
    assert_eq!(decoded.is_ok(), Entry::validate(data).is_ok());
    if let Ok(entry) = decoded {
        assert_eq!(entry.encode(), data);
    }
});
