//! `Query` and `BatchQuery`: the data flow of design.md section 3, one step per line.
//!
//! Promise 5 is kept here: every query, whatever its outcome, is appended to the ledger, and the
//! response is built only from a [`Receipt`], which only a durable commit produces. If the
//! ledger cannot be written the caller gets UNAVAILABLE and no data.
//!
//! Promise 7 too: the rate limit runs before anything else ([`admit`]); the suspension and
//! distinct-subject quota are checked before any record is read ([`answer_all`]), and new
//! subjects are charged in the very transaction that records the query, which then holds
//! refusals instead if the charge no longer fits; enumeration detection runs after the read,
//! on what was found. Every refusal is recorded: quota and suspension refusals one entry
//! per subject, rate-limit refusals folded per caller and window.

use ring::digest;
use tonic::{Status, metadata::MetadataValue};

use super::convert;
use crate::{
    harvest::{self, Admission, Charge, Folded, PendingCharge, Refusal, Suspension},
    identity::{Caller, SpiffeId},
    ledger::{
        entry::{self, Entry},
        store::Receipt,
    },
    policy::{self, ItemRequest, Outcome},
    proto,
    query::{self, AnswerKind},
    state::NodeState,
};

/// Who a query is answered for: the caller of the connection, or the caller a relay acts for.
/// The connection's caller is who the ledger entry names (its certificate is the proof); the
/// answer (policy, quota, enumeration detection, pseudonyms) is the principal's.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    pub caller: &'a Caller,
    /// Set when `caller` is a relay ([`crate::interconnect`]) acting for another caller.
    pub on_behalf_of: Option<&'a SpiffeId>,
}

impl<'a> Asker<'a> {
    pub fn direct(caller: &'a Caller) -> Self {
        Self {
            caller,
            on_behalf_of: None,
        }
    }

    /// The identity the answer is for.
    pub fn principal(&self) -> &'a SpiffeId {
        self.on_behalf_of.unwrap_or(&self.caller.spiffe_id)
    }
}

/// A request that passed validation: what the ledger records and the pipeline answers.
pub struct Asked {
    pub subject: String,
    pub items: Vec<ItemRequest>,
    pub purpose: String,
    pub basis: String,
}

/// The rate limit, before any other work: `subjects` cells of the caller's allowance.
pub async fn admit(state: &NodeState, caller: &Caller, subjects: u32) -> Result<(), Status> {
    match state
        .guard()
        .admit(caller, subjects, state.clock().now_ms())
    {
        Ok(()) => Ok(()),
        Err((refusal, closed)) => {
            if let Some(folded) = closed {
                record_throttled(state, &folded).await;
            }
            Err(refusal_status(state, &refusal))
        }
    }
}

/// Answers validated queries that share one selection (one for `Query`, several for
/// `BatchQuery`), each recorded; returns the responses only after their entries are durable.
pub async fn answer_all(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &[Asked],
) -> Result<Vec<proto::QueryResponse>, Status> {
    let Some(first) = asked.first() else {
        return Ok(Vec::new());
    };
    let catalog = state.catalog();
    let decision = policy::decide(&catalog, asker.principal(), &first.purpose, &first.items);
    // The items each subject's read asks for. A query granted none can receive nothing: it
    // costs no quota and reads nothing, so it learns nothing, not even whether the subject
    // exists.
    let items: Vec<&str> = decision.granted_items().collect();
    let pending = if items.is_empty() {
        Vec::new()
    } else {
        admission(state, asker, asked).await?
    };
    // Concurrently: the ledger commits them in one group, so a batch costs about one fsync.
    let prepared = futures_util::future::join_all(
        asked
            .iter()
            .map(|a| prepare_one(state, asker, a, &decision, &items, &catalog)),
    )
    .await;
    let prepared: Vec<Prepared> = prepared.into_iter().collect::<Result<_, _>>()?;
    commit(state, pending, prepared).await
}

/// The suspension and distinct-subject quota, before anything is read or forwarded: the
/// charges for new subjects to commit with the entries (none if every subject is counted).
/// A refusal is recorded, one entry per query, and returned.
pub(super) async fn admission(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &[Asked],
) -> Result<Vec<PendingCharge>, Status> {
    let mut subjects: Vec<&str> = asked.iter().map(|a| a.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let relay = asker.on_behalf_of.map(|_| &asker.caller.spiffe_id);
    let admission =
        state
            .guard()
            .check(asker.principal(), relay, &subjects, state.clock().now_ms());
    match admission {
        Admission::Free => Ok(Vec::new()),
        Admission::Charge(pending) => Ok(pending),
        Admission::Refused(refusal) => {
            let status = refusal_status(state, &refusal);
            let entries = refusal_entries(state, asker, asked, status.message());
            let recorded = entries.into_iter().map(|e| append(state, e));
            for recorded in futures_util::future::join_all(recorded).await {
                recorded?;
            }
            Err(status)
        }
    }
}

/// Records the prepared answers (with the charges for new subjects, if any, in the same
/// transaction) and returns them once durable. If a charge no longer fits, the entries are
/// recorded as refusals instead and the caller gets the refusal.
pub(super) async fn commit(
    state: &NodeState,
    mut pending: Vec<PendingCharge>,
    prepared: Vec<Prepared>,
) -> Result<Vec<proto::QueryResponse>, Status> {
    if pending.is_empty() {
        let answered = prepared.into_iter().map(|p| async move {
            let receipt = append(state, p.entry).await?;
            Ok::<_, Status>(p.answer.response(&receipt))
        });
        return futures_util::future::join_all(answered)
            .await
            .into_iter()
            .collect();
    }
    // The query's own alert suspended its principal, never the relay: the exemption is the
    // principal's charge's alone.
    let raised = prepared.iter().any(|p| p.raised_suspension);
    for p in &mut pending {
        p.charge.raised_suspension = raised && p.relay().is_none();
    }
    let (answers, entries): (Vec<Answered>, Vec<Entry>) =
        prepared.into_iter().map(|p| (p.answer, p.entry)).unzip();
    let charges = pending.iter().map(|p| p.charge.clone()).collect();
    let refusals = pending.clone();
    let reason = Box::new(move |outcomes: &[Charge]| {
        harvest::refusal_of(&refusals, outcomes)
            .map(|refusal| refusal_message(&refusal).chars().take(200).collect())
            .unwrap_or_default()
    });
    let (outcomes, receipts) = state
        .ledger()
        .append_charged(charges, entries, reason)
        .await
        .map_err(|e| ledger_unavailable(&e))?;
    match harvest::refusal_of(&pending, &outcomes) {
        None => {
            for p in &pending {
                state.guard().charged(&p.charge);
            }
            Ok(answers
                .into_iter()
                .zip(&receipts)
                .map(|(a, receipt)| a.response(receipt))
                .collect())
        }
        Some(refusal) => Err(refusal_status(state, &refusal)),
    }
}

/// A query answered and its entry written, the entry not yet durable.
pub(super) struct Prepared {
    pub answer: Answered,
    pub entry: Entry,
    /// Its own enumeration alert suspended the caller (from the next query on); not when the
    /// caller was suspended already.
    pub raised_suspension: bool,
}

/// What the caller receives once the entry is durable.
pub(super) struct Answered {
    pub result: proto::QueryResult,
    /// What the entry's response digest covers ([`proto::Receipt`]).
    pub result_sha256: [u8; 32],
    /// The holding node's receipt, for a forwarded query.
    pub upstream: Option<proto::Upstream>,
}

impl Answered {
    fn response(self, receipt: &Receipt) -> proto::QueryResponse {
        proto::QueryResponse {
            result: Some(self.result),
            receipt: Some(convert::receipt(receipt, &self.result_sha256)),
            upstream: self.upstream,
        }
    }
}

/// One `denied` entry per query, with the refusal's message as its reason.
fn refusal_entries(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &[Asked],
    message: &str,
) -> Vec<Entry> {
    let reason = message.chars().take(200).collect::<String>();
    asked
        .iter()
        .map(|a| {
            let outcome = entry::Outcome::Denied {
                reason: reason.clone(),
            };
            new_entry(state, asker, a, Vec::new(), outcome, [0; 32])
        })
        .collect()
}

async fn prepare_one(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
    decision: &policy::Decision<'_>,
    items: &[&str],
    catalog: &crate::catalog::SignedCatalog,
) -> Result<Prepared, Status> {
    let mut raised_suspension = false;
    let records = if !items.is_empty() {
        let store_unavailable = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "store unavailable; query refused");
            Status::unavailable("the node's store is unavailable; nothing was disclosed")
        };
        let store = state.store();
        let records = store
            .records_of(&asked.subject, items)
            .await
            .map_err(store_unavailable)?;
        // A miss, for enumeration detection, is a subject the node does not know at all; one
        // known only for other items is not.
        let missed = records.is_empty()
            && !store
                .subject_exists(&asked.subject)
                .await
                .map_err(store_unavailable)?;
        let now = state.clock().now_ms();
        if let Some(alert) = state
            .guard()
            .observe(asker.principal(), &asked.subject, missed, now)
        {
            raised_suspension = raise_alert(state, asker, asked, alert).await?;
        }
        records
    } else {
        Vec::new()
    };
    let key = state.pseudonym_key().recipient_key(asker.principal());
    let answer = query::answer(
        decision,
        &records,
        state.clock().today(),
        &key,
        state.record_ids(),
    );
    let result = convert::query_result(&asked.subject, &answer, catalog);
    let result_sha256 = sha256(&prost::Message::encode_to_vec(&result));
    let entry = answered_entry(state, asker, asked, &answer, result_sha256);
    Ok(Prepared {
        answer: Answered {
            result,
            result_sha256,
            upstream: None,
        },
        entry,
        raised_suspension,
    })
}

/// The entry of an answered query: its outcome and the decision per field.
pub(super) fn answered_entry(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
    answer: &query::Answer,
    result_sha256: [u8; 32],
) -> Entry {
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
    new_entry(state, asker, asked, decisions, outcome, result_sha256)
}

/// Records a refused (malformed) query, then returns the refusal. The refusal is only sent
/// once it is on record, like any other answer.
pub async fn refuse_invalid(
    state: &NodeState,
    asker: Asker<'_>,
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
    on_record(state, asker, &asked, outcome, None, status).await
}

/// Records `asked` as refused with `outcome` (nothing decided, nothing sent; sent on to
/// `forwarded`'s node, if it was), then returns `status`; UNAVAILABLE instead if the refusal
/// cannot be recorded.
pub(super) async fn on_record(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
    outcome: entry::Outcome,
    forwarded: Option<entry::Forwarded>,
    status: Status,
) -> Status {
    let mut entry = new_entry(state, asker, asked, Vec::new(), outcome, [0; 32]);
    entry.forwarded = forwarded;
    match append(state, entry).await {
        Ok(_) => status,
        Err(unavailable) => unavailable,
    }
}

/// The refusal of a suspended `caller` (PERMISSION_DENIED), if it is suspended.
pub(super) fn suspended(state: &NodeState, caller: &SpiffeId) -> Option<Status> {
    let refusal = state.guard().suspended(caller)?;
    Some(refusal_status(state, &refusal))
}

/// Records an enumeration alert (the query that raised it is still answered: it was within
/// quota) and, if so configured, suspends the caller from the next query on. Only when both
/// are stored is the alert marked recorded: after a failure the next sign raises it again.
/// `true` when this alert's suspension is the one now in force: only then is the query that
/// raised it exempt from it. A caller already suspended (by another replica, say) stays
/// refused.
pub(super) async fn raise_alert(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
    alert: crate::harvest::Alert<'_>,
) -> Result<bool, Status> {
    tracing::warn!(caller = %asker.principal(), reason = %alert.reason, "enumeration alert");
    let outcome = entry::Outcome::Alert {
        reason: alert.reason.clone(),
    };
    let entry = new_entry(state, asker, asked, Vec::new(), outcome, [0; 32]);
    let receipt = append(state, entry).await?;
    let mut suspended_now = false;
    if alert.suspend {
        let suspension = Suspension {
            caller: asker.principal().to_string(),
            since_ms: state.clock().now_ms(),
            alert_seq: receipt.seq,
            reason: alert.reason.clone(),
        };
        suspended_now = state.guard().suspend(&suspension).await.map_err(|e| {
            tracing::error!(error = %e, "could not store a suspension; query refused");
            Status::unavailable("the node's store is unavailable; nothing was disclosed")
        })?;
    }
    alert.recorded();
    Ok(suspended_now)
}

/// Records one closed window of rate-limit refusals as a `throttled` entry. A failure is
/// logged: the refusals themselves disclosed nothing.
pub async fn record_throttled(state: &NodeState, folded: &Folded) {
    let outcome = entry::Outcome::Throttled {
        count: folded.count,
        window_start_ms: folded.window_start_ms,
    };
    let entry = super::unanswered_entry(state, &folded.caller, folded.fingerprint, outcome);
    if let Err(e) = state.ledger().append(entry).await {
        tracing::error!(error = %e, caller = %folded.caller, count = folded.count,
            "could not record rate-limit refusals");
    }
}

/// The gRPC status of a refusal, with when to retry where waiting helps.
pub(super) fn refusal_status(state: &NodeState, refusal: &Refusal) -> Status {
    let message = refusal_message(refusal);
    let (mut status, retry_ms) = match refusal {
        Refusal::Throttled { retry_after } => (
            Status::resource_exhausted(message),
            Some(retry_ms(*retry_after)),
        ),
        Refusal::BatchOverBurst { .. } => (Status::resource_exhausted(message), None),
        Refusal::QuotaExhausted { resets_at_ms, .. } => {
            let ms = u64::try_from(resets_at_ms - state.clock().now_ms())
                .unwrap_or(0)
                .max(1);
            (Status::resource_exhausted(message), Some(ms))
        }
        Refusal::Suspended { .. } => (Status::permission_denied(message), None),
    };
    if let Some(ms) = retry_ms {
        let metadata = status.metadata_mut();
        metadata.insert("retry-after", MetadataValue::from(ms.div_ceil(1000)));
        metadata.insert("grpc-retry-pushback-ms", MetadataValue::from(ms));
    }
    status
}

/// Rounded up: a client that waits exactly this long must pass.
fn retry_ms(retry_after: std::time::Duration) -> u64 {
    u64::try_from(retry_after.as_micros().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What a refusal says, to the caller and in its ledger entry.
fn refusal_message(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Throttled { retry_after } => format!(
            "rate limit: too many requests from this caller; retry after {} ms",
            retry_ms(*retry_after)
        ),
        Refusal::BatchOverBurst { subjects, burst } => format!(
            "subjects: {subjects} subjects exceed this caller's burst of {burst}; \
             send at most {burst} per request"
        ),
        Refusal::QuotaExhausted {
            quota,
            resets_at_ms,
            relay: None,
        } => format!(
            "quota: this caller has obtained records about its {quota} distinct \
             subjects for this window; repeats of those are still answered, new \
             subjects from {}",
            rfc3339(*resets_at_ms)
        ),
        Refusal::QuotaExhausted {
            quota,
            resets_at_ms,
            relay: Some(relay),
        } => format!(
            "quota: the relay {relay} has obtained records about its {quota} distinct \
             subjects for this window, for all the callers it acts for together; repeats \
             of those are still answered, new subjects from {}",
            rfc3339(*resets_at_ms)
        ),
        Refusal::Suspended {
            since_ms,
            relay: None,
        } => format!(
            "this caller is suspended since {} after an enumeration alert, until an \
             officer lifts the suspension",
            rfc3339(*since_ms)
        ),
        Refusal::Suspended {
            since_ms,
            relay: Some(relay),
        } => format!(
            "the relay {relay} is suspended since {} after an enumeration alert, until an \
             officer lifts the suspension; it relays for no one meanwhile",
            rfc3339(*since_ms)
        ),
    }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub(super) fn new_entry(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
    decisions: Vec<entry::FieldDecision>,
    outcome: entry::Outcome,
    response_sha256: [u8; 32],
) -> Entry {
    Entry {
        seq: 0, // assigned by the ledger writer
        time_ms: state.clock().now_ms(),
        query_id: crate::ledger::entry::new_query_id(),
        caller: asker.caller.spiffe_id.to_string(),
        caller_cert_sha256: asker.caller.fingerprint,
        on_behalf_of: asker.on_behalf_of.map(ToString::to_string),
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
        forwarded: None,
    }
}

pub(super) async fn append(state: &NodeState, entry: Entry) -> Result<Receipt, Status> {
    state
        .ledger()
        .append(entry)
        .await
        .map_err(|e| ledger_unavailable(&e))
}

fn ledger_unavailable(e: &crate::ledger::store::LedgerError) -> Status {
    tracing::error!(error = %e, "ledger append failed; answering UNAVAILABLE");
    Status::unavailable("the query could not be recorded in the ledger; nothing was disclosed")
}

pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}
