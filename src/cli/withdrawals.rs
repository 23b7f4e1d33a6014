//! `credit-node withdrawals`: a department asks a node which of the records it may have
//! received were withdrawn since (credit restoration, removal from a list), so that it can stop
//! using them, as design.md section 7 asks. It pages through `CreditQuery/ListWithdrawals` with
//! the department's own certificate; every page is a query on record in the node's ledger, and
//! each line says which entry recorded it.
//!
//! Exit codes: 2 when the node refuses the arguments (INVALID_ARGUMENT) or the files cannot be
//! used; 1 for every other failure (unreachable node, UNAVAILABLE, a refused certificate).

use serde_json::json;

use super::{
    CliError,
    connect::{Connect, refused},
};
use crate::proto::{self, credit_query_client::CreditQueryClient};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
    /// Only withdrawals the node recorded at or after this time (Unix milliseconds): pass the
    /// last `withdrawn_ms` seen to go on from an earlier run (that one is listed again).
    #[arg(long, default_value_t = 0)]
    pub since_ms: i64,
    /// The withdrawals of this node of another region (its SPIFFE ID), asked through the node
    /// at --endpoint, which passes on those of items its own catalog grants us too: for records
    /// received from that node through this one.
    #[arg(long)]
    pub from_node: Option<String>,
    /// JSON Lines, one withdrawal per line, instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    if args.since_ms < 0 {
        return Err(CliError::Input("--since-ms: must not be negative".into()));
    }
    let mut api = CreditQueryClient::new(args.connect.channel().await?);
    let (mut listed, mut entries) = (0u64, Vec::new());
    let mut page_token = String::new();
    loop {
        let page = api
            .list_withdrawals(proto::ListWithdrawalsRequest {
                since_ms: args.since_ms,
                page_token: std::mem::take(&mut page_token),
                limit: 0,
                node: args.from_node.clone().unwrap_or_default(),
            })
            .await
            .map_err(refused)?
            .into_inner();
        let entry = page
            .receipt
            .map(|r| r.sequence)
            .ok_or_else(|| CliError::Runtime("node answered without a receipt".into()))?;
        if !args.json && entries.is_empty() && !page.withdrawals.is_empty() {
            crate::outln!(
                "{:<24}  {:<17}  {:<10}  {:<22}  RECORD ID",
                "WITHDRAWN (UTC)",
                "REASON",
                "ON",
                "ITEM"
            )?;
        }
        entries.push(entry);
        for w in &page.withdrawals {
            listed += 1;
            let reason = reason_text(w.reason);
            if args.json {
                let line = json!({
                    "record_id": w.record_id,
                    "item": w.item,
                    "withdrawn_ms": w.withdrawn_ms,
                    "reason": reason,
                    "on": w.on,
                    "listed_in_entry": entry,
                });
                crate::outln!("{line}")?;
            } else {
                crate::outln!(
                    "{:<24}  {reason:<17}  {:<10}  {:<22}  {}",
                    super::ledger::time_text(w.withdrawn_ms),
                    w.on,
                    w.item,
                    w.record_id
                )?;
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if !args.json {
        let on_record = match entries.as_slice() {
            [one] => format!("ledger entry {one}"),
            many => format!(
                "ledger entries {} (one per page)",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let count = match listed {
            0 => "no withdrawal".to_owned(),
            1 => "1 withdrawal".to_owned(),
            n => format!("{n} withdrawals"),
        };
        crate::outln!("{count}; this listing is on record as {on_record}")?;
    }
    Ok(())
}

fn reason_text(reason: i32) -> &'static str {
    match proto::WithdrawalReason::try_from(reason) {
        Ok(proto::WithdrawalReason::Restored) => "restored",
        Ok(proto::WithdrawalReason::RemovedFromList) => "removed_from_list",
        _ => "unspecified",
    }
}
