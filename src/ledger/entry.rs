//! One ledger entry and its canonical encoding.
//!
//! Every query — granted, partly withheld, denied, throttled, malformed —,
//! every officer review and every operator's change to the records becomes
//! one [`Entry`] (design.md promises 5 and 6).
//! The leaf hash of the Merkle log is taken over [`Entry::encode`], so the
//! encoding must be canonical: one entry has exactly one byte string, and
//! the decoder accepts exactly the strings the encoder produces. That is why
//! it is hand-written rather than serde: no map ordering, no optional
//! whitespace, no alternative integer forms. Fields are fixed-width
//! big-endian or `u32` length-prefixed, led by a format byte so a later
//! format can be added without ever reinterpreting old entries.
//!
//! Architecture Invariant: this module never imports tonic, sqlx or tokio;
//! storage passes it bytes and gets bytes back.

mod codec;
mod reader;
#[cfg(test)]
pub(crate) mod tests;
mod validate;

pub use codec::{DecodeError, FORMAT_V1, FORMAT_V2};

use crate::ledger::filter::FilterFields;
use crate::ledger::merkle::{self, Hash};

/// A fresh query id for an entry. It names the query to people (the caller quotes it to the
/// officers) rather than securing anything; on an RNG failure a zero id is still a valid entry.
pub fn new_query_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
    id
}

/// A registered inquiry or review. Plain data: the api and policy layers
/// fill it in, storage persists [`Entry::encode`], verification decodes it.
///
/// Contract kept by storage, not here (promise 5): a response carrying data
/// is sent only after its entry is durably committed, and
/// `response_sha256` is the digest of exactly that response, so a reviewer
/// can match what left the node to what was logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 0; must equal the leaf index.
    pub seq: u64,
    /// Unix time in milliseconds, from the node's injected clock.
    pub time_ms: i64,
    /// The query's id, returned to the caller with the receipt.
    pub query_id: [u8; 16],
    /// The caller's SPIFFE ID, taken from its certificate (promise 1).
    pub caller: String,
    /// SHA-256 of the caller's client certificate (DER).
    pub caller_cert_sha256: [u8; 32],
    /// The original caller when a peer node forwards a query.
    pub on_behalf_of: Option<String>,
    pub purpose: String,
    /// Reference to the legal basis or document the query relies on.
    pub basis: String,
    /// The subject identifier; empty for refusals before parsing.
    pub subject: String,
    /// Requested fields as "item.field".
    pub requested_fields: Vec<String>,
    pub decisions: Vec<FieldDecision>,
    pub outcome: Outcome,
    /// SHA-256 of the exact response body sent; zeros when none was sent.
    pub response_sha256: [u8; 32],
    /// Set when this node forwarded the query to the node of another region that holds the
    /// records: the officers of both can then find the one query in either ledger.
    pub forwarded: Option<Forwarded>,
}

/// Where a query was forwarded, and the other node's record of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The SPIFFE ID of the node the query was sent to.
    pub node: String,
    /// That node's receipt, when it answered: its entry of the same query. Absent when it
    /// refused, could not be reached or answered out of time or malformed; its own ledger
    /// then holds whatever it recorded, under this node's identity and `on_behalf_of`.
    pub receipt: Option<UpstreamReceipt>,
}

/// The other node's receipt, as it sent it ([`crate::proto::Receipt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamReceipt {
    pub seq: u64,
    pub leaf_hash: [u8; 32],
    pub result_sha256: [u8; 32],
    pub query_id: [u8; 16],
}

/// What the policy decided for one requested field (promise 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDecision {
    pub field: String,
    pub decision: Decision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    GrantedRaw,
    /// Granted after de-sensitization with the named rule (promise 4).
    GrantedForm(String),
    /// Withheld, with the reason given to the caller.
    Withheld(String),
}

/// How the query ended, or what the entry records if it is not a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    PartlyWithheld,
    Denied {
        reason: String,
    },
    /// Refusals folded into one entry per caller and window (promise 5),
    /// so a flood cannot flood the ledger.
    Throttled {
        count: u64,
        window_start_ms: i64,
    },
    Invalid {
        reason: String,
    },
    /// An officer's review of entries `first_seq..=last_seq`; reviews are
    /// ledger entries too, so they are as tamper-evident as what they judge.
    Review(Review),
    /// A detection, e.g. enumeration or harvesting suspected (promise 7).
    Alert {
        reason: String,
    },
    /// An operator's change to the records, recorded before it is made: what is shared can
    /// only change on record.
    Administration(Administration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Administration {
    pub action: AdminAction,
    /// What was changed, for the reviewer: the record, the dates, a digest of an ingested
    /// batch. The entry's `basis` holds the document the change rests on, `subject` the
    /// subject concerned (empty for a batch).
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAction {
    IngestRecords,
    RestoreRecord,
    RemoveFromList,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::IngestRecords => "ingest_records",
            AdminAction::RestoreRecord => "restore_record",
            AdminAction::RemoveFromList => "remove_from_list",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    pub first_seq: u64,
    pub last_seq: u64,
    pub decision: ReviewDecision,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewDecision {
    Accepted,
    Flagged,
    Referred,
}

impl ReviewDecision {
    /// The word listings, exports and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Accepted => "accepted",
            ReviewDecision::Flagged => "flagged",
            ReviewDecision::Referred => "referred",
        }
    }
}

impl Entry {
    /// An entry that answers no query (an action, a window of refused requests): by the caller
    /// `caller` presenting the certificate of digest `caller_cert_sha256`, at `time_ms`; no
    /// fields decided, nothing sent. Its `seq` is assigned by the writer.
    pub fn unanswered(
        caller: String,
        caller_cert_sha256: [u8; 32],
        time_ms: i64,
        outcome: Outcome,
    ) -> Entry {
        Entry {
            seq: 0,
            time_ms,
            query_id: new_query_id(),
            caller,
            caller_cert_sha256,
            on_behalf_of: None,
            purpose: String::new(),
            basis: String::new(),
            subject: String::new(),
            requested_fields: Vec::new(),
            decisions: Vec::new(),
            outcome,
            response_sha256: [0; 32],
            forwarded: None,
        }
    }
}

impl Entry {
    /// Turns the entry of an answered query into its refusal, for a query refused at the last
    /// moment (its quota charge did not go through): nothing was disclosed, so no field
    /// decisions and no response digest; who asked what, when and why stands.
    pub fn refuse(&mut self, reason: String) {
        self.decisions.clear();
        self.outcome = Outcome::Denied { reason };
        self.response_sha256 = [0; 32];
    }

    /// The canonical bytes: format [`FORMAT_V1`], or [`FORMAT_V2`] for a forwarded query.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Strict decoder for untrusted bytes: rejects unknown formats, bad
    /// lengths or tags, non-UTF-8 text and trailing bytes; never panics.
    /// Whatever it accepts re-encodes to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        codec::decode(bytes)
    }

    /// Checks that `bytes` would decode, without building the entry, and
    /// returns the entry's own sequence number: same verdict and same error
    /// as [`Entry::decode`], no allocation. For the audit's hot loop.
    pub fn validate(bytes: &[u8]) -> Result<u64, DecodeError> {
        validate::validate(bytes).map(|(seq, _)| seq)
    }

    /// [`Entry::validate`] that also lends out the fields listings select the entry by, so the
    /// audit can hold the stored copies of them to the entry without decoding it.
    pub fn filter_fields(bytes: &[u8]) -> Result<(u64, FilterFields<'_>), DecodeError> {
        validate::validate(bytes)
    }

    /// The Merkle leaf hash of the canonical encoding.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.encode())
    }
}
