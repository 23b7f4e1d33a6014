//! `Query` and `BatchQuery`: the data flow of design.md section 3, one step per line.
//!
//! Promise 5 is kept here: every query, whatever its outcome, is appended to the ledger, and the
//! response is built only from a [`Receipt`], which only a durable commit produces. If the
//! ledger cannot be written the caller gets UNAVAILABLE and no data.

use ring::digest;
use tonic::Status;

use super::convert;
use crate::{
    identity::Caller,
    ledger::{
        entry::{self, Entry},
        store::Receipt,
    },
    policy::{self, ItemRequest, Outcome},
    proto,
    query::{self, AnswerKind},
    state::NodeState,
};

/// A request that passed validation: what the ledger records and the pipeline answers.
pub struct Asked {
    pub subject: String,
    pub items: Vec<ItemRequest>,
    pub purpose: String,
    pub basis: String,
}

/// Answers one validated query and records it; returns the response only after the ledger
/// entry is durable.
pub async fn answer(
    state: &NodeState,
    caller: &Caller,
    asked: &Asked,
) -> Result<proto::QueryResponse, Status> {
    let catalog = state.catalog();
    let decision = policy::decide(&catalog, &caller.spiffe_id, &asked.purpose, &asked.items);
    // No database work for a query that can receive nothing: it learns nothing, not even
    // whether the subject exists.
    let records = if decision.grants_anything() {
        state
            .store()
            .records_of(&asked.subject)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store unavailable; query refused");
                Status::unavailable("the node's store is unavailable; nothing was disclosed")
            })?
    } else {
        Vec::new()
    };
    let key = state.pseudonym_key().recipient_key(&caller.spiffe_id);
    let answer = query::answer(&decision, &records, state.clock().today(), &key);
    let result = convert::query_result(&asked.subject, &answer, &catalog);
    let result_sha256 = sha256(&prost::Message::encode_to_vec(&result));

    let outcome = match answer.kind() {
        AnswerKind::Granted => entry::Outcome::Granted,
        AnswerKind::PartlyWithheld => entry::Outcome::PartlyWithheld,
        AnswerKind::Denied => entry::Outcome::Denied {
            reason: "nothing requested is granted to this caller for this purpose".into(),
        },
    };
    let decisions = answer
        .decisions
        .iter()
        .map(|(field, outcome)| entry::FieldDecision {
            field: field.clone(),
            decision: match outcome {
                Outcome::Granted(crate::desensitize::Form::Raw) => entry::Decision::GrantedRaw,
                Outcome::Granted(form) => entry::Decision::GrantedForm(form.to_string()),
                Outcome::Withheld(why) => entry::Decision::Withheld(why.as_str().to_owned()),
            },
        })
        .collect();
    let entry = new_entry(state, caller, asked, decisions, outcome, result_sha256);
    let receipt = append(state, entry).await?;
    Ok(proto::QueryResponse {
        result: Some(result),
        receipt: Some(convert::receipt(&receipt, &result_sha256)),
    })
}

/// Records a refused (malformed) query, then returns the refusal. The refusal is only sent
/// once it is on record, like any other answer.
pub async fn refuse_invalid(
    state: &NodeState,
    caller: &Caller,
    subject: &str,
    purpose: &str,
    basis: &str,
    status: Status,
) -> Status {
    let asked = Asked {
        subject: subject.chars().take(32).collect(),
        items: Vec::new(),
        purpose: purpose.chars().take(64).collect(),
        basis: basis.chars().take(200).collect(),
    };
    let outcome = entry::Outcome::Invalid {
        reason: status.message().chars().take(200).collect(),
    };
    let entry = new_entry(state, caller, &asked, Vec::new(), outcome, [0; 32]);
    match append(state, entry).await {
        Ok(_) => status,
        Err(unavailable) => unavailable,
    }
}

fn new_entry(
    state: &NodeState,
    caller: &Caller,
    asked: &Asked,
    decisions: Vec<entry::FieldDecision>,
    outcome: entry::Outcome,
    response_sha256: [u8; 32],
) -> Entry {
    Entry {
        seq: 0, // assigned by the ledger writer
        time_ms: state.clock().now_ms(),
        query_id: random_id(),
        caller: caller.spiffe_id.to_string(),
        caller_cert_sha256: caller.fingerprint,
        on_behalf_of: None,
        purpose: asked.purpose.clone(),
        basis: asked.basis.clone(),
        subject: asked.subject.clone(),
        requested_fields: asked
            .items
            .iter()
            .flat_map(|i| {
                if i.fields.is_empty() {
                    vec![format!("{}.*", i.item)]
                } else {
                    i.fields.iter().map(|f| format!("{}.{f}", i.item)).collect()
                }
            })
            .collect(),
        decisions,
        outcome,
        response_sha256,
    }
}

async fn append(state: &NodeState, entry: Entry) -> Result<Receipt, Status> {
    state.ledger().append(entry).await.map_err(|e| {
        tracing::error!(error = %e, "ledger append failed; answering UNAVAILABLE");
        Status::unavailable("the query could not be recorded in the ledger; nothing was disclosed")
    })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // The id only correlates log lines; on an RNG failure a zero id is still a valid entry.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
    id
}
