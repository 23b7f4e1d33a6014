//! The single writer task: group commit of appends, Merkle nodes and signed tree heads.
//!
//! Why one task: the log is a sequence, so appends must be ordered somewhere; doing it in one
//! task means no lock on the hot path — appenders only send on a channel and await a oneshot.
//! Why batches: a durable commit costs an fsync (milliseconds); taking everything queued (up
//! to `max_batch`) into one transaction makes that cost shared, which is where the throughput
//! comes from (promise 5 forbids getting it from weaker durability settings).
//!
//! Replicas: several nodes may write one PostgreSQL database. Each transaction first locks the
//! head row (`UPDATE ledger_head SET size = size ... RETURNING`), which serialises writers
//! across replicas, and reads the committed size: when it differs from this writer's frontier,
//! another replica appended, and the frontier is reloaded from stored nodes. Tree-head state
//! (size and time of the last one) comes from the same row, so two replicas never sign the same
//! size twice or go back in time. On PostgreSQL a plain batch first goes as one statement that
//! moves the head only if it is still as this writer left it, and writes nothing otherwise
//! ([`Writer::try_conditional`]): the same guarantees, one round trip instead of four, and the
//! locking transaction only when another replica moved the head in between.
//!
//! Failure: if any statement or the commit fails, every append of the batch gets an error (the
//! caller answers UNAVAILABLE), and the frontier is dropped so the next batch reloads it from
//! what is actually committed. No sequence number is reused for a committed entry, and none is
//! skipped: the next batch starts at the stored size.

use std::{sync::Arc, time::Instant};

use futures_util::TryStreamExt as _;
use ring::signature::Ed25519KeyPair;
use sqlx::{Any, AnyConnection, Row, any::AnyRow, pool::PoolConnection};
use tokio::sync::{mpsc, oneshot};

use super::{
    entry::Entry,
    merkle::{CompactRange, NewNode, leaf_hash},
    sth::{SignedTreeHead, TreeHead},
    store::{
        CHUNK, Clock, LedgerError, LedgerSettings, NextHead, OutcomeKind, Receipt, RefusalReason,
        Tally, Waits, fetch_nodes, sth_from_row, to_i64, to_u64,
    },
};
use crate::{
    harvest::{
        Charge, QuotaCharge,
        quota::{self, Presumed, Unflushed},
    },
    store::{AnyQuery, Engine, Placeholders, Store},
};

// Nearly every command is an `Append`: boxing its entry would add an allocation per append to
// make the two rare variants smaller.
#[allow(clippy::large_enum_variant)]
pub(super) enum Command {
    Append {
        entry: Entry,
        reply: oneshot::Sender<Result<Receipt, LedgerError>>,
        /// When the appender sent it, for [`Waits`].
        sent: Instant,
    },
    /// Appends `entries` if every one of `charges` fits its caller's quota, charged in the same
    /// transaction; their refusals if one does not.
    AppendCharged {
        charges: Vec<QuotaCharge>,
        entries: Vec<Entry>,
        reason: RefusalReason,
        reply: ChargedReply,
        sent: Instant,
    },
    SignNow {
        reply: oneshot::Sender<Result<SignedTreeHead, LedgerError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub(super) struct Writer {
    store: Store,
    key: Ed25519KeyPair,
    settings: LedgerSettings,
    clock: Clock,
    /// The committed tree as this writer last saw it; `None` forces a reload (after a failure).
    frontier: Option<CompactRange>,
    /// The head row as this writer last wrote or read it. On PostgreSQL it is what a batch's
    /// one statement expects to find ([`Writer::try_conditional`]): a guess that costs a
    /// fallback when wrong, never a wrong write, so it needs no care beyond matching
    /// `frontier`'s size.
    head: Option<Head>,
    /// The connection of the last successful batch, kept for the next: under load a writer that
    /// returned it had to queue for a free one behind every reader (measured: a third of a
    /// batch's time at concurrency 64), and on SQLite its page cache stays warm because no
    /// other connection writes the activity file. Not kept after a failure: one lost (broken,
    /// or silent past the store's [`crate::store::Deadline`]) is closed, detached from the
    /// pool; any other goes back to the pool, whose bounded release ping checks it.
    conn: Option<PoolConnection<Any>>,
    /// SQLite: subjects counted whose `quota_subjects` rows this writer has yet to write.
    unflushed: Option<Unflushed>,
    /// When the entries committed without a tree head must be signed, `sth_interval_ms` after
    /// the last one: without it a quiet node would leave the tail of its last busy moment
    /// unsigned until the next query, however long that takes. The timer's instant, and the
    /// time by the ledger's clock (which tests set) at which the interval is up.
    sign_at: Option<(tokio::time::Instant, i64)>,
    /// Timer signings failed in a row: the retry backs off, so an outage of an hour is not
    /// thousands of attempts and log lines.
    sign_failures: u32,
    /// The newest tree head this writer has seen (its size) and when, by this writer's clock,
    /// it first saw it: see [`Writer::signed_at`].
    head_seen: Option<(u64, i64)>,
    /// Shared with the [`super::store::Ledger`]: the writer stamps when each batch was durable.
    waits: Arc<Waits>,
    /// Shared with the [`super::store::Ledger`]: what each batch committed, for the metrics.
    tally: Arc<Tally>,
    /// Where `sign_at`'s due time is published for [`super::store::Ledger`].
    next_head: Arc<NextHead>,
}

/// A charged append while its batch is written: which entries went in is known only once the
/// charge has run inside the transaction.
struct Charged {
    charges: Vec<QuotaCharge>,
    entries: Vec<Entry>,
    reason: RefusalReason,
    /// Set by the transaction: the charges' outcomes and how many entries it appended.
    outcome: Option<(Vec<Charge>, usize)>,
}

type ChargedReply = oneshot::Sender<Result<(Vec<Charge>, Vec<Receipt>), LedgerError>>;

/// What one transaction produced.
struct Committed {
    receipts: Vec<Receipt>,
    sth: Option<SignedTreeHead>,
}

/// How one try at a batch's transaction ended, short of an error.
enum Attempt {
    Committed(Committed),
    /// The quota charge was presumed to fit and did not; nothing was committed.
    Unconfirmed,
    /// The connection kept from the last transaction failed at `BEGIN`. It skips the pool's
    /// health check, so one that died while the writer had nothing to do (the database
    /// restarted, its backend was ended) is found only here; nothing of the transaction was
    /// sent yet, so a fresh one takes over instead of the first batch after every outage
    /// failing.
    ConnectionLost,
}

/// Notes a kept connection found dead: at `BEGIN` ([`Attempt::ConnectionLost`]), or with a
/// one-statement batch sent ([`Quick::Unsure`]).
fn lost(error: &sqlx::Error) {
    tracing::info!(%error, "ledger: the kept database connection is lost; taking a fresh one");
}

/// Closes a connection found [`lost`] (or given up at its deadline, mid-exchange) instead of
/// putting it back: the pool's release ping would wait on a silent one, holding a pool slot
/// (bounded by the deadline, then a close that may still wait to flush what was unsent).
/// Dropped detached, its socket is closed at once and the pool may open another.
fn discard(conn: PoolConnection<Any>) {
    drop(conn.detach());
}

/// The head row, read under its lock.
#[derive(Clone, Copy)]
struct Head {
    size: u64,
    sth_size: u64,
    sth_timestamp_ms: i64,
}

impl Head {
    /// From a row of `size, sth_size, sth_timestamp_ms`, as every read of the head selects it.
    fn from_row(row: &AnyRow) -> Result<Head, LedgerError> {
        Ok(Head {
            size: to_u64(row.try_get::<i64, _>(0)?, "head size")?,
            sth_size: to_u64(row.try_get::<i64, _>(1)?, "head sth_size")?,
            sth_timestamp_ms: row.try_get::<i64, _>(2)?,
        })
    }
}

impl Writer {
    pub(super) fn new(
        store: Store,
        key: Ed25519KeyPair,
        settings: LedgerSettings,
        clock: Clock,
        (waits, tally): (Arc<Waits>, Arc<Tally>),
        next_head: Arc<NextHead>,
    ) -> Self {
        Self {
            key,
            settings,
            clock,
            frontier: None,
            head: None,
            conn: None,
            unflushed: (store.engine() == Engine::Sqlite).then(Unflushed::default),
            sign_at: None,
            sign_failures: 0,
            head_seen: None,
            waits,
            tally,
            next_head,
            store,
        }
    }

    /// Loads the frontier of the committed log (at open, so a damaged log stops the node),
    /// each round trip within the store's [`crate::store::Deadline`]: a database gone silent
    /// stops the start with an error rather than holding it forever.
    pub(super) async fn load(&mut self) -> Result<(), LedgerError> {
        let mut conn = self.store.pool().acquire().await?;
        let (head, frontier) = match committed(&mut conn, self.store.deadline()).await {
            Ok(loaded) => loaded,
            // Perhaps given up mid-exchange: not for the pool.
            Err(e) => {
                discard(conn);
                return Err(e);
            }
        };
        self.frontier = Some(frontier);
        self.head = Some(head);
        // A tail left unsigned by the last run (stopped without its final tree head) is signed
        // on time even if no entry ever follows.
        self.arm_sign_timer(head.size, head.sth_size, head.sth_timestamp_ms);
        Ok(())
    }

    /// Sets the tree-head timer for a log of `size` entries whose last head, signed at
    /// `sth_ms`, covers `sth_size`; clears it when nothing is unsigned.
    fn arm_sign_timer(&mut self, size: u64, sth_size: u64, sth_ms: i64) {
        let now = (self.clock)();
        let signed_at = self.signed_at(sth_size, sth_ms, now);
        self.sign_at = if sth_size < size {
            sign_timer(now, signed_at.saturating_add(self.interval_ms()))
        } else {
            None
        };
    }

    /// When, by this writer's clock, the tree head covering `sth_size` (dated `sth_ms`) counts
    /// as signed: its date, or the moment this writer first saw it if that is earlier. A head
    /// is dated by the clock of the replica that signed it, and heads never go back in time;
    /// so one replica whose clock ran a day ahead would otherwise hold every other replica's
    /// time-based signing back by a day, leaving a quiet node's tail unsigned.
    fn signed_at(&mut self, sth_size: u64, sth_ms: i64, now: i64) -> i64 {
        let seen = match self.head_seen {
            Some((size, at)) if size == sth_size => at,
            _ => {
                if sth_ms > now.saturating_add(SKEW_TOLERANCE_MS) {
                    tracing::warn!(
                        tree_size = sth_size,
                        ahead_ms = sth_ms - now,
                        "ledger: the latest tree head is dated ahead of this replica's clock; \
                         tree heads keep that date until the clocks agree"
                    );
                }
                self.head_seen = Some((sth_size, now));
                now
            }
        };
        sth_ms.min(seen)
    }

    /// The tree-head interval, in the ledger clock's milliseconds.
    fn interval_ms(&self) -> i64 {
        i64::try_from(self.settings.sth_interval_ms).unwrap_or(i64::MAX)
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut shutdown_waiters = Vec::new();
        loop {
            // Every change of the timer passes here before the writer waits again.
            self.next_head
                .publish(self.sign_at.map(|(_, due_ms)| due_ms));
            let flush_in = self.unflushed.as_ref().and_then(Unflushed::due_in);
            if flush_in == Some(std::time::Duration::ZERO) {
                self.flush().await;
                continue;
            }
            let sign_in = self
                .sign_at
                .map(|(at, _)| at.saturating_duration_since(tokio::time::Instant::now()));
            if sign_in == Some(std::time::Duration::ZERO) {
                self.sign_tail().await;
                continue;
            }
            let due = match (flush_in, sign_in) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let first = match due {
                Some(wait) => match tokio::time::timeout(wait, commands.recv()).await {
                    Ok(command) => command,
                    Err(_) => continue,
                },
                None => commands.recv().await,
            };
            let Some(first) = first else { break };
            // Let appenders woken by the previous commit enqueue before the batch is cut, so
            // they share this fsync instead of waiting for the next one.
            tokio::task::yield_now().await;
            let mut appends: Vec<(Entry, oneshot::Sender<Result<Receipt, LedgerError>>)> =
                Vec::new();
            let mut charged: Vec<(Charged, ChargedReply)> = Vec::new();
            let mut queued = 0;
            let mut signers = Vec::new();
            let mut sent_at = Vec::new();
            let mut next = Some(first);
            // Group commit: whatever is queued now, up to max_batch appends.
            while let Some(command) = next.take() {
                match command {
                    Command::Append { entry, reply, sent } => {
                        appends.push((entry, reply));
                        sent_at.push(sent);
                        queued += 1;
                    }
                    Command::AppendCharged {
                        charges,
                        entries,
                        reason,
                        reply,
                        sent,
                    } => {
                        sent_at.push(sent);
                        queued += entries.len();
                        let group = Charged {
                            charges,
                            entries,
                            reason,
                            outcome: None,
                        };
                        charged.push((group, reply));
                    }
                    Command::SignNow { reply } => signers.push(reply),
                    Command::Shutdown { reply } => {
                        // Refuse new sends; what is already queued is still received.
                        commands.close();
                        shutdown_waiters.push(reply);
                    }
                }
                if queued < self.settings.max_batch {
                    next = commands.try_recv().ok();
                }
            }
            if !signers.is_empty() {
                // A tree head asked for: everything charged so far is in the tables too.
                self.flush().await;
            }
            self.process(appends, charged, signers, sent_at).await;
        }
        self.flush().await;
        if !shutdown_waiters.is_empty() {
            match self.commit(&mut Vec::new(), &mut [], true).await {
                Ok(_) | Err(LedgerError::Empty) => {}
                Err(e) => tracing::warn!(error = %e, "ledger: final tree head at shutdown failed"),
            }
        }
        self.next_head
            .publish(self.sign_at.map(|(_, due_ms)| due_ms));
        for waiter in shutdown_waiters {
            let _ = waiter.send(());
        }
    }

    /// Signs the entries committed since the last tree head, their interval being up.
    async fn sign_tail(&mut self) {
        let Some((_, due_ms)) = self.sign_at.take() else {
            return;
        };
        let now = (self.clock)();
        if now < due_ms {
            // The ledger's clock is behind the timer's: wait for it.
            self.sign_at = sign_timer(now, due_ms);
            return;
        }
        // Not forced: the head row decides whether a head is due, so a replica whose timer was
        // set before another replica signed does not sign that one's fresh tail early.
        match self.commit(&mut Vec::new(), &mut [], false).await {
            Ok(_) | Err(LedgerError::Empty) => self.sign_failures = 0,
            Err(e) => {
                // 1 s, 2 s, 4 s ... up to about a minute.
                let retry_ms = 1000_i64 << self.sign_failures.min(6);
                self.sign_failures = self.sign_failures.saturating_add(1);
                tracing::warn!(error = %e, retry_ms,
                    "ledger: tree head of the unsigned tail failed; retrying");
                self.sign_at = sign_timer(now, now.saturating_add(retry_ms));
            }
        }
    }

    /// The connection for the next transaction: the one kept from the last (`true`), or one
    /// from the pool.
    async fn connection(&mut self) -> Result<(PoolConnection<Any>, bool), LedgerError> {
        match self.conn.take() {
            // A closed pool is a store shut down: no more writes, even on the kept connection.
            Some(conn) if !self.store.pool().is_closed() => Ok((conn, true)),
            _ => Ok((self.store.pool().acquire().await?, false)),
        }
    }

    /// Writes the rows of the subjects counted but not yet written ([`Unflushed`]), if any.
    async fn flush(&mut self) {
        let Some(mut unflushed) = self.unflushed.take() else {
            return;
        };
        if unflushed.due_in().is_some() {
            match self.write_unflushed(&unflushed).await {
                Ok(()) => unflushed.written(),
                Err(e) => {
                    tracing::warn!(error = %e, "quota: counted subjects not written yet; retrying");
                    unflushed.failed();
                }
            }
        }
        self.unflushed = Some(unflushed);
    }

    async fn write_unflushed(&mut self, unflushed: &Unflushed) -> Result<(), LedgerError> {
        let _turn = self.store.write_turn(crate::store::File::Activity).await;
        loop {
            let (mut conn, kept) = self.connection().await?;
            let mut tx = match sqlx::Acquire::begin(&mut *conn).await {
                Ok(tx) => tx,
                Err(e) if kept => {
                    lost(&e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            unflushed.write(&mut tx).await?;
            tx.commit().await?;
            self.conn = Some(conn);
            return Ok(());
        }
    }

    async fn process(
        &mut self,
        appends: Vec<(Entry, oneshot::Sender<Result<Receipt, LedgerError>>)>,
        charged: Vec<(Charged, ChargedReply)>,
        signers: Vec<oneshot::Sender<Result<SignedTreeHead, LedgerError>>>,
        sent_at: Vec<Instant>,
    ) {
        let (mut entries, replies): (Vec<Entry>, Vec<_>) = appends.into_iter().unzip();
        let (mut groups, group_replies): (Vec<Charged>, Vec<_>) = charged.into_iter().unzip();
        let force = !signers.is_empty();
        match self.commit(&mut entries, &mut groups, force).await {
            Ok(done) => {
                self.waits.durable(sent_at.into_iter(), Instant::now());
                self.tally.committed(&entries);
                let mut receipts = done.receipts.into_iter();
                for (reply, receipt) in replies.into_iter().zip(receipts.by_ref()) {
                    let _ = reply.send(Ok(receipt));
                }
                for (group, reply) in groups.iter_mut().zip(group_replies) {
                    let (charges, count) = group.outcome.take().unwrap_or_default();
                    let _ = reply.send(Ok((charges, receipts.by_ref().take(count).collect())));
                }
                for reply in signers {
                    let _ = reply.send(done.sth.clone().ok_or(LedgerError::Empty));
                }
            }
            // Only possible without appends: a sign request on an empty log.
            Err(LedgerError::Empty) if replies.is_empty() && group_replies.is_empty() => {
                for reply in signers {
                    let _ = reply.send(Err(LedgerError::Empty));
                }
            }
            Err(e) => {
                self.tally.failed();
                tracing::error!(error = %e, batch = replies.len() + group_replies.len(),
                    "ledger: batch not committed");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(LedgerError::Unavailable(message.clone())));
                }
                for reply in group_replies {
                    let _ = reply.send(Err(LedgerError::Unavailable(message.clone())));
                }
                for reply in signers {
                    let _ = reply.send(Err(LedgerError::Unavailable(message.clone())));
                }
            }
        }
    }

    /// One transaction: lock the head, charge the quota of each of `charged` and add its entries
    /// (or their refusals) after `entries`, append them all, sign if due (or `force`), commit.
    async fn commit(
        &mut self,
        entries: &mut Vec<Entry>,
        charged: &mut [Charged],
        force: bool,
    ) -> Result<Committed, LedgerError> {
        // The quota is charged presuming it fits, with the writes; when the rows that come back
        // do not confirm it, the batch is redone charging exactly.
        let mut presume = !charged.is_empty();
        let mut unsure = None;
        let result = 'done: {
            // Charges and forced tree heads need the locked head's answers before their writes.
            if charged.is_empty() && !force && !entries.is_empty() {
                match self.try_conditional(entries).await {
                    Ok(Quick::Committed(committed)) => break 'done Ok(committed),
                    Ok(Quick::Declined) => {}
                    Ok(Quick::Unsure(u)) => unsure = Some(u),
                    Err(e) => break 'done Err(e),
                }
            }
            loop {
                match self
                    .try_commit(entries, charged, force, presume, &mut unsure)
                    .await
                {
                    Ok(Attempt::Unconfirmed) => presume = false,
                    // The kept connection is gone; the next try takes one from the pool.
                    Ok(Attempt::ConnectionLost) => {}
                    Ok(Attempt::Committed(committed)) => break Ok(committed),
                    Err(e) => break Err(e),
                }
            }
        };
        if matches!(result, Err(ref e) if !matches!(e, LedgerError::Empty)) {
            // Whether or not the commit happened, reload from the store next time.
            self.frontier = None;
            // And should it have happened unsigned, see to its tree head.
            if self.sign_at.is_none() {
                let now = (self.clock)();
                self.sign_at = sign_timer(now, now.saturating_add(self.interval_ms()));
            }
        }
        result
    }

    /// Unless [`Attempt::Committed`], nothing was committed, and `entries` and `charged` are as
    /// they were. With `unsure`, a one-statement try of this batch ([`Writer::try_conditional`])
    /// lost its connection (PostgreSQL) or failed (SQLite) before its outcome was known: if it
    /// committed, its result is returned and nothing is written again, so no entry is in the
    /// log twice.
    ///
    /// The connection is kept for the next batch after an attempt that ended its transaction
    /// itself (committed, or rolled back to be redone); one [`lost`] goes ([`discard`]); after
    /// any other error it goes back to the pool, whose bounded release ping closes it if it
    /// no longer answers.
    async fn try_commit(
        &mut self,
        entries: &mut Vec<Entry>,
        charged: &mut [Charged],
        force: bool,
        presume: bool,
        unsure: &mut Option<Unsure>,
    ) -> Result<Attempt, LedgerError> {
        let _turn = self.store.write_turn(crate::store::File::Activity).await;
        let (mut conn, kept) = self.connection().await?;
        let attempt = self
            .attempt(&mut conn, kept, entries, charged, force, presume, unsure)
            .await;
        match &attempt {
            Ok(Attempt::Committed(_) | Attempt::Unconfirmed) => self.conn = Some(conn),
            Ok(Attempt::ConnectionLost) => discard(conn),
            Err(LedgerError::Database(e)) if crate::store::connection_lost(e) => discard(conn),
            Err(_) => {}
        }
        attempt
    }

    /// [`Writer::try_commit`]'s transaction on `conn`, every round trip within the store's
    /// [`crate::store::Deadline`].
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &mut self,
        conn: &mut AnyConnection,
        kept: bool,
        entries: &mut Vec<Entry>,
        charged: &mut [Charged],
        force: bool,
        presume: bool,
        unsure: &mut Option<Unsure>,
    ) -> Result<Attempt, LedgerError> {
        let deadline = self.store.deadline();
        let mut tx = match deadline.run(sqlx::Acquire::begin(&mut *conn)).await {
            Ok(tx) => tx,
            Err(e) if kept => {
                lost(&e);
                return Ok(Attempt::ConnectionLost);
            }
            Err(e) => return Err(e.into()),
        };
        // Lock first, then read: a write transaction from its first statement, so SQLite never
        // has to upgrade a read snapshot and PostgreSQL replicas queue on this row.
        let lock = sqlx::query::<Any>(
            "UPDATE ledger_head SET size = size WHERE id = 0 \
             RETURNING size, sth_size, sth_timestamp_ms",
        )
        .fetch_one(&mut *tx);
        let row = deadline.run(lock).await?;
        let head = Head::from_row(&row)?;
        // The head moved past where that try would have put its first entry: by that try, or
        // by another replica. The entry there tells which.
        let ours = match unsure.as_ref() {
            Some(u) if head.size > u.first => {
                let read =
                    sqlx::query::<Any>("SELECT leaf_hash FROM ledger_entries WHERE seq = $1")
                        .bind(to_i64(u.first)?)
                        .fetch_optional(&mut *tx);
                let stored = deadline
                    .run(read)
                    .await?
                    .map(|row| row.try_get::<Vec<u8>, _>(0))
                    .transpose()?;
                stored.as_deref() == Some(&u.leaf[..])
            }
            _ => false,
        };
        if ours && let Some(u) = unsure.take() {
            deadline.run(tx.rollback()).await?;
            // Whatever else followed it, the next batch reloads from the store.
            self.frontier = None;
            self.arm_sign_timer(head.size, head.sth_size, head.sth_timestamp_ms);
            return Ok(Attempt::Committed(u.committed));
        }
        let mut tree = match self.frontier.take() {
            Some(tree) if tree.size() == head.size => tree,
            _ => deadline.run(load_frontier(&mut tx, head.size)).await?,
        };
        let charges: Vec<&QuotaCharge> = charged.iter().flat_map(|c| &c.charges).collect();
        let presumed = presume
            .then(|| Presumed::new(&charges, self.unflushed.as_ref()))
            .flatten();
        let base = entries.len();
        // What to go back to if the presumed charge is not confirmed.
        let frontier = presumed.is_some().then(|| tree.clone());
        if presumed.is_some() {
            for c in charged.iter_mut() {
                c.outcome = Some((vec![Charge::Within; c.charges.len()], c.entries.len()));
                entries.append(&mut c.entries);
            }
        } else if !charged.is_empty() {
            // Under the head's lock, so replicas charge one at a time and always lock in the
            // same order (head, then usage rows).
            let sets: Vec<&[QuotaCharge]> = charged.iter().map(|c| &c.charges[..]).collect();
            let outcomes =
                quota::charge_sets(&mut tx, &sets, self.unflushed.as_ref(), deadline).await?;
            for (c, outcome) in charged.iter_mut().zip(outcomes) {
                if outcome.iter().any(|o| *o != Charge::Within) {
                    let reason = (c.reason)(&outcome);
                    for entry in &mut c.entries {
                        entry.refuse(reason.clone());
                    }
                }
                c.outcome = Some((outcome, c.entries.len()));
                entries.append(&mut c.entries);
            }
        }

        let Staged {
            receipts,
            rows,
            nodes,
        } = stage(&mut tree, entries);
        let size = tree.size();
        let due = self.due_head(&tree, &head, force);
        let due_now = due.is_some();
        let sth = if due.is_some() {
            due
        } else if force {
            // Nothing unsigned: the latest head already covers the log.
            let read = sqlx::query::<Any>(
                "SELECT tree_size, root_hash, timestamp_ms, key_id, signature FROM ledger_sths \
                 WHERE tree_size = $1",
            )
            .bind(to_i64(size)?)
            .fetch_optional(&mut *tx);
            let row = deadline.run(read).await?;
            match row {
                Some(row) => Some(sth_from_row(&row)?),
                None if size == 0 => {
                    self.frontier = Some(tree);
                    self.head = Some(head);
                    return Err(LedgerError::Empty);
                }
                None => {
                    return Err(LedgerError::Corrupt(format!(
                        "head says size {size} is signed but no tree head of that size is stored"
                    )));
                }
            }
        } else {
            None
        };
        let (sth_size, sth_ms) = match &sth {
            Some(s) => (s.head.tree_size, s.head.timestamp_ms),
            None => (head.sth_size, head.sth_timestamp_ms),
        };
        let writes = Writes {
            entries,
            rows: &rows,
            nodes: &nodes,
            sth: sth.as_ref().filter(|_| due_now),
            head: (!entries.is_empty() || due_now).then_some((size, sth_size, sth_ms)),
            presumed: presumed.as_ref(),
        };
        let returned = writes.run(&mut tx, deadline).await?;
        if let Some(presumed) = &presumed
            && !presumed.confirmed(&returned)?
        {
            deadline.run(tx.rollback()).await?;
            self.frontier = frontier;
            self.head = Some(head);
            let mut back = entries.split_off(base).into_iter();
            for c in charged.iter_mut() {
                let (_, count) = c.outcome.take().unwrap_or_default();
                c.entries = back.by_ref().take(count).collect();
            }
            return Ok(Attempt::Unconfirmed);
        }
        // Given up at the deadline, the commit's outcome is unknown: the batch fails (its
        // queries answer UNAVAILABLE, the safe side: an entry perhaps without its answer, never
        // an answer without its entry), and the next batch reloads the frontier from the
        // stored size, so no sequence number is used twice.
        deadline.run(tx.commit()).await?;
        if let Some(unflushed) = self.unflushed.as_mut() {
            match &presumed {
                Some(presumed) if presumed.deferred() => presumed.committed(unflushed),
                _ => {
                    for c in charged.iter().flat_map(|c| &c.charges) {
                        unflushed.forget_before(&c.caller, c.window);
                    }
                }
            }
        }
        self.settle(tree, size, sth_size, sth_ms);
        Ok(Attempt::Committed(Committed { receipts, sth }))
    }

    /// After a commit: the tree and the head row as this batch left them, what the next batch
    /// starts from (and, on PostgreSQL, expects to find).
    fn settle(&mut self, tree: CompactRange, size: u64, sth_size: u64, sth_ms: i64) {
        self.frontier = Some(tree);
        self.head = Some(Head {
            size,
            sth_size,
            sth_timestamp_ms: sth_ms,
        });
        // Another replica may sign first; then this writer's head finds nothing to sign.
        self.arm_sign_timer(size, sth_size, sth_ms);
    }

    /// The tree head to sign with `tree`, if one is due (or `force`d) after `head`'s.
    fn due_head(
        &mut self,
        tree: &CompactRange,
        head: &Head,
        force: bool,
    ) -> Option<SignedTreeHead> {
        let size = tree.size();
        let now = (self.clock)();
        let unsigned = size.saturating_sub(head.sth_size);
        let due = unsigned > 0
            && (force
                || unsigned >= self.settings.sth_every_entries
                || now.saturating_sub(self.signed_at(head.sth_size, head.sth_timestamp_ms, now))
                    >= self.interval_ms());
        due.then(|| {
            // Never back in time, even if this replica's clock is behind the last signer's.
            TreeHead {
                tree_size: size,
                root_hash: tree.root(),
                timestamp_ms: now.max(head.sth_timestamp_ms),
            }
            .sign(&self.key)
        })
    }

    /// A plain batch (no quota charge, no tree head asked for) in one round trip instead of
    /// four: `BEGIN`, the head lock, the writes and `COMMIT` each waited for a busy core (on
    /// PostgreSQL on both sides of the network, on SQLite for the connection's own thread), and
    /// every Query waits for its batch (promise 5; issue 5, BENCHMARKS.md). SQLite takes
    /// [`Writer::one_trip_sqlite`]; on PostgreSQL the batch is one statement in autocommit, its
    /// head update conditional on the head this writer last saw and every write gated on that
    /// update ([`conditional_sql`]).
    ///
    /// Why it is safe: one statement in autocommit is one transaction, so it commits whole or
    /// not at all, durably (`synchronous_commit` stays on). Where the head is not as expected
    /// (another replica appended or signed, the remembered state is older than the table), the
    /// update matches no row and the gated inserts write nothing; [`Quick::Declined`] then
    /// sends the batch through the locking transaction, which reads the head and reloads the
    /// frontier. Two replicas racing on the row: the second waits for the first's row lock,
    /// and PostgreSQL's READ COMMITTED re-check evaluates its `WHERE` against the row the
    /// first committed, which no longer matches if the first appended. The tree head, if one
    /// is due by the remembered head, is signed before the head is known: wrong only when the
    /// head moved, and then nothing of it is written.
    async fn try_conditional(&mut self, entries: &mut [Entry]) -> Result<Quick, LedgerError> {
        let (Some(tree), Some(head)) = (self.frontier.as_ref(), self.head) else {
            return Ok(Quick::Declined);
        };
        if tree.size() != head.size {
            return Ok(Quick::Declined);
        }
        // Kept as it was for the locking transaction, should this try write nothing.
        let mut tree = tree.clone();
        let Staged {
            receipts,
            rows,
            nodes,
        } = stage(&mut tree, entries);
        let Some(first) = rows.first().map(|(_, hash)| *hash) else {
            return Ok(Quick::Declined);
        };
        let size = tree.size();
        let sth = self.due_head(&tree, &head, false);
        let (sth_size, sth_ms) = match &sth {
            Some(s) => (s.head.tree_size, s.head.timestamp_ms),
            None => (head.sth_size, head.sth_timestamp_ms),
        };
        let writes = Writes {
            entries: &*entries,
            rows: &rows,
            nodes: &nodes,
            sth: sth.as_ref(),
            head: Some((size, sth_size, sth_ms)),
            presumed: None,
        };
        if self.store.engine() == Engine::Sqlite {
            let was = (head.size, head.sth_size, head.sth_timestamp_ms);
            let trip = self.one_trip_sqlite(&writes, was).await?;
            let committed = Committed { receipts, sth };
            return Ok(match trip {
                Trip::Committed => {
                    self.settle(tree, size, sth_size, sth_ms);
                    Quick::Committed(committed)
                }
                Trip::Refused => Quick::Declined,
                Trip::Failed => Quick::Unsure(Unsure {
                    first: head.size,
                    leaf: first,
                    committed,
                }),
            });
        }
        let mut statements = vec![Statement::HeadIf(
            (size, sth_size, sth_ms),
            (head.size, head.sth_size, head.sth_timestamp_ms),
        )];
        statements.extend(
            writes
                .statements()
                .into_iter()
                .filter(|s| !matches!(s, Statement::Head(..))),
        );
        if statements.iter().map(Statement::parameters).sum::<usize>() > PG_MAX_PARAMETERS {
            // Past the protocol's limit it would be more than one statement, so not atomic.
            return Ok(Quick::Declined);
        }
        let mut sql = String::new();
        conditional_sql(&statements, &mut sql, &mut Engine::Postgres.placeholders());
        let mut q = sqlx::query::<Any>(&sql);
        for statement in &statements {
            q = statement.bind(q)?;
        }
        let (mut conn, _) = self.connection().await?;
        // `fetch_all`, read to the end of the exchange: sqlx's `Any` driver answers `fetch_one`
        // at the first row, which PostgreSQL sends before the `Sync` that commits an autocommit
        // statement; only the end of the exchange says committed, and durably (promise 5).
        let moved = match self.store.deadline().run(q.fetch_all(&mut *conn)).await {
            Ok(rows) => match rows.first() {
                Some(row) => row.try_get::<i64, _>(0)?,
                None => 0,
            },
            Err(e) if crate::store::connection_lost(&e) => {
                // Sent, and perhaps committed before the connection went: a kept connection
                // that died while idle (the database restarted), or one that went silent and
                // was given up at its deadline, is found here, and the locking transaction on
                // a fresh one finds out which.
                lost(&e);
                discard(conn);
                return Ok(Quick::Unsure(Unsure {
                    first: head.size,
                    leaf: first,
                    committed: Committed { receipts, sth },
                }));
            }
            Err(e) => return Err(e.into()),
        };
        self.conn = Some(conn);
        self.tally.one_statement(moved == 1);
        if moved != 1 {
            return Ok(Quick::Declined);
        }
        self.settle(tree, size, sth_size, sth_ms);
        Ok(Quick::Committed(Committed { receipts, sth }))
    }
}

impl Writer {
    /// SQLite: `writes` (the head's update among them) as one script on the connection's
    /// thread, `BEGIN; <guard>; <writes>; COMMIT`, sent in one command: sqlx runs a script's
    /// statements one after another on that thread and stops at the first that fails. The
    /// guard ([`Statement::HeadWas`]) is the transaction's first statement and its first
    /// write, so it takes the activity file's write lock (only that file's: a deferred
    /// `BEGIN`, where `IMMEDIATE` would lock the records file too) before it reads the head,
    /// and fails the script, before anything is written, unless the head is still `was`, the
    /// head this writer last saw (another process, an ingest or a second node on the file, may
    /// have appended or signed since).
    ///
    /// The guard refused: [`Trip::Refused`], nothing written (the transaction is rolled
    /// back), and the locking transaction reloads the frontier. Any other failure, the
    /// `COMMIT`'s included, leaves it unknown whether the batch committed: [`Trip::Failed`],
    /// and the locking transaction looks for its first leaf hash before it writes anything.
    async fn one_trip_sqlite(
        &mut self,
        writes: &Writes<'_>,
        was: (u64, u64, i64),
    ) -> Result<Trip, LedgerError> {
        let mut statements = vec![Statement::HeadWas(was)];
        statements.extend(writes.statements());
        let mut sql = String::from("BEGIN;");
        sqlite_script(&statements, &mut sql);
        sql.push_str(";COMMIT");
        let q = bound(&sql, &statements)?;
        let _turn = self.store.write_turn(crate::store::File::Activity).await;
        let (mut conn, _) = self.connection().await?;
        // To the script's end: the `COMMIT` is its last statement.
        let ran = fetch_script(&mut conn, q, self.store.deadline()).await;
        match ran {
            Ok(_) => {
                self.conn = Some(conn);
                self.tally.one_statement(true);
                Ok(Trip::Committed)
            }
            Err(e) => {
                let refused = guard_refused(&e);
                // Ended here, not left for the next statement on this connection; a
                // connection that cannot end it is closed, which ends it as well.
                match sqlx::Executor::execute(&mut *conn, "ROLLBACK").await {
                    Ok(_) => self.conn = Some(conn),
                    Err(_) => discard(conn),
                }
                if refused {
                    self.tally.one_statement(false);
                    Ok(Trip::Refused)
                } else {
                    tracing::warn!(error = %e, "ledger: a one-trip batch failed; the locking \
                        transaction finds out whether it committed");
                    Ok(Trip::Failed)
                }
            }
        }
    }
}

/// SQLite: `statements` as one script (`;` between them), their placeholders anonymous and in
/// order, as [`bound`] binds them.
fn sqlite_script(statements: &[Statement<'_>], sql: &mut String) {
    let mut p = Engine::Sqlite.placeholders();
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            sql.push(';');
        }
        statement.sql(sql, &mut p);
    }
}

/// `sql` with every parameter of `statements` bound, in their order.
fn bound<'q>(sql: &'q str, statements: &'q [Statement<'_>]) -> Result<AnyQuery<'q>, LedgerError> {
    let mut q = sqlx::query::<Any>(sql);
    for statement in statements {
        q = statement.bind(q)?;
    }
    Ok(q)
}

/// SQLite: runs a script to its end, each step within `deadline`, and returns the rows its
/// statements returned (where `fetch_optional` would stop at the first row).
async fn fetch_script(
    conn: &mut AnyConnection,
    q: AnyQuery<'_>,
    deadline: crate::store::Deadline,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut returned = Vec::new();
    let mut results = sqlx::Executor::fetch_many(conn, q);
    while let Some(result) = deadline.run(results.try_next()).await? {
        if let sqlx::Either::Right(row) = result {
            returned.push(row);
        }
    }
    Ok(returned)
}

/// How [`Writer::one_trip_sqlite`] ended.
enum Trip {
    Committed,
    /// The head was not as remembered: nothing was written.
    Refused,
    /// It may or may not have committed.
    Failed,
}

/// Whether `error` is [`Statement::HeadWas`]'s refusal: the head row's key taken, which only
/// the guard's insert can meet (the head's own row is never inserted again otherwise).
fn guard_refused(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        matches!(e.kind(), sqlx::error::ErrorKind::UniqueViolation)
            && e.message().contains("ledger_head.id")
    })
}

/// How the one-statement try of a batch ([`Writer::try_conditional`]) ended, short of an error.
enum Quick {
    Committed(Committed),
    /// Not tried, or the head was not as remembered: nothing was written.
    Declined,
    /// The connection was lost with the statement sent (PostgreSQL), or the script failed
    /// (SQLite): it may have committed.
    Unsure(Unsure),
}

/// A one-statement try whose outcome is unknown ([`Quick::Unsure`]).
struct Unsure {
    /// Where its first entry would be.
    first: u64,
    /// That entry's leaf hash: found at `first`, the try committed (the leaf covers the
    /// entry's sequence number, time and query id, so no other append has it).
    leaf: [u8; 32],
    committed: Committed,
}

/// A batch's entries numbered and added to the tree ([`stage`]).
struct Staged {
    receipts: Vec<Receipt>,
    /// Each entry's encoding and leaf hash.
    rows: Vec<(Vec<u8>, [u8; 32])>,
    /// The Merkle nodes of level 1 and up they complete.
    nodes: Vec<NewNode>,
}

/// Numbers `entries` from `tree`'s size on and appends them to it.
fn stage(tree: &mut CompactRange, entries: &mut [Entry]) -> Staged {
    let mut receipts = Vec::with_capacity(entries.len());
    let mut rows = Vec::with_capacity(entries.len());
    let mut nodes: Vec<NewNode> = Vec::with_capacity(entries.len());
    for entry in entries.iter_mut() {
        let seq = tree.size();
        entry.seq = seq;
        let bytes = entry.encode();
        let hash = leaf_hash(&bytes);
        tree.push_with(hash, |node| {
            if node.level > 0 {
                nodes.push(node);
            }
        });
        receipts.push(Receipt {
            seq,
            leaf_hash: hash,
            query_id: entry.query_id,
        });
        rows.push((bytes, hash));
    }
    Staged {
        receipts,
        rows,
        nodes,
    }
}

/// How far ahead of this replica's clock a tree head may be dated before it is warned about.
const SKEW_TOLERANCE_MS: i64 = 1_000;

/// The writer's tree-head timer for `due_ms` by the ledger's clock, which now reads `now_ms`;
/// `None` when it is too far ahead to schedule (a tree head then comes with the next entries).
fn sign_timer(now_ms: i64, due_ms: i64) -> Option<(tokio::time::Instant, i64)> {
    let left = u64::try_from(due_ms.saturating_sub(now_ms)).unwrap_or(0);
    let at = tokio::time::Instant::now().checked_add(std::time::Duration::from_millis(left))?;
    Some((at, due_ms))
}

/// The committed log's head and frontier, each read within `deadline`.
async fn committed(
    conn: &mut AnyConnection,
    deadline: crate::store::Deadline,
) -> Result<(Head, CompactRange), LedgerError> {
    let read =
        sqlx::query::<Any>("SELECT size, sth_size, sth_timestamp_ms FROM ledger_head WHERE id = 0")
            .fetch_one(&mut *conn);
    let head = Head::from_row(&deadline.run(read).await?)?;
    let frontier = deadline.run(load_frontier(conn, head.size)).await?;
    Ok((head, frontier))
}

/// Rebuilds the frontier of a committed log of `size` entries from its stored nodes.
async fn load_frontier(conn: &mut AnyConnection, size: u64) -> Result<CompactRange, LedgerError> {
    let mut keys = Vec::new();
    CompactRange::from_nodes(size, |level, index| {
        keys.push((level, index));
        Some([0; 32])
    });
    let nodes = fetch_nodes(conn, &keys).await?;
    CompactRange::from_nodes(size, |level, index| nodes.get(&(level, index)).copied()).ok_or_else(
        || {
            LedgerError::Corrupt(format!(
                "a frontier node of the log of size {size} is missing"
            ))
        },
    )
}

/// A batch's writes: its entries, the Merkle nodes they complete, the tree head if one is due,
/// and the new head.
///
/// On SQLite they go as one statement string, bound in order: one round trip to the
/// connection's thread instead of four. Each round trip is two thread hand-offs, and at
/// concurrency 64 each waited about 0.3 ms for a core, most of a batch's time. PostgreSQL's
/// protocol takes one statement per message with parameters, so there the writes go as one
/// statement of data-modifying CTEs ([`combined_sql`]), the quota counts each on its own.
struct Writes<'a> {
    entries: &'a [Entry],
    rows: &'a [(Vec<u8>, [u8; 32])],
    nodes: &'a [NewNode],
    sth: Option<&'a SignedTreeHead>,
    /// (size, signed size, signed at ms), when the head moves.
    head: Option<(u64, u64, i64)>,
    /// Quota charges presumed to fit, counted with the writes.
    presumed: Option<&'a Presumed>,
}

enum Statement<'a> {
    /// One caller's subjects counted, returning the count and any suspension; deferred: their
    /// rows are written later ([`Unflushed`]).
    Count(&'a str, i64, &'a [String], bool),
    Entries(&'a [Entry], &'a [(Vec<u8>, [u8; 32])]),
    Nodes(&'a [NewNode]),
    Sth(&'a SignedTreeHead),
    Head(u64, u64, i64),
    /// The head moved to the first (size, signed size, signed at ms) if it is still the
    /// second, returning its row if so: the gate of [`conditional_sql`].
    HeadIf((u64, u64, i64), (u64, u64, i64)),
    /// SQLite: fails (the head row's key taken) unless the head is (size, signed size, signed
    /// at ms); writes nothing either way: the guard of [`Writer::one_trip_sqlite`].
    HeadWas((u64, u64, i64)),
}

impl<'a> Writes<'a> {
    /// Runs the writes; the rows they return (those of presumed charges) in order.
    async fn run(
        &self,
        conn: &mut AnyConnection,
        deadline: crate::store::Deadline,
    ) -> Result<Vec<AnyRow>, LedgerError> {
        let statements = self.statements();
        let engine = Engine::of(conn);
        let mut returned = Vec::new();
        match engine {
            Engine::Sqlite => {
                if statements.is_empty() {
                    return Ok(returned);
                }
                let mut sql = String::new();
                sqlite_script(&statements, &mut sql);
                returned = fetch_script(conn, bound(&sql, &statements)?, deadline).await?;
            }
            Engine::Postgres => {
                let (counts, writes): (Vec<_>, Vec<_>) = statements
                    .iter()
                    .partition(|s| matches!(s, Statement::Count(..)));
                // The counts return rows, and each is already a `WITH` of its own: one
                // statement each, as before.
                for statement in counts {
                    let mut sql = String::new();
                    statement.sql(&mut sql, &mut engine.placeholders());
                    let q = statement.bind(sqlx::query::<Any>(&sql))?;
                    returned.extend(deadline.run(q.fetch_all(&mut *conn)).await?);
                }
                for group in by_parameters(&writes, PG_MAX_PARAMETERS) {
                    let mut sql = String::new();
                    combined_sql(group, &mut sql, &mut engine.placeholders());
                    let mut q = sqlx::query::<Any>(&sql);
                    for statement in group {
                        q = statement.bind(q)?;
                    }
                    deadline.run(q.execute(&mut *conn)).await?;
                }
            }
        }
        Ok(returned)
    }

    fn statements(&self) -> Vec<Statement<'a>> {
        let mut out: Vec<Statement<'a>> = self
            .presumed
            .into_iter()
            .flat_map(|p| p.chunks())
            .map(|(caller, window, subjects)| {
                let deferred = self.presumed.is_some_and(Presumed::deferred);
                Statement::Count(caller, window, subjects, deferred)
            })
            .collect();
        out.extend(
            self.entries
                .chunks(CHUNK)
                .zip(self.rows.chunks(CHUNK))
                .map(|(entries, rows)| Statement::Entries(entries, rows)),
        );
        out.extend(self.nodes.chunks(CHUNK).map(Statement::Nodes));
        out.extend(self.sth.map(Statement::Sth));
        out.extend(
            self.head
                .map(|(size, sth_size, sth_ms)| Statement::Head(size, sth_size, sth_ms)),
        );
        out
    }
}

/// The most parameters PostgreSQL's protocol takes in one statement (a 16-bit count).
const PG_MAX_PARAMETERS: usize = u16::MAX as usize;

/// `statements` cut, in order, into runs of at most `max` parameters in all (a statement
/// with more on its own). A batch is not bounded by `max_batch` alone (a charged append's
/// entries come whole, and `max_batch` has no ceiling), so one combined statement could
/// otherwise pass the protocol's limit: 8,192 entries are 65,536 parameters.
fn by_parameters<'s, 'a>(
    statements: &'s [&'s Statement<'a>],
    max: usize,
) -> Vec<&'s [&'s Statement<'a>]> {
    let mut groups = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, statement) in statements.iter().enumerate() {
        let n = statement.parameters();
        if i > start && sum + n > max {
            groups.push(&statements[start..i]);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < statements.len() {
        groups.push(&statements[start..]);
    }
    groups
}

/// PostgreSQL: `statements` (none of them a `WITH` or returning rows) as one statement, every
/// one but the last a data-modifying CTE of the last: `WITH w0 AS (INSERT ...), w1 AS (...)
/// UPDATE ledger_head ...`. One round trip instead of one each, inside the transaction that
/// holds the head's lock; each of them waited for the node between statements (BENCHMARKS.md,
/// the fifth session of 2026-11-29), and every Query waits for its batch's commit (promise 5).
/// PostgreSQL runs each data-modifying CTE exactly once and to completion, whether or not the
/// last statement reads it, and one failing fails the whole statement, so the same rows are
/// written and any failure still fails the batch. The CTEs share one snapshot, which changes
/// nothing here: no statement of the batch reads what another writes (the head's row was
/// locked and read by an earlier statement).
fn combined_sql(statements: &[&Statement<'_>], sql: &mut String, p: &mut Placeholders) {
    use std::fmt::Write as _;
    let last = statements.len().saturating_sub(1);
    for (i, statement) in statements.iter().enumerate() {
        if i == last {
            if i > 0 {
                sql.push(' ');
            }
            statement.sql(sql, p);
        } else {
            let _ = write!(sql, "{} w{i} AS (", if i == 0 { "WITH" } else { "," });
            statement.sql(sql, p);
            sql.push(')');
        }
    }
}

/// PostgreSQL: a batch as one statement whose writes all depend on its head update, the first
/// of `statements` (a [`Statement::HeadIf`]; the rest inserts): `WITH h AS (UPDATE ledger_head
/// ... WHERE ... RETURNING id), w1 AS (INSERT ... SELECT * FROM (VALUES ...) AS v WHERE EXISTS
/// (SELECT 1 FROM h)), ... SELECT count(*) FROM h`, which returns 1 if it wrote, 0 if it wrote
/// nothing. The inserts read nothing but `h`'s returned row (the sub-statements share one
/// snapshot and cannot see each other's writes; what `RETURNING` passes is the one channel
/// between them), and `h` returns a row only once it has updated the head under the row's
/// lock. Each data-modifying CTE runs once and to completion, read or not, and one failing
/// fails the statement.
fn conditional_sql(statements: &[Statement<'_>], sql: &mut String, p: &mut Placeholders) {
    use std::fmt::Write as _;
    for (i, statement) in statements.iter().enumerate() {
        if i == 0 {
            sql.push_str("WITH h AS (");
        } else {
            let _ = write!(sql, ", w{i} AS (");
        }
        statement.sql_gated(sql, p, i > 0);
        sql.push(')');
    }
    sql.push_str(" SELECT count(*) FROM h");
}

impl<'a> Statement<'a> {
    /// How many parameters [`Statement::bind`] binds.
    fn parameters(&self) -> usize {
        match self {
            Statement::Count(_, _, subjects, true) => subjects.len() + 2,
            Statement::Count(_, _, subjects, false) => subjects.len() * 3 + 2,
            Statement::Entries(entries, _) => entries.len() * 8,
            Statement::Nodes(nodes) => nodes.len() * 3,
            Statement::Sth(_) => 5,
            Statement::Head(..) => 3,
            Statement::HeadIf(..) => 6,
            Statement::HeadWas(..) => 3,
        }
    }

    fn sql(&self, sql: &mut String, p: &mut Placeholders) {
        self.sql_gated(sql, p, false);
    }

    /// [`Statement::sql`]; an insert `gated` takes effect only if the head update `h` of
    /// [`conditional_sql`] returned its row.
    fn sql_gated(&self, sql: &mut String, p: &mut Placeholders, gated: bool) {
        let insert = |sql: &mut String, p: &mut Placeholders, into: &str, rows, columns| {
            sql.push_str(into);
            if gated {
                sql.push_str(" SELECT * FROM (VALUES ");
                p.tuples(sql, rows, columns);
                sql.push_str(") AS v WHERE EXISTS (SELECT 1 FROM h)");
            } else {
                sql.push_str(" VALUES ");
                p.tuples(sql, rows, columns);
            }
        };
        match self {
            Statement::Count(_, _, subjects, true) => {
                quota::deferred_count_sql(sql, p, subjects.len());
            }
            Statement::Count(_, _, subjects, false) => {
                quota::count_sql(sql, p, subjects.len(), true);
            }
            Statement::Entries(entries, _) => insert(
                sql,
                p,
                "INSERT INTO ledger_entries \
                 (seq, entry, leaf_hash, time_ms, caller, subject, purpose, outcome)",
                entries.len(),
                8,
            ),
            Statement::Nodes(nodes) => insert(
                sql,
                p,
                "INSERT INTO ledger_nodes (level, node_index, hash)",
                nodes.len(),
                3,
            ),
            Statement::Sth(_) => insert(
                sql,
                p,
                "INSERT INTO ledger_sths (tree_size, root_hash, timestamp_ms, key_id, signature)",
                1,
                5,
            ),
            Statement::Head(..) => {
                use std::fmt::Write as _;
                let _ = write!(
                    sql,
                    "UPDATE ledger_head SET size = {}, sth_size = {}, sth_timestamp_ms = {} \
                     WHERE id = 0",
                    p.next(),
                    p.next(),
                    p.next()
                );
            }
            Statement::HeadWas(..) => {
                use std::fmt::Write as _;
                let _ = write!(
                    sql,
                    "INSERT INTO ledger_head (id, size, sth_size, sth_timestamp_ms) \
                     SELECT 0, 0, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM ledger_head \
                     WHERE id = 0 AND size = {} AND sth_size = {} AND sth_timestamp_ms = {})",
                    p.next(),
                    p.next(),
                    p.next()
                );
            }
            Statement::HeadIf(..) => {
                use std::fmt::Write as _;
                let _ = write!(
                    sql,
                    "UPDATE ledger_head SET size = {}, sth_size = {}, sth_timestamp_ms = {} \
                     WHERE id = 0 AND size = {} AND sth_size = {} AND sth_timestamp_ms = {} \
                     RETURNING id",
                    p.next(),
                    p.next(),
                    p.next(),
                    p.next(),
                    p.next(),
                    p.next()
                );
            }
        }
    }

    fn bind<'q>(&self, mut q: AnyQuery<'q>) -> Result<AnyQuery<'q>, LedgerError>
    where
        'a: 'q,
    {
        match *self {
            Statement::Count(caller, window, subjects, true) => {
                q = quota::bind_deferred_count(q, caller, window, subjects);
            }
            Statement::Count(caller, window, subjects, false) => {
                q = quota::bind_count(q, caller, window, subjects);
            }
            Statement::Entries(entries, rows) => {
                for (entry, (bytes, hash)) in entries.iter().zip(rows) {
                    q = q
                        .bind(to_i64(entry.seq)?)
                        .bind(bytes.clone())
                        .bind(hash.to_vec())
                        .bind(entry.time_ms)
                        .bind(entry.caller.as_str())
                        .bind(entry.subject.as_str())
                        .bind(entry.purpose.as_str())
                        .bind(OutcomeKind::of(&entry.outcome).as_str());
                }
            }
            Statement::Nodes(nodes) => {
                for node in nodes {
                    q = q
                        .bind(i64::from(node.level))
                        .bind(to_i64(node.index)?)
                        .bind(node.hash.to_vec());
                }
            }
            Statement::Sth(sth) => {
                q = q
                    .bind(to_i64(sth.head.tree_size)?)
                    .bind(sth.head.root_hash.to_vec())
                    .bind(sth.head.timestamp_ms)
                    .bind(sth.key_id.to_vec())
                    .bind(sth.signature.to_vec());
            }
            Statement::Head(size, sth_size, sth_ms) => {
                q = q.bind(to_i64(size)?).bind(to_i64(sth_size)?).bind(sth_ms);
            }
            Statement::HeadWas((was, was_sth_size, was_sth_ms)) => {
                q = q
                    .bind(to_i64(was)?)
                    .bind(to_i64(was_sth_size)?)
                    .bind(was_sth_ms);
            }
            Statement::HeadIf((size, sth_size, sth_ms), (was, was_sth_size, was_sth_ms)) => {
                q = q
                    .bind(to_i64(size)?)
                    .bind(to_i64(sth_size)?)
                    .bind(sth_ms)
                    .bind(to_i64(was)?)
                    .bind(to_i64(was_sth_size)?)
                    .bind(was_sth_ms);
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_cut_into_statements_within_the_parameter_limit_in_order() {
        let heads: Vec<Statement<'_>> = (0..5).map(|i| Statement::Head(i, 0, 0)).collect();
        let refs: Vec<&Statement<'_>> = heads.iter().collect();
        let sizes =
            |max| -> Vec<usize> { by_parameters(&refs, max).iter().map(|g| g.len()).collect() };
        // Three parameters each.
        assert_eq!(sizes(65_535), [5]);
        assert_eq!(sizes(7), [2, 2, 1]);
        assert_eq!(sizes(6), [2, 2, 1]);
        // One statement past the limit goes alone rather than not at all.
        assert_eq!(sizes(2), [1, 1, 1, 1, 1]);
        assert!(by_parameters(&[], 10).is_empty());
    }

    #[test]
    fn the_writes_go_as_data_modifying_ctes_of_the_last_numbered_in_binding_order() {
        let statements = [Statement::Head(1, 0, 0), Statement::Head(2, 0, 0)];
        let refs: Vec<&Statement<'_>> = statements.iter().collect();
        let mut sql = String::new();
        combined_sql(&refs, &mut sql, &mut Engine::Postgres.placeholders());
        assert_eq!(
            sql,
            "WITH w0 AS (UPDATE ledger_head SET size = $1, sth_size = $2, sth_timestamp_ms = $3 \
             WHERE id = 0) UPDATE ledger_head SET size = $4, sth_size = $5, \
             sth_timestamp_ms = $6 WHERE id = 0"
        );
        let mut one = String::new();
        combined_sql(&refs[..1], &mut one, &mut Engine::Postgres.placeholders());
        assert!(one.starts_with("UPDATE ledger_head SET size = $1"), "{one}");
    }

    #[test]
    fn a_conditional_batch_gates_every_insert_on_the_head_update_first_in_binding_order() {
        let nodes = [
            NewNode {
                level: 1,
                index: 0,
                hash: [0; 32],
            },
            NewNode {
                level: 1,
                index: 1,
                hash: [1; 32],
            },
        ];
        let statements = [
            Statement::HeadIf((4, 0, 0), (2, 0, 0)),
            Statement::Nodes(&nodes),
        ];
        assert_eq!(
            statements.iter().map(Statement::parameters).sum::<usize>(),
            12
        );
        let mut sql = String::new();
        conditional_sql(&statements, &mut sql, &mut Engine::Postgres.placeholders());
        assert_eq!(
            sql,
            "WITH h AS (UPDATE ledger_head SET size = $1, sth_size = $2, sth_timestamp_ms = $3 \
             WHERE id = 0 AND size = $4 AND sth_size = $5 AND sth_timestamp_ms = $6 \
             RETURNING id), w1 AS (INSERT INTO ledger_nodes (level, node_index, hash) \
             SELECT * FROM (VALUES ($7,$8,$9),($10,$11,$12)) AS v \
             WHERE EXISTS (SELECT 1 FROM h)) SELECT count(*) FROM h"
        );
    }
}
