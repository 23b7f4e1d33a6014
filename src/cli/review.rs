//! `credit-node ledger review | suspensions | lift`: an officer acting on a running node over
//! gRPC (`credit.v1.LedgerReview`) with its own certificate, so that what it does is recorded
//! in the node's ledger under its identity, exactly as a client in another language would.
//!
//! Unlike `ledger list/verify/export`, which read a node's database directly, these need the
//! node running: a decision is only real once the node's ledger writer has committed it.
//!
//! Exit codes: 2 when the node refuses the arguments (INVALID_ARGUMENT: a range that does not
//! exist, an empty comment) or the files cannot be used; 1 for every other failure, including
//! PERMISSION_DENIED for a caller that is not one of the node's officers.

use serde::Serialize;
use serde_json::json;
use tonic::transport::Channel;

use super::{
    CliError,
    connect::{Connect, refused},
};
use crate::{
    ledger::hex,
    proto::{self, ledger_review_client::LedgerReviewClient},
};

impl Connect {
    async fn client(&self) -> Result<LedgerReviewClient<Channel>, CliError> {
        Ok(LedgerReviewClient::new(self.channel().await?))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accepted,
    Flagged,
    Referred,
}

impl Decision {
    fn proto(self) -> proto::ReviewDecision {
        match self {
            Decision::Accepted => proto::ReviewDecision::Accepted,
            Decision::Flagged => proto::ReviewDecision::Flagged,
            Decision::Referred => proto::ReviewDecision::Referred,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Decision::Accepted => "accepted",
            Decision::Flagged => "flagged",
            Decision::Referred => "referred",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// The one entry reviewed.
    #[arg(long, required_unless_present = "from", conflicts_with_all = ["from", "to"])]
    pub seq: Option<u64>,
    /// First entry of the reviewed range (inclusive); needs --to.
    #[arg(long, requires = "to")]
    pub from: Option<u64>,
    /// Last entry of the reviewed range (inclusive); needs --from.
    #[arg(long, requires = "from")]
    pub to: Option<u64>,
    /// The decision: accepted (the entries are in order), flagged (something needs
    /// attention) or referred (passed on, e.g. to a supervisory authority).
    #[arg(long, value_enum)]
    pub decision: Decision,
    /// Why (required, at most 1000 characters). It stays in the ledger for good.
    #[arg(long)]
    pub comment: String,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SuspensionsArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// JSON Lines, one suspension per line, instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct LiftArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// The suspended caller's SPIFFE ID.
    #[arg(long)]
    pub caller: String,
    /// Why the suspension is lifted (required). Recorded in the ledger.
    #[arg(long)]
    pub comment: String,
    /// The alert entry reviewed (`ledger suspensions` shows it): nothing is lifted if the
    /// caller has been suspended again by another alert since.
    #[arg(long)]
    pub alert_seq: Option<u64>,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the node recorded: the review entry's sequence number and leaf hash.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReviewReceipt {
    pub seq: u64,
    pub leaf_hash: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub decision: &'static str,
}

fn receipt_of(receipt: Option<proto::LedgerReceipt>) -> Result<proto::LedgerReceipt, CliError> {
    receipt.ok_or_else(|| CliError::Runtime("node answered without a receipt".into()))
}

/// Records a review of `first..=last` and returns the receipt.
pub async fn review(
    api: &mut LedgerReviewClient<Channel>,
    first: u64,
    last: u64,
    decision: Decision,
    comment: &str,
) -> Result<ReviewReceipt, CliError> {
    let response = api
        .record_review(proto::RecordReviewRequest {
            first_seq: first,
            last_seq: last,
            decision: decision.proto().into(),
            comment: comment.to_owned(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let receipt = receipt_of(response.receipt)?;
    Ok(ReviewReceipt {
        seq: receipt.seq,
        leaf_hash: hex::encode(&receipt.leaf_hash),
        first_seq: first,
        last_seq: last,
        decision: decision.as_str(),
    })
}

pub async fn run_review(args: ReviewArgs) -> Result<(), CliError> {
    let (first, last) = match (args.seq, args.from, args.to) {
        (Some(seq), None, None) => (seq, seq),
        (None, Some(from), Some(to)) => (from, to),
        _ => return Err(CliError::Input("give --seq N, or --from N --to M".into())),
    };
    if args.comment.trim().is_empty() {
        return Err(CliError::Input("--comment: required".into()));
    }
    let mut api = args.connect.client().await?;
    let receipt = review(&mut api, first, last, args.decision, &args.comment).await?;
    if args.json {
        crate::outln!("{}", json_text(&receipt)?)?;
    } else {
        let range = if first == last {
            format!("entry {first}")
        } else {
            format!("entries {first}..={last}")
        };
        crate::outln!(
            "review recorded: {range} {}, as ledger entry {} (leaf hash {})",
            receipt.decision,
            receipt.seq,
            receipt.leaf_hash
        )?;
    }
    Ok(())
}

pub async fn run_suspensions(args: SuspensionsArgs) -> Result<(), CliError> {
    let mut api = args.connect.client().await?;
    let suspensions = api
        .list_suspensions(proto::ListSuspensionsRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .suspensions;
    if args.json {
        for s in &suspensions {
            crate::outln!(
                "{}",
                json!({
                    "caller": s.caller,
                    "since_ms": s.since_ms,
                    "alert_seq": s.alert_seq,
                    "reason": s.reason,
                })
            )?;
        }
    } else if suspensions.is_empty() {
        crate::outln!("no caller is suspended")?;
    } else {
        crate::outln!(
            "{:<48}  {:<24}  {:>9}  REASON",
            "CALLER",
            "SINCE (UTC)",
            "ALERT SEQ"
        )?;
        for s in &suspensions {
            crate::outln!(
                "{:<48}  {:<24}  {:>9}  {}",
                s.caller,
                super::ledger::time_text(s.since_ms),
                s.alert_seq,
                s.reason
            )?;
        }
    }
    Ok(())
}

pub async fn run_lift(args: LiftArgs) -> Result<(), CliError> {
    if args.comment.trim().is_empty() {
        return Err(CliError::Input("--comment: required".into()));
    }
    let mut api = args.connect.client().await?;
    let response = api
        .lift_suspension(proto::LiftSuspensionRequest {
            caller: args.caller.clone(),
            comment: args.comment.clone(),
            alert_seq: args.alert_seq,
        })
        .await
        .map_err(refused)?
        .into_inner();
    let receipt = receipt_of(response.receipt)?;
    let alert_seq = response.lifted.map(|s| s.alert_seq).unwrap_or_default();
    let leaf_hash = hex::encode(&receipt.leaf_hash);
    if args.json {
        let out = json!({
            "caller": args.caller,
            "alert_seq": alert_seq,
            "seq": receipt.seq,
            "leaf_hash": leaf_hash,
        });
        crate::outln!("{out}")?;
    } else {
        crate::outln!(
            "suspension of {} (alert entry {alert_seq}) lifted, recorded as ledger entry {} (leaf hash {leaf_hash})",
            args.caller,
            receipt.seq
        )?;
    }
    Ok(())
}

fn json_text(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string(value).map_err(|e| CliError::Runtime(e.to_string()))
}
