//! `credit.v1.LedgerReview`: officers read the ledger, record their review decisions in it, and
//! lift suspensions; departments check that their own queries are in the log.
//!
//! Promise 6 ("reviews by officers are ledger entries too") is kept by [`LedgerReviewApi`]'s
//! `record_review` and `lift_suspension`: a decision is answered only with the receipt of its
//! own durably committed entry, and a suspension is removed only after the review that lifts it
//! is on record, so no officer action escapes the log it judges.
//!
//! Who reads what is decided once per call by [`LedgerReviewApi::officer`] or
//! [`LedgerReviewApi::reader`], whose return values are the only way to a handler's body.
//! A department never reads another caller's entry: its inclusion-proof request is checked
//! against the entry's recorded caller before anything about the entry is computed, and the
//! refusal says nothing about the entry.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{caller, convert};
use crate::{
    identity::{Caller, Kind, SpiffeId},
    ledger::{
        EntryFilter, LedgerError, Page, StoredEntry,
        entry::{Outcome, Review},
        merkle::ProofError,
        store,
    },
    proto::{self, ledger_review_server::LedgerReview},
    state::NodeState,
};

/// Entries per page when the request says 0, and the most a page may hold: a page is read,
/// decoded and sent whole, so it is bounded like any other message.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Longest review comment, in characters: enough for a reasoned note, not a document store.
const MAX_COMMENT: usize = 1000;
/// Longest text filter or caller id accepted, in bytes (nothing recorded is longer).
const MAX_FILTER: usize = 300;

pub struct LedgerReviewApi {
    state: Arc<NodeState>,
}

/// An officer of this node's own trust domain: the permit [`LedgerReviewApi::record`] needs,
/// which only [`LedgerReviewApi::officer`] constructs.
struct Officer<'r>(&'r Caller);

/// Who is reading: an officer (everything) or a department (its own entries only).
enum Reader<'r> {
    Officer,
    Peer(&'r Caller),
}

impl LedgerReviewApi {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }

    fn is_officer(&self, caller: &Caller) -> bool {
        self.state.access().is_officer(&caller.spiffe_id)
    }

    /// Only the officers the department names (`access.officers`): an officer of another
    /// department, or of another region, reviews its own node, not this one.
    /// A refused caller's attempt is recorded: reading the query log unbidden is itself
    /// something to review.
    async fn officer<'r, T>(
        &self,
        request: &'r Request<T>,
        rpc: &str,
    ) -> Result<Officer<'r>, Status> {
        let caller = caller(&self.state, request)?;
        if self.is_officer(caller) {
            return Ok(Officer(caller));
        }
        tracing::warn!(caller = %caller.spiffe_id, rpc, "ledger review refused: not an officer of this node");
        let refusal = Status::permission_denied("ledger review is for this node's officers only");
        Err(super::refuse_on_record(&self.state, caller, &method(rpc), refusal).await)
    }

    /// Officers, or departments of any trust domain the node lets in (for their own entries).
    /// A department's proof requests draw on its query rate limit: a tree head may be signed
    /// for it, and that must not be floodable.
    async fn reader<'r, T>(
        &self,
        request: &'r Request<T>,
        rpc: &str,
    ) -> Result<Reader<'r>, Status> {
        let caller = caller(&self.state, request)?;
        if self.is_officer(caller) {
            return Ok(Reader::Officer);
        }
        if caller.spiffe_id.kind() == Kind::Dept {
            super::query::admit(&self.state, caller, 1).await?;
            return Ok(Reader::Peer(caller));
        }
        tracing::warn!(caller = %caller.spiffe_id, rpc, "ledger review refused: neither officer nor department");
        let refusal = Status::permission_denied(
            "ledger proofs are for this node's officers and for departments (their own entries)",
        );
        Err(super::refuse_on_record(&self.state, caller, &method(rpc), refusal).await)
    }

    async fn size(&self) -> Result<u64, Status> {
        store::committed_size(self.state.store())
            .await
            .map_err(ledger_status)
    }

    /// The stored entry `seq`, which the caller has checked exists.
    async fn entry(&self, seq: u64) -> Result<StoredEntry, Status> {
        let page = Page {
            after: seq.checked_sub(1),
            limit: 1,
        };
        self.state
            .ledger()
            .entries(&EntryFilter::default(), page)
            .await
            .map_err(ledger_status)?
            .entries
            .into_iter()
            .next()
            .filter(|e| e.seq == seq)
            .ok_or_else(|| {
                tracing::error!(seq, "committed entry not found");
                Status::data_loss(CORRUPT)
            })
    }

    /// Appends an officer's review and returns its receipt once it is durable.
    async fn record(
        &self,
        officer: &Officer<'_>,
        review: Review,
    ) -> Result<crate::ledger::Receipt, Status> {
        let entry = super::action_entry(&self.state, officer.0, Outcome::Review(review));
        self.state.ledger().append(entry).await.map_err(|e| {
            tracing::error!(error = %e, "review could not be recorded");
            Status::unavailable("the review could not be recorded in the ledger; nothing changed")
        })
    }
}

/// The full gRPC method name of `rpc`, as refusals record it.
fn method(rpc: &str) -> String {
    format!("credit.v1.LedgerReview/{rpc}")
}

const CORRUPT: &str =
    "the stored ledger is inconsistent; run `credit-node ledger verify` on this node";

/// One mapping from ledger errors to statuses. Arguments are validated before the ledger is
/// asked, so an out-of-range error here is a race with nothing worse to say than the error.
fn ledger_status(e: LedgerError) -> Status {
    match e {
        // Named, unlike other inconsistencies: the officer must know which entry's copies to
        // distrust, and nothing misattributed is shown.
        LedgerError::Misattributed { .. } => {
            tracing::error!(error = %e, "ledger listing refused: an entry's stored copies were changed");
            Status::data_loss(e.to_string())
        }
        LedgerError::Corrupt(_)
        | LedgerError::ForeignKey(_)
        | LedgerError::Proof(ProofError::MissingNode { .. }) => {
            tracing::error!(error = %e, "stored ledger is inconsistent");
            Status::data_loss(CORRUPT)
        }
        LedgerError::Empty => {
            Status::failed_precondition("the ledger is empty: nothing is signed yet")
        }
        LedgerError::BeyondLog { .. } | LedgerError::Proof(_) => {
            Status::invalid_argument(e.to_string())
        }
        LedgerError::Unavailable(_)
        | LedgerError::Closed
        | LedgerError::Database(_)
        | LedgerError::Store(_)
        | LedgerError::Settings(_) => {
            tracing::error!(error = %e, "ledger unavailable for review");
            Status::unavailable("the node's ledger is unavailable")
        }
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

/// A required free-text comment, trimmed and bounded.
fn comment(value: &str) -> Result<String, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid("comment", "required"));
    }
    if value.chars().count() > MAX_COMMENT {
        return Err(invalid(
            "comment",
            format!("at most {MAX_COMMENT} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// A SPIFFE ID given as an argument (the message quotes it only when it is short).
fn spiffe_id(field: &str, value: &str) -> Result<SpiffeId, Status> {
    if value.len() > MAX_FILTER {
        return Err(invalid(field, format!("longer than {MAX_FILTER} bytes")));
    }
    SpiffeId::parse(value).map_err(|e| invalid(field, e))
}

/// An optional exact-match text filter: empty means unset.
fn text_filter(field: &str, value: &str) -> Result<Option<String>, Status> {
    if value.len() > MAX_FILTER {
        return Err(invalid(field, format!("longer than {MAX_FILTER} bytes")));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn entry_filter(req: &proto::ListEntriesRequest) -> Result<EntryFilter, Status> {
    let caller = match req.caller.as_str() {
        "" => None,
        id => Some(spiffe_id("caller", id)?.to_string()),
    };
    let on_behalf_of = match req.on_behalf_of.as_str() {
        "" => None,
        id => Some(spiffe_id("on_behalf_of", id)?.to_string()),
    };
    let forwarded_to = match req.forwarded_to.as_str() {
        "" => None,
        id => Some(spiffe_id("forwarded_to", id)?.to_string()),
    };
    let outcome = proto::EntryOutcome::try_from(req.outcome)
        .map_err(|_| invalid("outcome", format!("unknown value {}", req.outcome)))?;
    if let (Some(from), Some(until)) = (req.from_ms, req.until_ms)
        && until <= from
    {
        return Err(invalid("until_ms", "must be after from_ms"));
    }
    Ok(EntryFilter {
        caller,
        on_behalf_of,
        forwarded_to,
        subject: text_filter("subject", &req.subject)?,
        purpose: text_filter("purpose", &req.purpose)?,
        outcome: convert::outcome_filter(outcome),
        from_ms: req.from_ms,
        until_ms: req.until_ms,
    })
}

fn page(req: &proto::ListEntriesRequest) -> Result<Page, Status> {
    let limit = match req.limit {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => return Err(invalid("limit", format!("at most {MAX_PAGE}"))),
        n => n,
    };
    if let Some(after) = req.after_seq
        && i64::try_from(after).is_err()
    {
        return Err(invalid("after_seq", "out of range"));
    }
    Ok(Page {
        after: req.after_seq,
        limit,
    })
}

fn no_entry(field: &str, seq: u64, size: u64) -> Status {
    invalid(field, format!("no entry {seq}; the log has {size} entries"))
}

#[tonic::async_trait]
impl LedgerReview for LedgerReviewApi {
    async fn list_entries(
        &self,
        request: Request<proto::ListEntriesRequest>,
    ) -> Result<Response<proto::ListEntriesResponse>, Status> {
        self.officer(&request, "ListEntries").await?;
        let req = request.get_ref();
        let filter = entry_filter(req)?;
        let page = self
            .state
            .ledger()
            .entries(&filter, page(req)?)
            .await
            .map_err(ledger_status)?;
        Ok(Response::new(proto::ListEntriesResponse {
            entries: page.entries.iter().map(convert::ledger_entry).collect(),
            next_after_seq: page.next_after,
        }))
    }

    async fn get_signed_tree_head(
        &self,
        request: Request<proto::GetSignedTreeHeadRequest>,
    ) -> Result<Response<proto::GetSignedTreeHeadResponse>, Status> {
        self.reader(&request, "GetSignedTreeHead").await?;
        // A head covering the log now, so a receipt just received can be proven at once;
        // `sign_now` signs only when the log grew, within the writer's group commit.
        let ledger = self.state.ledger();
        let sth = ledger.sign_now().await.map_err(ledger_status)?;
        Ok(Response::new(convert::signed_tree_head(
            &sth,
            ledger.public_key(),
        )))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::GetInclusionProofResponse>, Status> {
        let reader = self.reader(&request, "GetInclusionProof").await?;
        let req = request.get_ref();
        let size = self.size().await?;
        if req.seq >= size {
            return Err(no_entry("seq", req.seq, size));
        }
        let stored = self.entry(req.seq).await?;
        // A department's own entries include those a relay recorded on its behalf: the receipt
        // came back to it through its own node (`QueryResponse.upstream`).
        if let Reader::Peer(peer) = reader
            && stored.entry.caller != peer.spiffe_id.to_string()
            && stored.entry.on_behalf_of.as_deref() != Some(peer.spiffe_id.to_string().as_str())
        {
            tracing::warn!(caller = %peer.spiffe_id, "inclusion proof refused: another caller's entry");
            // Already admitted by `reader`: recorded without drawing on the rate limit again.
            let refusal =
                Status::permission_denied("seq: departments may only prove their own entries");
            return Err(super::record_refusal(
                &self.state,
                peer,
                &method("GetInclusionProof"),
                refusal,
            )
            .await);
        }
        if req.tree_size <= req.seq {
            return Err(invalid("tree_size", "must be larger than seq"));
        }
        if req.tree_size > size {
            return Err(invalid(
                "tree_size",
                format!("larger than the log ({size} entries)"),
            ));
        }
        let path = self
            .state
            .ledger()
            .inclusion_proof(req.seq, req.tree_size)
            .await
            .map_err(ledger_status)?;
        Ok(Response::new(proto::GetInclusionProofResponse {
            seq: req.seq,
            tree_size: req.tree_size,
            leaf_hash: stored.leaf_hash.to_vec(),
            audit_path: convert::hashes(&path),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::GetConsistencyProofResponse>, Status> {
        self.officer(&request, "GetConsistencyProof").await?;
        let req = request.get_ref();
        if req.first == 0 {
            return Err(invalid("first", "must be at least 1"));
        }
        if req.second < req.first {
            return Err(invalid("second", "must be at least first"));
        }
        let size = self.size().await?;
        if req.second > size {
            return Err(invalid(
                "second",
                format!("larger than the log ({size} entries)"),
            ));
        }
        let proof = self
            .state
            .ledger()
            .consistency_proof(req.first, req.second)
            .await
            .map_err(ledger_status)?;
        Ok(Response::new(proto::GetConsistencyProofResponse {
            first: req.first,
            second: req.second,
            proof: convert::hashes(&proof),
        }))
    }

    async fn record_review(
        &self,
        request: Request<proto::RecordReviewRequest>,
    ) -> Result<Response<proto::RecordReviewResponse>, Status> {
        let officer = self.officer(&request, "RecordReview").await?;
        let req = request.get_ref();
        let decision = proto::ReviewDecision::try_from(req.decision)
            .ok()
            .and_then(convert::review_decision_from)
            .ok_or_else(|| invalid("decision", "required: ACCEPTED, FLAGGED or REFERRED"))?;
        let comment = comment(&req.comment)?;
        if req.last_seq < req.first_seq {
            return Err(invalid("last_seq", "must be at least first_seq"));
        }
        let size = self.size().await?;
        if req.first_seq >= size {
            return Err(no_entry("first_seq", req.first_seq, size));
        }
        if req.last_seq >= size {
            return Err(no_entry("last_seq", req.last_seq, size));
        }
        let receipt = self
            .record(
                &officer,
                Review {
                    first_seq: req.first_seq,
                    last_seq: req.last_seq,
                    decision,
                    comment,
                },
            )
            .await?;
        // The comment is not logged: it may quote what the entries hold.
        tracing::info!(officer = %officer.0.spiffe_id, first_seq = req.first_seq,
            last_seq = req.last_seq, decision = decision.as_str(), seq = receipt.seq, "review recorded");
        Ok(Response::new(proto::RecordReviewResponse {
            receipt: Some(convert::ledger_receipt(&receipt)),
        }))
    }

    async fn list_suspensions(
        &self,
        request: Request<proto::ListSuspensionsRequest>,
    ) -> Result<Response<proto::ListSuspensionsResponse>, Status> {
        self.officer(&request, "ListSuspensions").await?;
        let suspensions = self.state.guard().suspensions().await.map_err(store_down)?;
        Ok(Response::new(proto::ListSuspensionsResponse {
            suspensions: suspensions.iter().map(convert::suspension).collect(),
        }))
    }

    async fn lift_suspension(
        &self,
        request: Request<proto::LiftSuspensionRequest>,
    ) -> Result<Response<proto::LiftSuspensionResponse>, Status> {
        let officer = self.officer(&request, "LiftSuspension").await?;
        let req = request.get_ref();
        let suspended = spiffe_id("caller", &req.caller)?.to_string();
        let comment = comment(&req.comment)?;
        let suspension = self
            .state
            .guard()
            .suspension(&suspended)
            .await
            .map_err(store_down)?
            .ok_or_else(|| Status::not_found("caller: not suspended"))?;
        // The officer reviewed one alert; a newer one, which nobody has reviewed, is not lifted
        // on the strength of that review.
        if let Some(reviewed) = req.alert_seq
            && reviewed != suspension.alert_seq
        {
            return Err(Status::failed_precondition(format!(
                "alert_seq: the caller's suspension now rests on alert entry {}, not {reviewed}; \
                 nothing was lifted or recorded: review the current alert first",
                suspension.alert_seq
            )));
        }
        // On record first: a suspension is never lifted without its review in the ledger.
        let receipt = self
            .record(
                &officer,
                Review {
                    first_seq: suspension.alert_seq,
                    last_seq: suspension.alert_seq,
                    decision: crate::ledger::entry::ReviewDecision::Accepted,
                    comment: format!("suspension of {suspended} lifted: {comment}"),
                },
            )
            .await?;
        // Only the suspension the review names: one that replaced it meanwhile (a newer alert)
        // has had no review and stays.
        let lifted = self
            .state
            .guard()
            .lift(&suspended, suspension.alert_seq)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, seq = receipt.seq, "review recorded but suspension not lifted");
                Status::unavailable(format!(
                    "the lifting is recorded as entry {} but the suspension could not be removed; \
                     try again",
                    receipt.seq
                ))
            })?;
        if !lifted {
            tracing::info!(officer = %officer.0.spiffe_id, caller = %suspended,
                alert_seq = suspension.alert_seq, seq = receipt.seq,
                "suspension already lifted or changed; nothing lifted");
            return Err(Status::not_found(format!(
                "caller: the suspension of alert entry {} is no longer in place (already lifted, \
                 or the caller was suspended again by a newer alert); the lifting is recorded \
                 as entry {} and lifted nothing: list the suspensions and review the current one",
                suspension.alert_seq, receipt.seq
            )));
        }
        tracing::info!(officer = %officer.0.spiffe_id, caller = %suspended,
            alert_seq = suspension.alert_seq, seq = receipt.seq, "suspension lifted");
        Ok(Response::new(proto::LiftSuspensionResponse {
            receipt: Some(convert::ledger_receipt(&receipt)),
            lifted: Some(convert::suspension(&suspension)),
        }))
    }
}

fn store_down(e: crate::harvest::QuotaError) -> Status {
    tracing::error!(error = %e, "suspension store unavailable");
    Status::unavailable("the node's store is unavailable; nothing changed")
}
