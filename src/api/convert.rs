//! Domain types to protobuf messages, in one place.

use crate::{
    catalog::SignedCatalog,
    identity::{Caller, Kind},
    policy::PurposeGrants,
    proto,
};

pub fn kind(kind: Kind) -> proto::PrincipalKind {
    match kind {
        Kind::Dept => proto::PrincipalKind::Dept,
        Kind::Officer => proto::PrincipalKind::Officer,
        Kind::Operator => proto::PrincipalKind::Operator,
    }
}

pub fn identity(caller: &Caller) -> proto::Identity {
    let id = &caller.spiffe_id;
    proto::Identity {
        spiffe_id: id.to_string(),
        trust_domain: id.trust_domain().to_string(),
        kind: kind(id.kind()).into(),
        id: id.id().to_owned(),
        certificate_serial: caller.serial.clone(),
        certificate_not_after: rfc3339(caller.not_after_unix),
        certificate_sha256: crate::tls::hex(&caller.fingerprint),
    }
}

/// RFC 3339 in UTC; an out-of-range timestamp (not producible by a valid certificate) is shown
/// as its raw number rather than failing the call.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub fn grants(
    catalog: &SignedCatalog,
    grants: Vec<PurposeGrants>,
) -> proto::DescribeGrantsResponse {
    let cat = catalog.catalog();
    proto::DescribeGrantsResponse {
        catalog_version: cat.version.clone(),
        catalog_sha256: catalog.digest_hex(),
        purposes: grants
            .into_iter()
            .map(|p| proto::PurposeGrants {
                purpose: p.purpose,
                items: p
                    .items
                    .into_iter()
                    .map(|i| proto::ItemGrants {
                        item_name: cat
                            .item(&i.item)
                            .map(|it| it.name.clone())
                            .unwrap_or_default(),
                        item: i.item,
                        fields: i
                            .fields
                            .into_iter()
                            .map(|f| proto::FieldGrant {
                                field: f.field,
                                form: f.form.to_string(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Bounds on a query's shape: a request bigger than this is malformed, not merely large.
const MAX_ITEMS: usize = 64;
const MAX_FIELDS: usize = 64;
/// Fields named in all items together. Every field asked for is recorded in the query's ledger
/// entry (and a batch's, once per subject), so this bounds what one request adds to the
/// ledger: without it, 64 items of 64 names of 200 bytes made an entry of 1.6 MB.
const MAX_SELECTED: usize = 256;
const MAX_TEXT: usize = 200;

/// The request's `subject_type`. prost keeps an enum field as its number and its getter reads
/// an unknown number as `Unspecified` ("tell by shape"), which would answer a client whose
/// type this node does not know as if it had named none: refused instead.
pub fn subject_type(value: i32) -> Result<proto::SubjectType, tonic::Status> {
    proto::SubjectType::try_from(value).map_err(|_| {
        tonic::Status::invalid_argument(format!(
            "subject_type: unknown value {value} (0 unspecified, 1 legal person, 2 natural \
             person)"
        ))
    })
}

/// Validates and canonicalises a query's subject; the message names the field and says what is
/// wrong (length, character, check character expected vs found).
pub fn subject(
    field: &str,
    value: &str,
    kind: proto::SubjectType,
    today: time::Date,
) -> Result<String, tonic::Status> {
    use crate::identifier::{ResidentId, Subject, Uscc};
    let parsed = match kind {
        proto::SubjectType::LegalPerson => Uscc::parse(value).map(|u| u.to_string()),
        proto::SubjectType::NaturalPerson => {
            ResidentId::parse_as_of(value, today).map(|r| r.to_string())
        }
        proto::SubjectType::Unspecified => Subject::parse(value).map(|s| s.to_string()),
    };
    parsed.map_err(|e| tonic::Status::invalid_argument(format!("{field}: {e}")))
}

/// Items, purpose and basis of a query, checked against the catalog in force.
pub fn selection(
    catalog: &SignedCatalog,
    items: &[proto::ItemSelection],
    purpose: &str,
    basis: &str,
) -> Result<(Vec<crate::policy::ItemRequest>, String, String), tonic::Status> {
    use tonic::Status;
    let cat = catalog.catalog();
    if purpose.is_empty() {
        return Err(Status::invalid_argument(
            "purpose: required (a purpose id of the catalog; see DescribeGrants)",
        ));
    }
    if !cat.has_purpose(purpose) {
        let shown: String = purpose.chars().take(64).collect();
        return Err(Status::invalid_argument(format!(
            "purpose: {shown:?} is not a purpose the catalog declares"
        )));
    }
    let basis = basis.trim();
    if basis.is_empty() {
        return Err(Status::invalid_argument(
            "basis_reference: required (the legal basis or case the query rests on)",
        ));
    }
    if basis.chars().count() > MAX_TEXT {
        return Err(Status::invalid_argument(format!(
            "basis_reference: longer than {MAX_TEXT} characters"
        )));
    }
    if items.len() > MAX_ITEMS {
        return Err(Status::invalid_argument(format!(
            "items: more than {MAX_ITEMS} items"
        )));
    }
    if items.iter().map(|i| i.fields.len()).sum::<usize>() > MAX_SELECTED {
        return Err(Status::invalid_argument(format!(
            "items: more than {MAX_SELECTED} fields in all"
        )));
    }
    let requests = if items.is_empty() {
        cat.items
            .iter()
            .map(|i| crate::policy::ItemRequest::all(&i.id))
            .collect()
    } else {
        let mut requests = Vec::with_capacity(items.len());
        for (i, sel) in items.iter().enumerate() {
            if sel.item.is_empty() || sel.item.len() > MAX_TEXT {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].item: required, at most {MAX_TEXT} bytes"
                )));
            }
            // One selection per item: the policy decides each selection and the answer joins
            // records to them by item, so a repeat returned every record once more and recorded
            // fields as granted that were never sent. Its fields belong in the first selection.
            if let Some(j) = items[..i].iter().position(|s| s.item == sel.item) {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].item: {:?} is already selected by items[{j}]; select an item \
                     once, with all the fields wanted",
                    sel.item
                )));
            }
            if sel.fields.len() > MAX_FIELDS {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].fields: more than {MAX_FIELDS} fields"
                )));
            }
            if let Some(j) = sel
                .fields
                .iter()
                .position(|f| f.is_empty() || f.len() > MAX_TEXT)
            {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].fields[{j}]: empty or too long"
                )));
            }
            requests.push(crate::policy::ItemRequest {
                item: sel.item.clone(),
                fields: sel.fields.clone(),
            });
        }
        requests
    };
    Ok((requests, purpose.to_owned(), basis.to_owned()))
}

pub fn query_result(
    subject: &str,
    answer: &crate::query::Answer,
    catalog: &SignedCatalog,
) -> proto::QueryResult {
    let withheld =
        |item: &str, field: &str, reason: crate::policy::Withheld| proto::WithheldField {
            item: item.to_owned(),
            field: field.to_owned(),
            reason: reason.as_str().to_owned(),
        };
    proto::QueryResult {
        subject: subject.to_owned(),
        records: answer
            .records
            .iter()
            .map(|r| proto::RecordView {
                item: r.item.clone(),
                record_id: r.record_id.to_string(),
                decision_date: r.decision_date.map(|d| d.to_string()).unwrap_or_default(),
                disclosure_end: r.disclosure_end.map(|d| d.to_string()).unwrap_or_default(),
                fields: r
                    .fields
                    .iter()
                    .map(|(field, value, form)| proto::FieldValue {
                        field: field.clone(),
                        value: value.clone(),
                        form: form.to_string(),
                    })
                    .collect(),
                withheld: r
                    .withheld
                    .iter()
                    .map(|(f, why)| withheld(&r.item, f, *why))
                    .collect(),
            })
            .collect(),
        withheld: answer
            .withheld
            .iter()
            .map(|(i, f, why)| withheld(i, f, *why))
            .collect(),
        catalog_version: catalog.catalog().version.clone(),
        catalog_sha256: catalog.digest_hex(),
    }
}

/// A withdrawal as its recipients are told of it: the record's public id, never its key.
pub fn withdrawal(
    w: &crate::records::Withdrawal,
    ids: &crate::records::RecordIds,
) -> proto::Withdrawal {
    use crate::records::WithdrawalReason;
    let reason = match w.reason {
        WithdrawalReason::Restored => proto::WithdrawalReason::Restored,
        WithdrawalReason::RemovedFromList => proto::WithdrawalReason::RemovedFromList,
    };
    proto::Withdrawal {
        record_id: ids.id_of(&w.key).to_string(),
        item: w.item.clone(),
        withdrawn_ms: w.withdrawn_ms,
        reason: reason.into(),
        on: w.on.to_string(),
    }
}

pub fn receipt(
    receipt: &crate::ledger::store::Receipt,
    result_sha256: &[u8; 32],
) -> proto::Receipt {
    proto::Receipt {
        sequence: receipt.seq,
        leaf_hash: receipt.leaf_hash.to_vec(),
        result_sha256: result_sha256.to_vec(),
        query_id: receipt.query_id.to_vec(),
    }
}

/// Another node's receipt as its ledger entry records it; `Err` names the part of a receipt
/// that is not the size a receipt's part has.
pub fn upstream_receipt_from(
    receipt: &proto::Receipt,
) -> Result<crate::ledger::entry::UpstreamReceipt, &'static str> {
    Ok(crate::ledger::entry::UpstreamReceipt {
        seq: receipt.sequence,
        leaf_hash: receipt
            .leaf_hash
            .as_slice()
            .try_into()
            .map_err(|_| "receipt.leaf_hash is not 32 bytes")?,
        result_sha256: receipt
            .result_sha256
            .as_slice()
            .try_into()
            .map_err(|_| "receipt.result_sha256 is not 32 bytes")?,
        query_id: receipt
            .query_id
            .as_slice()
            .try_into()
            .map_err(|_| "receipt.query_id is not 16 bytes")?,
    })
}

/// Where a request went and that node's receipt, as the caller receives them.
pub fn upstream(forwarded: &crate::ledger::entry::Forwarded) -> proto::Upstream {
    proto::Upstream {
        node: forwarded.node.clone(),
        receipt: forwarded.receipt.as_ref().map(upstream_receipt),
    }
}

/// A recorded receipt of another node, as that node sent it.
pub fn upstream_receipt(receipt: &crate::ledger::entry::UpstreamReceipt) -> proto::Receipt {
    proto::Receipt {
        sequence: receipt.seq,
        leaf_hash: receipt.leaf_hash.to_vec(),
        result_sha256: receipt.result_sha256.to_vec(),
        query_id: receipt.query_id.to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger review: ledger types to `credit.v1.LedgerReview` messages and back.

use crate::ledger::{
    OutcomeKind, StoredEntry,
    entry::{Decision, Outcome, ReviewDecision},
};

pub fn outcome_kind(kind: OutcomeKind) -> proto::EntryOutcome {
    match kind {
        OutcomeKind::Granted => proto::EntryOutcome::Granted,
        OutcomeKind::PartlyWithheld => proto::EntryOutcome::PartlyWithheld,
        OutcomeKind::Denied => proto::EntryOutcome::Denied,
        OutcomeKind::Throttled => proto::EntryOutcome::Throttled,
        OutcomeKind::Invalid => proto::EntryOutcome::Invalid,
        OutcomeKind::Review => proto::EntryOutcome::Review,
        OutcomeKind::Alert => proto::EntryOutcome::Alert,
        OutcomeKind::Administration => proto::EntryOutcome::Administration,
    }
}

/// An outcome filter: `None` for UNSPECIFIED (any outcome).
pub fn outcome_filter(outcome: proto::EntryOutcome) -> Option<OutcomeKind> {
    match outcome {
        proto::EntryOutcome::Unspecified => None,
        proto::EntryOutcome::Granted => Some(OutcomeKind::Granted),
        proto::EntryOutcome::PartlyWithheld => Some(OutcomeKind::PartlyWithheld),
        proto::EntryOutcome::Denied => Some(OutcomeKind::Denied),
        proto::EntryOutcome::Throttled => Some(OutcomeKind::Throttled),
        proto::EntryOutcome::Invalid => Some(OutcomeKind::Invalid),
        proto::EntryOutcome::Review => Some(OutcomeKind::Review),
        proto::EntryOutcome::Alert => Some(OutcomeKind::Alert),
        proto::EntryOutcome::Administration => Some(OutcomeKind::Administration),
    }
}

pub fn review_decision(decision: ReviewDecision) -> proto::ReviewDecision {
    match decision {
        ReviewDecision::Accepted => proto::ReviewDecision::Accepted,
        ReviewDecision::Flagged => proto::ReviewDecision::Flagged,
        ReviewDecision::Referred => proto::ReviewDecision::Referred,
    }
}

/// A requested decision; `None` for UNSPECIFIED, which the caller must refuse.
pub fn review_decision_from(decision: proto::ReviewDecision) -> Option<ReviewDecision> {
    match decision {
        proto::ReviewDecision::Unspecified => None,
        proto::ReviewDecision::Accepted => Some(ReviewDecision::Accepted),
        proto::ReviewDecision::Flagged => Some(ReviewDecision::Flagged),
        proto::ReviewDecision::Referred => Some(ReviewDecision::Referred),
    }
}

/// A stored entry, decoded, as the officer sees it (subjects in full: the officer's material).
pub fn ledger_entry(stored: &StoredEntry) -> proto::LedgerEntry {
    let e = &stored.entry;
    let mut out = proto::LedgerEntry {
        seq: stored.seq,
        time_ms: e.time_ms,
        query_id: e.query_id.to_vec(),
        caller: e.caller.clone(),
        caller_cert_sha256: e.caller_cert_sha256.to_vec(),
        on_behalf_of: e.on_behalf_of.clone(),
        purpose: e.purpose.clone(),
        basis: e.basis.clone(),
        subject: e.subject.clone(),
        requested_fields: e.requested_fields.clone(),
        decisions: e
            .decisions
            .iter()
            .map(|d| {
                let (decision, detail) = match &d.decision {
                    Decision::GrantedRaw => ("granted_raw", String::new()),
                    Decision::GrantedForm(form) => ("granted_form", form.clone()),
                    Decision::Withheld(reason) => ("withheld", reason.clone()),
                };
                proto::EntryFieldDecision {
                    field: d.field.clone(),
                    decision: decision.to_owned(),
                    detail,
                }
            })
            .collect(),
        outcome: outcome_kind(OutcomeKind::of(&e.outcome)).into(),
        response_sha256: e.response_sha256.to_vec(),
        leaf_hash: stored.leaf_hash.to_vec(),
        forwarded: e.forwarded.as_ref().map(upstream),
        ..Default::default()
    };
    match &e.outcome {
        Outcome::Granted | Outcome::PartlyWithheld => {}
        Outcome::Denied { reason } | Outcome::Invalid { reason } | Outcome::Alert { reason } => {
            out.reason = reason.clone();
        }
        Outcome::Throttled {
            count,
            window_start_ms,
        } => {
            out.throttled_count = *count;
            out.throttled_window_start_ms = *window_start_ms;
        }
        Outcome::Administration(a) => {
            out.administration_action = a.action.as_str().to_owned();
            out.reason = a.detail.clone();
        }
        Outcome::Review(r) => {
            out.review = Some(proto::Review {
                first_seq: r.first_seq,
                last_seq: r.last_seq,
                decision: review_decision(r.decision).into(),
                comment: r.comment.clone(),
            });
        }
    }
    out
}

pub fn ledger_receipt(receipt: &crate::ledger::store::Receipt) -> proto::LedgerReceipt {
    proto::LedgerReceipt {
        seq: receipt.seq,
        leaf_hash: receipt.leaf_hash.to_vec(),
        query_id: receipt.query_id.to_vec(),
    }
}

pub fn suspension(s: &crate::harvest::Suspension) -> proto::Suspension {
    proto::Suspension {
        caller: s.caller.clone(),
        since_ms: s.since_ms,
        alert_seq: s.alert_seq,
        reason: s.reason.clone(),
    }
}

pub fn signed_tree_head(
    sth: &crate::ledger::sth::SignedTreeHead,
    public_key: &[u8],
) -> proto::GetSignedTreeHeadResponse {
    proto::GetSignedTreeHeadResponse {
        tree_size: sth.head.tree_size,
        root_hash: sth.head.root_hash.to_vec(),
        timestamp_ms: sth.head.timestamp_ms,
        key_id: sth.key_id.to_vec(),
        signature: sth.signature.to_vec(),
        public_key: public_key.to_vec(),
    }
}

pub fn hashes(hashes: &[crate::ledger::merkle::Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.to_vec()).collect()
}
