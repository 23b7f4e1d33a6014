//! Ingest rows (JSON Lines and CSV) never panic the reader or the validator.
#![no_main]
use credit_node::{
    catalog::Catalog,
    ingest::{self, Format, Rows},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(catalog) = Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes()) else {
        return;
    };
    let today = time::macros::date!(2026 - 11 - 23);
    for format in [Format::JsonLines, Format::Csv] {
        for row in Rows::from_reader(format, data).take(64).flatten() {
            let _ = ingest::validate(&catalog, "samr", today, &row);
        }
    }
});
