//! What the ledger benchmarks share.

use credit_node::ledger::entry::{Decision, Entry, FieldDecision, Outcome};

/// A typical granted query entry (≈ 225 bytes encoded) about one of 100,000 subjects.
pub fn entry(n: u64) -> Entry {
    Entry {
        seq: 0,
        time_ms: 1_790_000_000_000 + n as i64,
        query_id: [7; 16],
        caller: "spiffe://region-a.credit.test/dept/tax".into(),
        caller_cert_sha256: [0xab; 32],
        on_behalf_of: None,
        purpose: "licensing".into(),
        basis: "doc-2026-17".into(),
        subject: format!("9135010{:011}", n % 100_000),
        requested_fields: vec!["penalty.amount".into()],
        decisions: vec![FieldDecision {
            field: "penalty.amount".into(),
            decision: Decision::GrantedRaw,
        }],
        outcome: Outcome::Granted,
        response_sha256: [0x11; 32],
        forwarded: None,
    }
}
