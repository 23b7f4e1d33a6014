//! `Query` with `node` set: the query forwarded to the node of another region that holds the
//! records ([`crate::interconnect`]), and the answer narrowed to this node's own decision.
//!
//! This node is a hop like the other: it admits the caller (rate limit, suspension, quota of
//! distinct subjects), forwards only what its catalog grants, records the query in its own
//! ledger before anything is sent, and charges a new subject only with that entry. When the
//! other node cannot be reached or refuses, the refusal is recorded here too, and nothing is
//! charged: nothing was received. Every entry of a query sent on names the node it went to
//! and, when that node answered, its receipt ([`entry::Forwarded`]): an officer of either node
//! finds the other's record of the same query.

use tonic::Status;

use super::{
    convert,
    query::{self, Answered, Asked, Asker, Prepared},
};
use crate::{
    desensitize::{Form, Rule},
    identity::{Caller, SpiffeId},
    interconnect::Route,
    ledger::entry::{self, Forwarded, UpstreamReceipt},
    policy::{self, Decision, Outcome, Withheld},
    proto,
    query::{Relayed, narrow},
    records::RecordId,
    state::NodeState,
};

/// The other node a query's `node` names: `None` for this node, or no node named.
pub fn target(state: &NodeState, node: &str) -> Result<Option<SpiffeId>, Status> {
    if node.is_empty() {
        return Ok(None);
    }
    let id = SpiffeId::parse(node).map_err(|e| Status::invalid_argument(format!("node: {e}")))?;
    Ok((id != *state.node_id()).then_some(id))
}

/// The other node takes relays only for callers of the relay's own trust domain: anyone else
/// is refused here (PERMISSION_DENIED naming `node`), before anything is charged or sent.
pub fn of_this_region(state: &NodeState, caller: &Caller, route: &Route) -> Result<(), Status> {
    if caller.spiffe_id.trust_domain() == state.node_id().trust_domain() {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "node: this node forwards for its own trust domain's departments only; ask {} \
         directly, or through a node of {}",
        route.node(),
        caller.spiffe_id.trust_domain()
    )))
}

/// The route to `node`; INVALID_ARGUMENT naming `node` when there is none.
pub fn route<'s>(state: &'s NodeState, node: &SpiffeId) -> Result<&'s Route, Status> {
    state.interconnect().route(node).ok_or_else(|| {
        Status::invalid_argument(format!(
            "node: this node has no route to {node}; ask that node directly, or a node that has \
             one"
        ))
    })
}

/// Forwards `asked` (one query, or a batch's, which share one selection) to `route`'s node
/// for `caller` and answers with what both nodes grant, in the order asked.
///
/// A batch goes as one `RelayBatch`, which the other node admits, charges and answers whole,
/// as this node answers a `BatchQuery`: when it refuses (or its answer is malformed), every
/// subject's query is recorded here as refused, and the caller gets the refusal alone.
pub async fn forward_all(
    state: &NodeState,
    caller: &Caller,
    asked: &[Asked],
    subject_type: i32,
    route: &Route,
) -> Result<Vec<proto::QueryResponse>, Status> {
    let asker = Asker::direct(caller);
    if let Err(status) = of_this_region(state, caller, route) {
        return Err(refuse_all_on_record(state, asker, asked, |_| None, status).await);
    }
    let Some(first) = asked.first() else {
        return Ok(Vec::new());
    };
    let catalog = state.catalog();
    let decision = policy::decide(&catalog, &caller.spiffe_id, &first.purpose, &first.items);
    let key = state.pseudonym_key().recipient_key(&caller.spiffe_id);
    let items = granted_selection(&decision);
    let today = state.clock().today();
    if items.is_empty() {
        // Nothing granted here that another node could send: nothing is forwarded, and the
        // answer says why, as a query of this node's own records would.
        let prepared = asked
            .iter()
            .map(|a| {
                let answer = narrow(&decision, &[], &[], today, &key);
                prepare(state, asker, a, &answer, &catalog, None, false)
            })
            .collect();
        return query::commit(state, Vec::new(), prepared).await;
    }
    let pending = query::admission(state, asker, asked).await?;
    let relayed = relay(route, caller, asked, subject_type, items).await;
    let counts = state.interconnect().counts();
    let refused = relayed.as_ref().err().map(|n| &n.status);
    counts.forwarded(refused, u64::try_from(asked.len()).unwrap_or(u64::MAX));
    let node = route.node();
    let answered = match relayed {
        Ok(answered) => answered,
        Err(NotPassedOn { status, receipts }) => {
            let sent = |i: usize| Some(sent_to(node, receipts.get(i).copied().flatten()));
            return Err(refuse_all_on_record(state, asker, asked, sent, status).await);
        }
    };
    let receipts: Vec<UpstreamReceipt> = answered.iter().map(|(_, _, r)| *r).collect();
    let answered_there = |i: usize| Some(sent_to(node, receipts.get(i).copied()));
    let mut prepared = Vec::with_capacity(asked.len());
    for (a, (relayed, withheld, receipt)) in asked.iter().zip(answered) {
        // Enumeration shows here too (sequential identifiers); whether a subject is unknown
        // is the other node's to judge, so no miss is counted here.
        let now = state.clock().now_ms();
        let mut raised_suspension = false;
        if let Some(alert) = state
            .guard()
            .observe(&caller.spiffe_id, &a.subject, false, now)
        {
            raised_suspension = match query::raise_alert(state, asker, a, alert).await {
                Ok(raised) => raised,
                // The other node answered and recorded: so must this one, if only the refusal.
                Err(status) => {
                    return Err(
                        refuse_all_on_record(state, asker, asked, answered_there, status).await,
                    );
                }
            };
        }
        let answer = narrow(&decision, &relayed, &withheld, today, &key);
        prepared.push(prepare(
            state,
            asker,
            a,
            &answer,
            &catalog,
            Some(sent_to(node, Some(receipt))),
            raised_suspension,
        ));
    }
    query::commit(state, pending, prepared).await
}

/// The other node's answers to `asked`, in order, each checked ([`received`]): one `Relay` for
/// a single query, one `RelayBatch` for a batch, which that node admits, charges and answers
/// whole, as this node does a `BatchQuery`.
///
/// The two ledgers can still differ on a query, never by a disclosure without this node's
/// record: an answer that comes after the route's timeout, that is malformed or too large, or
/// that this node then cannot pass on (its own quota charge no longer fits at commit) is
/// recorded there as answered and here as refused, and the caller receives nothing. Where the
/// other node's receipt came (a malformed answer with a well-formed receipt; a batch's other
/// answers), the refusal here records it.
async fn relay(
    route: &Route,
    caller: &Caller,
    asked: &[Asked],
    subject_type: i32,
    items: Vec<proto::ItemSelection>,
) -> Result<Vec<Received>, NotPassedOn> {
    let node = route.node();
    let Some(first) = asked.first() else {
        return Ok(Vec::new());
    };
    if let [only] = asked {
        let request = proto::QueryRequest {
            subject: only.subject.clone(),
            subject_type,
            items,
            purpose: only.purpose.clone(),
            basis_reference: only.basis.clone(),
            node: String::new(),
        };
        let response = route.relay(&caller.spiffe_id, request).await?;
        let receipt = well_formed(response.receipt.as_ref());
        return match received(response, only, node) {
            Ok(answer) => Ok(vec![answer]),
            Err(status) => Err(NotPassedOn {
                status,
                receipts: vec![receipt],
            }),
        };
    }
    let batch = proto::BatchQueryRequest {
        subjects: asked.iter().map(|a| a.subject.clone()).collect(),
        subject_type,
        items,
        purpose: first.purpose.clone(),
        basis_reference: first.basis.clone(),
        node: String::new(),
    };
    let answers = route.relay_batch(&caller.spiffe_id, batch).await?.answers;
    if answers.len() != asked.len() {
        let what = format!("answers for {} subjects of {}", answers.len(), asked.len());
        return Err(malformed(node, &what).into());
    }
    let receipts = answers
        .iter()
        .map(|answer| well_formed(answer.receipt.as_ref()))
        .collect();
    answers
        .into_iter()
        .zip(asked)
        .map(|(answer, a)| received(answer, a, node))
        .collect::<Result<_, _>>()
        .map_err(|status| NotPassedOn { status, receipts })
}

/// Why the other node's answers are not passed on, and the receipts that came with them (by
/// index in `asked`; none where it sent none, or its answers cannot be told apart): that
/// node recorded those queries, and this node's refusals say where.
struct NotPassedOn {
    status: Status,
    receipts: Vec<Option<UpstreamReceipt>>,
}

impl From<Status> for NotPassedOn {
    fn from(status: Status) -> Self {
        Self {
            status,
            receipts: Vec::new(),
        }
    }
}

/// The receipt of another node's answer, if it is well-formed, whatever the rest of the
/// answer is.
pub(super) fn well_formed(receipt: Option<&proto::Receipt>) -> Option<UpstreamReceipt> {
    convert::upstream_receipt_from(receipt?).ok()
}

/// The refusal of another node's answer that is malformed (`what`), and its trace in the log.
pub(super) fn malformed(node: &SpiffeId, what: &str) -> Status {
    tracing::warn!(node = %node, what, "a node sent a malformed answer");
    Status::unavailable(format!(
        "node {node} sent a malformed answer ({what}); nothing was disclosed"
    ))
}

/// What an entry records of a request sent to `node`: that node's receipt, if it answered.
pub(super) fn sent_to(node: &SpiffeId, receipt: Option<UpstreamReceipt>) -> Forwarded {
    Forwarded {
        node: node.to_string(),
        receipt,
    }
}

/// One query's answer and entry, the entry not yet durable. When forwarded and answered there
/// (`forwarded`), the entry records the other node's receipt, and its digest covers the
/// result with that receipt as the caller receives it, so this node's record of the query
/// also binds the other's.
fn prepare(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
    answer: &crate::query::Answer,
    catalog: &crate::catalog::SignedCatalog,
    forwarded: Option<Forwarded>,
    raised_suspension: bool,
) -> Prepared {
    let result = convert::query_result(&asked.subject, answer, catalog);
    let upstream = forwarded.as_ref().map(convert::upstream);
    let (result, upstream, result_sha256) = match upstream {
        None => {
            let digest = query::sha256(&prost::Message::encode_to_vec(&result));
            (result, None, digest)
        }
        Some(upstream) => {
            let covered = proto::QueryResponse {
                result: Some(result),
                receipt: None,
                upstream: Some(upstream),
            };
            let digest = query::sha256(&prost::Message::encode_to_vec(&covered));
            (covered.result.unwrap_or_default(), covered.upstream, digest)
        }
    };
    let mut entry = query::answered_entry(state, asker, asked, answer, result_sha256);
    entry.forwarded = forwarded;
    Prepared {
        answer: Answered {
            result,
            result_sha256,
            upstream,
        },
        entry,
        raised_suspension,
    }
}

/// What to ask the other node for: the items and fields granted here, in a form that sends
/// something (a field granted only as `suppress` is not asked for). An item with no such field
/// is left out, never sent with an empty field list, which would mean all of its fields.
fn granted_selection(decision: &Decision<'_>) -> Vec<proto::ItemSelection> {
    decision
        .items()
        .iter()
        .filter(|item| item.refused().is_none())
        .filter_map(|item| {
            let fields: Vec<String> = item
                .fields()
                .iter()
                .filter(|f| match f.outcome() {
                    Outcome::Granted(Form::Rule(Rule::Suppress)) | Outcome::Withheld(_) => false,
                    Outcome::Granted(_) => true,
                })
                .map(|f| f.field().to_owned())
                .collect();
            (!fields.is_empty()).then(|| proto::ItemSelection {
                item: item.item().to_owned(),
                fields,
            })
        })
        .collect()
}

type Received = (
    Vec<Relayed>,
    Vec<(String, String, Withheld)>,
    UpstreamReceipt,
);

/// The other node's answer to `asked`, checked: an answer about another subject, without a
/// well-formed receipt, or with a malformed record is refused (UNAVAILABLE), not passed on.
fn received(
    response: proto::QueryResponse,
    asked: &Asked,
    node: &SpiffeId,
) -> Result<Received, Status> {
    let malformed = |what: &str| malformed(node, what);
    let receipt = response.receipt.ok_or_else(|| malformed("no receipt"))?;
    let receipt = convert::upstream_receipt_from(&receipt).map_err(malformed)?;
    let result = response.result.ok_or_else(|| malformed("no result"))?;
    if result.subject != asked.subject {
        return Err(malformed("result.subject is another subject"));
    }
    let date = |text: &str, what: &str| {
        if text.is_empty() {
            return Ok(None);
        }
        time::Date::parse(text, &time::format_description::well_known::Iso8601::DATE)
            .map(Some)
            .map_err(|_| malformed(what))
    };
    let mut relayed = Vec::with_capacity(result.records.len());
    for (i, r) in result.records.into_iter().enumerate() {
        let record_id = RecordId::parse(&r.record_id)
            .ok_or_else(|| malformed(&format!("records[{i}].record_id")))?;
        relayed.push(Relayed {
            record_id,
            decision_date: date(&r.decision_date, &format!("records[{i}].decision_date"))?,
            disclosure_end: date(&r.disclosure_end, &format!("records[{i}].disclosure_end"))?,
            fields: r
                .fields
                .into_iter()
                .map(|f| (f.field, f.value, f.form))
                .collect(),
            withheld: r
                .withheld
                .into_iter()
                .map(|w| (w.field, Withheld::from_other_node(&w.reason)))
                .collect(),
            item: r.item,
        });
    }
    let withheld = result
        .withheld
        .into_iter()
        .map(|w| (w.item, w.field, Withheld::from_other_node(&w.reason)))
        .collect();
    Ok((relayed, withheld, receipt))
}

/// Records queries that have no answer to pass on, each with where it was sent, if anywhere
/// (`forwarded` of its index in `asked`), and returns why (UNAVAILABLE instead if one of them
/// cannot be recorded).
async fn refuse_all_on_record(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &[Asked],
    forwarded: impl Fn(usize) -> Option<Forwarded>,
    status: Status,
) -> Status {
    let (code, message) = (status.code(), status.message().to_owned());
    let reason: String = message.chars().take(200).collect();
    let recorded = asked.iter().enumerate().map(|(i, a)| {
        let outcome = entry::Outcome::Denied {
            reason: reason.clone(),
        };
        let status = Status::new(code, message.clone());
        query::on_record(state, asker, a, outcome, forwarded(i), status)
    });
    let recorded = futures_util::future::join_all(recorded).await;
    // The refusal as the other node gave it (with its retry metadata), unless a record failed.
    let unrecorded = recorded
        .into_iter()
        .find(|r| r.code() == tonic::Code::Unavailable && code != tonic::Code::Unavailable);
    unrecorded.unwrap_or(status)
}
