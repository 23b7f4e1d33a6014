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

use std::collections::BTreeSet;

use tonic::Status;

use super::{convert, query};
use crate::{
    identity::Caller,
    ledger::{
        entry::{self, Entry},
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
}

/// Request fields to a validated listing; errors name the field.
pub fn validate(state: &NodeState, req: &proto::ListWithdrawalsRequest) -> Result<Asked, Status> {
    let limit = match req.limit {
        0 => MAX_PAGE,
        n if n > MAX_PAGE => {
            return Err(Status::invalid_argument(format!(
                "limit: at most {MAX_PAGE} (0 means {MAX_PAGE}), got {n}"
            )));
        }
        n => n,
    };
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
    })
}

/// One page of withdrawals, returned only once its ledger entry is durable. A caller suspended
/// after an enumeration alert gets none, as it gets no query answered (promise 7): a page
/// discloses record ids, and an officer has yet to look at what it did.
pub async fn answer(
    state: &NodeState,
    caller: &Caller,
    asked: &Asked,
) -> Result<proto::ListWithdrawalsResponse, Status> {
    if let Some(status) = query::suspended(state, &caller.spiffe_id) {
        let outcome = entry::Outcome::Denied {
            reason: status.message().chars().take(200).collect(),
        };
        query::append(state, listing_entry(state, caller, outcome, [0; 32])).await?;
        return Err(status);
    }
    let catalog = state.catalog();
    let granted: BTreeSet<String> = policy::effective_grants(&catalog, &caller.spiffe_id)
        .into_iter()
        .flat_map(|p| p.items.into_iter().map(|i| i.item))
        .collect();
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
    let mut response = proto::ListWithdrawalsResponse {
        withdrawals: found
            .iter()
            .map(|w: &Withdrawal| convert::withdrawal(w, state.record_ids()))
            .collect(),
        next_page_token,
        receipt: None,
    };
    let digest = query::sha256(&prost::Message::encode_to_vec(&response));
    let entry = listing_entry(state, caller, entry::Outcome::Granted, digest);
    let receipt = query::append(state, entry).await?;
    response.receipt = Some(convert::receipt(&receipt, &digest));
    Ok(response)
}

/// The ledger entry of one listing: by the caller, about no subject, with the digest of the page
/// sent (zero for a refusal).
fn listing_entry(
    state: &NodeState,
    caller: &Caller,
    outcome: entry::Outcome,
    response_sha256: [u8; 32],
) -> Entry {
    Entry {
        purpose: PURPOSE.to_owned(),
        requested_fields: vec!["withdrawals".to_owned()],
        response_sha256,
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
