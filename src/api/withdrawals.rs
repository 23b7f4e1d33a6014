//! `ListWithdrawals`: how a department learns that records it may have received are shared no
//! more (design.md section 7: after restoration the information is no longer shared with
//! departments). Promise 8 keeps a withdrawn record out of every answer from then on; this
//! tells those who received it before.
//!
//! A listing discloses record ids, so it is a query like any other: admitted by the rate limit
//! first (promise 7, in the handler), recorded in the ledger with the digest of the exact page
//! and sent only once that entry is durable (promise 5: UNAVAILABLE and nothing sent when the
//! ledger cannot be written). Default deny (promise 2): only the records of items the catalog
//! grants the caller, for some purpose, are read; a caller granted nothing reads nothing.
//!
//! A department that received another region's records through this node learns of their
//! withdrawal the same way ([`forward`]): this node asks that node for the department's
//! listing and passes on the withdrawals of items its own catalog grants the department too;
//! both record it.

use std::collections::BTreeSet;

use tonic::Status;

use super::{
    convert, forward,
    query::{self, Asker},
};
use crate::{
    identity::Caller,
    interconnect::Route,
    ledger::{
        entry::{self, Entry, Forwarded, UpstreamReceipt},
        hex,
    },
    policy, proto,
    records::{RecordId, Withdrawal},
    state::NodeState,
    store::withdrawals::After,
};

/// The purpose a listing is recorded under: it serves no purpose of the catalog, but every
/// purpose the caller holds a grant for.
pub const PURPOSE: &str = "withdrawal-notices";
/// The most withdrawals in one page, and the default: one page, one ledger entry.
const MAX_PAGE: u32 = 1000;
/// Leads every page token, so a later layout can be told from this one.
const TOKEN_V1: u8 = 1;

/// A request that passed validation.
pub struct Asked {
    since_ms: i64,
    after: Option<After>,
    limit: u32,
    /// The items a relay asks for (those its own catalog grants the caller it acts for): no
    /// others are listed, whatever this node's catalog grants.
    only: Option<BTreeSet<String>>,
}

/// The most withdrawals `req` asks for in its page; the error names `limit`.
pub fn page_limit(req: &proto::ListWithdrawalsRequest) -> Result<u32, Status> {
    match req.limit {
        0 => Ok(MAX_PAGE),
        n if n > MAX_PAGE => Err(Status::invalid_argument(format!(
            "limit: at most {MAX_PAGE} (0 means {MAX_PAGE}), got {n}"
        ))),
        n => Ok(n),
    }
}

/// Request fields to a validated listing of this node's withdrawals, of `only` these items
/// when a relay names them; errors name the field.
pub fn validate(
    state: &NodeState,
    req: &proto::ListWithdrawalsRequest,
    only: Option<&[String]>,
) -> Result<Asked, Status> {
    let limit = page_limit(req)?;
    let after = if req.page_token.is_empty() {
        None
    } else {
        let (withdrawn_ms, id) = parse_token(&req.page_token).ok_or_else(|| {
            Status::invalid_argument(
                "page_token: not a token this node gave; pass next_page_token back unchanged",
            )
        })?;
        Some(After {
            withdrawn_ms,
            key_prefix: state.record_ids().key_prefix(&id),
        })
    };
    Ok(Asked {
        since_ms: req.since_ms,
        after,
        limit,
        only: only.map(|items| items.iter().cloned().collect()),
    })
}

/// One page of withdrawals for `asker` (the caller, or the caller a relay acts for), returned
/// only once its ledger entry is durable. A caller suspended after an enumeration alert gets
/// none, as it gets no query answered (promise 7): a page discloses record ids, and an officer
/// has yet to look at what it did.
pub async fn answer(
    state: &NodeState,
    asker: Asker<'_>,
    asked: &Asked,
) -> Result<proto::ListWithdrawalsResponse, Status> {
    if let Some(status) = query::suspended(state, asker.principal()) {
        return Err(refuse_on_record(state, asker, None, status).await);
    }
    let mut granted = granted_items(state, asker.principal());
    if let Some(only) = &asked.only {
        granted.retain(|item| only.contains(item));
    }
    let items: Vec<&str> = granted.iter().map(String::as_str).collect();
    // One more than the page: whether another page follows.
    let mut found = state
        .store()
        .withdrawals(&items, asked.since_ms, asked.after, asked.limit + 1)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "store unavailable; withdrawals not listed");
            Status::unavailable("the node's store is unavailable; nothing was disclosed")
        })?;
    let more = found.len() > asked.limit as usize;
    found.truncate(asked.limit as usize);
    let next_page_token = match found.last() {
        Some(last) if more => token(last.withdrawn_ms, state.record_ids().id_of(&last.key)),
        _ => String::new(),
    };
    let response = proto::ListWithdrawalsResponse {
        withdrawals: found
            .iter()
            .map(|w: &Withdrawal| convert::withdrawal(w, state.record_ids()))
            .collect(),
        next_page_token,
        receipt: None,
        upstream: None,
    };
    sent_on_record(state, asker, response, None).await
}

/// The items of every grant `caller` holds under this node's catalog, for any purpose.
fn granted_items(state: &NodeState, caller: &crate::identity::SpiffeId) -> BTreeSet<String> {
    policy::effective_grants(&state.catalog(), caller)
        .into_iter()
        .flat_map(|p| p.items.into_iter().map(|i| i.item))
        .collect()
}

/// `req` forwarded to `route`'s node for `caller`: that node's page for the caller, of the
/// items this node's catalog grants the caller too, recorded here with where it came from and
/// that node's receipt. The forwarding node is a hop like any other (design.md section 4): the
/// caller must be of its own trust domain and not suspended here, and a refusal there, no
/// answer or a malformed one is recorded here as refused, nothing passed on.
pub async fn forward(
    state: &NodeState,
    caller: &Caller,
    route: &Route,
    req: proto::ListWithdrawalsRequest,
    limit: u32,
) -> Result<proto::ListWithdrawalsResponse, Status> {
    let asker = Asker::direct(caller);
    if let Err(status) = forward::of_this_region(state, caller, route) {
        return Err(refuse_on_record(state, asker, None, status).await);
    }
    if let Some(status) = query::suspended(state, &caller.spiffe_id) {
        return Err(refuse_on_record(state, asker, None, status).await);
    }
    let granted = granted_items(state, &caller.spiffe_id);
    if granted.is_empty() {
        // Nothing this node could pass on: nothing is asked, and the empty page is recorded
        // as this node's own, as a caller granted nothing gets here.
        let empty = proto::ListWithdrawalsResponse::default();
        return sent_on_record(state, asker, empty, None).await;
    }
    let node = route.node();
    let listing = proto::ListWithdrawalsRequest {
        node: String::new(),
        ..req
    };
    // The other node lists only what this one may pass on: its page token, which names the
    // page's last withdrawal, then names one the caller receives anyway.
    let items = granted.iter().cloned().collect();
    let listed = route
        .relay_withdrawals(&caller.spiffe_id, listing, items)
        .await;
    // Kept even when the rest of the page is malformed: that node recorded the listing.
    let their_receipt = listed
        .as_ref()
        .ok()
        .and_then(|page| forward::well_formed(page.receipt.as_ref()));
    let listed = listed.and_then(|page| received(page, node, limit));
    state
        .interconnect()
        .counts()
        .forwarded(listed.as_ref().err(), 1);
    let (page, receipt) = match listed {
        Ok(received) => received,
        Err(status) => {
            let sent = forward::sent_to(node, their_receipt);
            return Err(refuse_on_record(state, asker, Some(sent), status).await);
        }
    };
    let response = proto::ListWithdrawalsResponse {
        // Kept to what was asked for, whatever the other node sent.
        withdrawals: page
            .withdrawals
            .into_iter()
            .filter(|w| granted.contains(&w.item))
            .collect(),
        next_page_token: page.next_page_token,
        receipt: None,
        upstream: None,
    };
    let sent = forward::sent_to(node, Some(receipt));
    let response = proto::ListWithdrawalsResponse {
        upstream: Some(convert::upstream(&sent)),
        ..response
    };
    sent_on_record(state, asker, response, Some(sent)).await
}

/// The other node's page, checked: with more than `limit` withdrawals, without a well-formed
/// receipt, with a record id, reason, date or time that is none, out of order, or with a page
/// token no node of ours gives, it is refused (UNAVAILABLE), not passed on.
fn received(
    page: proto::ListWithdrawalsResponse,
    node: &crate::identity::SpiffeId,
    limit: u32,
) -> Result<(proto::ListWithdrawalsResponse, UpstreamReceipt), Status> {
    let malformed = |what: &str| forward::malformed(node, what);
    let receipt = page
        .receipt
        .as_ref()
        .ok_or_else(|| malformed("no receipt"))?;
    let receipt = convert::upstream_receipt_from(receipt).map_err(malformed)?;
    if page.withdrawals.len() > limit as usize {
        return Err(malformed("more withdrawals than the limit"));
    }
    let mut last_ms = 0;
    for (i, w) in page.withdrawals.iter().enumerate() {
        if RecordId::parse(&w.record_id).is_none() {
            return Err(malformed(&format!("withdrawals[{i}].record_id")));
        }
        if proto::WithdrawalReason::try_from(w.reason)
            .map_or(true, |r| r == proto::WithdrawalReason::Unspecified)
        {
            return Err(malformed(&format!("withdrawals[{i}].reason")));
        }
        let date = time::format_description::well_known::Iso8601::DATE;
        if time::Date::parse(&w.on, &date).is_err() {
            return Err(malformed(&format!("withdrawals[{i}].on")));
        }
        if w.withdrawn_ms < last_ms {
            return Err(malformed(&format!("withdrawals[{i}].withdrawn_ms")));
        }
        last_ms = w.withdrawn_ms;
    }
    if !page.next_page_token.is_empty() && parse_token(&page.next_page_token).is_none() {
        return Err(malformed("next_page_token"));
    }
    Ok((page, receipt))
}

/// Records `response` (its digest, and where it came from if forwarded) and returns it with
/// its receipt, once durable.
async fn sent_on_record(
    state: &NodeState,
    asker: Asker<'_>,
    mut response: proto::ListWithdrawalsResponse,
    forwarded: Option<Forwarded>,
) -> Result<proto::ListWithdrawalsResponse, Status> {
    let digest = query::sha256(&prost::Message::encode_to_vec(&response));
    let mut entry = listing_entry(state, asker, entry::Outcome::Granted, digest);
    entry.forwarded = forwarded;
    let receipt = query::append(state, entry).await?;
    response.receipt = Some(convert::receipt(&receipt, &digest));
    Ok(response)
}

/// Records a refused listing (sent on to `forwarded`'s node, if it was) and returns `status`;
/// UNAVAILABLE instead if it cannot be recorded.
async fn refuse_on_record(
    state: &NodeState,
    asker: Asker<'_>,
    forwarded: Option<Forwarded>,
    status: Status,
) -> Status {
    let outcome = entry::Outcome::Denied {
        reason: status.message().chars().take(200).collect(),
    };
    let mut entry = listing_entry(state, asker, outcome, [0; 32]);
    entry.forwarded = forwarded;
    match query::append(state, entry).await {
        Ok(_) => status,
        Err(unavailable) => unavailable,
    }
}

/// The ledger entry of one listing: by the caller (and for whom, when a relay), about no
/// subject, with the digest of the page sent (zero for a refusal).
fn listing_entry(
    state: &NodeState,
    asker: Asker<'_>,
    outcome: entry::Outcome,
    response_sha256: [u8; 32],
) -> Entry {
    let caller = asker.caller;
    Entry {
        purpose: PURPOSE.to_owned(),
        requested_fields: vec!["withdrawals".to_owned()],
        response_sha256,
        on_behalf_of: asker.on_behalf_of.map(ToString::to_string),
        ..Entry::unanswered(
            caller.spiffe_id.to_string(),
            caller.fingerprint,
            state.clock().now_ms(),
            outcome,
        )
    }
}

/// Where the next page starts: the last withdrawal's time and its record id (never its key,
/// whose digest would give its basis number away, see [`RecordId`]).
fn token(withdrawn_ms: i64, id: RecordId) -> String {
    let mut head = [TOKEN_V1; 9];
    head[1..].copy_from_slice(&withdrawn_ms.to_be_bytes());
    format!("{}{id}", hex::encode(&head))
}

fn parse_token(text: &str) -> Option<(i64, RecordId)> {
    let (head, id) = (text.get(..18)?, text.get(18..)?);
    let head = hex::decode_array::<9>(head)?;
    let (&version, ms) = head.split_first()?;
    if version != TOKEN_V1 {
        return None;
    }
    let ms = i64::from_be_bytes(ms.try_into().ok()?);
    Some((ms, RecordId::parse(id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_anything_else_is_refused() {
        let id = RecordId::parse(&"0123456789abcdef".repeat(2)).unwrap();
        for ms in [0, 1, 1_795_000_000_000, i64::MAX, -1] {
            assert_eq!(parse_token(&token(ms, id)), Some((ms, id)));
        }
        let good = token(42, id);
        assert_eq!(good.len(), 50);
        for bad in [
            "",
            "01",
            &good[..49],
            &format!("{good}0"),
            &format!("02{}", &good[2..]),
            &good.replace('a', "g"),
            "ｘ".repeat(20).as_str(),
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }
}
