//! The ledger over a [`Store`]: the [`Ledger`] handle the query path appends through, and the
//! read side (tree heads, proofs, filtered listings) that `credit-node ledger` and reviews use.
//!
//! This is the I/O edge of the ledger: it owns SQL and the async runtime, and calls into the
//! pure core (`merkle`, `entry`, `sth`) for every hash and signature. Proofs are computed by
//! the core's `inclusion_proof` / `consistency_proof` over a lookup of stored nodes; since which
//! nodes a proof needs depends only on the sizes, the lookup is done in two passes (record the
//! wanted nodes, fetch them in one query, compute), so the core stays synchronous.
//!
//! Promise 5 is kept by [`Ledger::append`] (see its contract); promise 6 by storing the
//! canonical bytes and checking them with [`super::audit::verify_store`].

use std::{
    cell::RefCell,
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Instant,
};

use ring::signature::{Ed25519KeyPair, KeyPair};
use sqlx::{Any, AnyConnection, Row, any::AnyRow};
use tokio::sync::{mpsc, oneshot};

pub use super::filter::{Column, EntryFilter, OutcomeKind};
use super::filter::{FilterFields, StoredColumns};
use super::{
    entry::Entry,
    lookup::{self, Field},
    merkle::{self, Hash, ProofError},
    sth::{SignedTreeHead, TreeHead},
    writer::{Command, Writer},
};
use crate::{
    harvest::{Charge, QuotaCharge},
    store::{Engine, Store, StoreError},
};

/// Rows per multi-row statement (and nodes per lookup query): keeps parameter counts far below
/// both engines' limits while amortising the statement cost.
pub(super) const CHUNK: usize = 256;

/// How often tree heads are signed and how large a group commit may grow (`[ledger]` in the
/// node's config).
#[derive(Clone, Copy, Debug)]
pub struct LedgerSettings {
    /// Sign a tree head once this many entries are unsigned ...
    pub sth_every_entries: u64,
    /// ... or once this many milliseconds have passed since the last one (checked at commits).
    pub sth_interval_ms: u64,
    /// Most appends committed in one transaction.
    pub max_batch: usize,
    /// How often the lookup by caller and subject catches up; 0: not in the background.
    pub lookup_every_ms: u64,
}

impl From<&crate::config::LedgerSection> for LedgerSettings {
    fn from(s: &crate::config::LedgerSection) -> Self {
        Self {
            sth_every_entries: s.sth_every_entries,
            sth_interval_ms: s.sth_interval_ms,
            max_batch: s.max_batch,
            lookup_every_ms: s.lookup_every_ms,
        }
    }
}

/// Unix milliseconds, injected so tests control tree-head timing.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Proof that an entry is durably in the log: returned to the caller with the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub leaf_hash: Hash,
    /// The entry's query id, so the caller can name its query to the officers.
    pub query_id: [u8; 16],
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The entry's batch was not committed (database gone, disk full, lock timeout ...). The
    /// caller must answer UNAVAILABLE and disclose nothing (promise 5, fail closed).
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The ledger was shut down; nothing more is accepted.
    #[error("ledger is shut down")]
    Closed,
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// What is stored contradicts itself (a missing node, a malformed hash): tampering or a bug.
    #[error("stored ledger is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Proof(#[from] ProofError),
    #[error("tree size {requested} is larger than the log ({size} entries)")]
    BeyondLog { requested: u64, size: u64 },
    #[error("the log is empty: there is nothing to sign")]
    Empty,
    #[error("invalid ledger settings: {0}")]
    Settings(&'static str),
    /// A listing read an entry whose stored copy of a field disagrees with the entry's own
    /// bytes: the ledger's tables were changed outside the node. The listing is refused whole.
    #[error(
        "entry {seq}: {copy} disagrees about `{column}` with the entry's own (signed) bytes: \
         the ledger's tables were changed outside the node, so nothing is listed; run \
         `credit-node ledger verify`"
    )]
    Misattributed {
        seq: u64,
        column: Column,
        copy: Copied,
    },
    /// The newest stored tree head does not verify with this node's key: another replica's
    /// key, a key replaced by mistake, or a forged head. Extending the log under another key
    /// would leave a ledger no single public key verifies.
    #[error(
        "the ledger's latest tree head does not verify with ledger.signing_key ({0}); \
         the node does not extend a log it cannot sign consistently"
    )]
    ForeignKey(String),
}

/// Which copy of an entry's field a listing found changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copied {
    /// Its column in `ledger_entries`.
    Column,
    /// The `ledger_lookup` row the listing selected it by.
    Lookup,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Copied::Column => "its stored column",
            Copied::Lookup => "the ledger_lookup row it was selected by",
        })
    }
}

impl LedgerError {
    /// Whether the caller should answer UNAVAILABLE (everything on the append path is).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LedgerError::Unavailable(_) | LedgerError::Closed | LedgerError::Database(_)
        )
    }
}

/// The ledger: cheap to clone (a channel sender and a pool handle), shared by every handler.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    commands: mpsc::Sender<Command>,
    public_key: Arc<[u8]>,
    waits: Arc<Waits>,
    tally: Arc<Tally>,
    next_head: Arc<NextHead>,
    /// The task keeping [`lookup`] up to date; stopped by [`Ledger::shutdown`].
    lookup: Arc<tokio::task::AbortHandle>,
}

/// How long appends waited for their durable commit, summed: what the ledger adds to a query's
/// latency (promise 5 makes every answer wait for it). A few relaxed atomic adds per append.
///
/// Two measures, because on a saturated machine they part: `durable_ns` runs from the send
/// until the writer task, back from COMMIT, is polled again (so it holds the writer task's own
/// waits for the runtime, at each of its round trips, as well as the database's work);
/// `total_ns` runs on until the appender is running again, adding the appender's own wait in
/// the runtime's queue of ready tasks, which any await of a busy handler pays, ledger or not.
#[derive(Default)]
pub(super) struct Waits {
    appends: AtomicU64,
    total_ns: AtomicU64,
    committed: AtomicU64,
    durable_ns: AtomicU64,
}

/// What the writer committed and failed to, for the node's metrics ([`crate::metrics`]): a
/// relaxed add per entry and per batch, in the writer task alone.
#[derive(Default)]
pub(super) struct Tally {
    /// By [`OutcomeKind`], in the order of [`OutcomeKind::ALL`].
    entries: [AtomicU64; OutcomeKind::ALL.len()],
    batches: AtomicU64,
    failed_batches: AtomicU64,
    one_statement: AtomicU64,
    head_moved: AtomicU64,
}

impl Tally {
    pub(super) fn committed(&self, entries: &[Entry]) {
        for entry in entries {
            let kind = OutcomeKind::of(&entry.outcome);
            self.entries[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch tried as one statement: committed so, or (`false`) the head had moved.
    pub(super) fn one_statement(&self, committed: bool) {
        let count = if committed {
            &self.one_statement
        } else {
            &self.head_moved
        };
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A reading of [`Ledger::tally`]: counts since this process opened the ledger (other
/// replicas count their own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerTally {
    /// Entries committed, by outcome.
    pub entries: Vec<(OutcomeKind, u64)>,
    /// Transactions committed (group commits).
    pub batches: u64,
    /// Batches whose commit failed: every query in them was answered UNAVAILABLE.
    pub failed_batches: u64,
    /// PostgreSQL: of `batches`, those committed in one statement, without a lock first.
    pub one_statement: u64,
    /// PostgreSQL: one-statement tries that found the head moved by another replica (or by
    /// this one, before a failure) and so wrote nothing; their batches went on in a locking
    /// transaction. Tells whether replicas contend enough to lose the one-statement path.
    pub head_moved: u64,
}

/// When the writer next signs the unsigned tail, by the ledger's clock, as it last published it
/// (`i64::MIN`: nothing unsigned, no timer). Read from outside the writer task, so that the
/// back-off after a refused signing can be seen, not just logged.
pub(super) struct NextHead(AtomicI64);

impl Default for NextHead {
    fn default() -> Self {
        Self(AtomicI64::new(i64::MIN))
    }
}

impl NextHead {
    pub(super) fn publish(&self, due_ms: Option<i64>) {
        self.0.store(due_ms.unwrap_or(i64::MIN), Ordering::Relaxed);
    }

    fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&ms| ms != i64::MIN)
    }
}

/// A reading of [`Ledger::append_waits`]; subtract two to get the appends between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendWaits {
    /// Calls of [`Ledger::append`] and [`Ledger::append_charged`] answered so far.
    pub appends: u64,
    /// Their waits, summed: from the send until the appender ran again with its answer.
    pub total: std::time::Duration,
    /// Appends committed so far (an append of a failed batch counts in `appends` only).
    pub committed: u64,
    /// Their waits, summed, from the send until the writer task, back from COMMIT, ran again.
    pub durable: std::time::Duration,
}

impl Waits {
    fn record(&self, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Appends sent at `sent` whose batch committed at `done`.
    pub(super) fn durable(&self, sent: impl ExactSizeIterator<Item = Instant>, done: Instant) {
        let count = sent.len() as u64;
        let ns: u128 = sent
            .map(|s| done.saturating_duration_since(s).as_nanos())
            .sum();
        self.committed.fetch_add(count, Ordering::Relaxed);
        self.durable_ns
            .fetch_add(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Ledger {
    /// Opens the ledger on a migrated store and starts its single writer task. Fails if the
    /// stored state cannot be loaded (a missing frontier node means a damaged log: better to
    /// refuse to start than to extend it).
    pub async fn open(
        store: Store,
        key: Ed25519KeyPair,
        settings: LedgerSettings,
        clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Result<Ledger, LedgerError> {
        if settings.max_batch == 0 {
            return Err(LedgerError::Settings("max_batch must be at least 1"));
        }
        if settings.sth_every_entries == 0 {
            return Err(LedgerError::Settings(
                "sth_every_entries must be at least 1",
            ));
        }
        let public_key: Arc<[u8]> = key.public_key().as_ref().into();
        let waits = Arc::new(Waits::default());
        let tally = Arc::new(Tally::default());
        let next_head = Arc::new(NextHead::default());
        let mut writer = Writer::new(
            store.clone(),
            key,
            settings,
            Arc::new(clock),
            (waits.clone(), tally.clone()),
            next_head.clone(),
        );
        writer.load().await?;
        if let Some(head) = latest_sth(&store).await? {
            head.verify(&public_key)
                .map_err(|e| LedgerError::ForeignKey(e.to_string()))?;
        }
        // Bounded: when the database stalls, appenders wait here rather than pile up memory.
        let (commands, rx) = mpsc::channel(settings.max_batch.saturating_mul(4).max(64));
        tokio::spawn(writer.run(rx));
        let every = std::time::Duration::from_millis(settings.lookup_every_ms);
        let lookup = tokio::spawn(lookup::run(store.clone(), every)).abort_handle();
        Ok(Ledger {
            store,
            commands,
            public_key,
            waits,
            tally,
            next_head,
            lookup: Arc::new(lookup),
        })
    }

    /// Appends `entry` (its `seq` is assigned here) and returns its receipt.
    ///
    /// Contract (promise 5): the future resolves `Ok` only after the transaction holding the
    /// entry — its row, the Merkle nodes it completes and any tree head due — is durably
    /// committed (SQLite WAL `synchronous=FULL`, PostgreSQL `synchronous_commit=on`). A
    /// response that discloses anything must wait for it. An `Err` means the entry is not known
    /// to be logged: answer UNAVAILABLE and disclose nothing. Concurrent appends are batched
    /// into one transaction by the writer task (group commit), so each pays one shared fsync.
    pub async fn append(&self, entry: Entry) -> Result<Receipt, LedgerError> {
        self.request(|reply, sent| Command::Append { entry, reply, sent })
            .await
    }

    /// Sends one command to the writer and waits for its answer, timing the wait.
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>, Instant) -> Command,
    ) -> Result<T, LedgerError> {
        let since = Instant::now();
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply, since))
            .await
            .map_err(|_| LedgerError::Closed)?;
        let answer = answer.await.map_err(|_| LedgerError::Closed)?;
        self.waits.record(since);
        answer
    }

    /// When, by the ledger's clock, the writer's timer next signs the entries no tree head
    /// covers yet; `None` when every entry is signed. After a refused signing this is the
    /// retry, backing off 1 s, 2 s, 4 s ... up to about a minute.
    pub fn next_tree_head_due_ms(&self) -> Option<i64> {
        self.next_head.get()
    }

    /// The appends answered so far and how long they waited for durability in all.
    pub fn append_waits(&self) -> AppendWaits {
        AppendWaits {
            appends: self.waits.appends.load(Ordering::Relaxed),
            total: std::time::Duration::from_nanos(self.waits.total_ns.load(Ordering::Relaxed)),
            committed: self.waits.committed.load(Ordering::Relaxed),
            durable: std::time::Duration::from_nanos(self.waits.durable_ns.load(Ordering::Relaxed)),
        }
    }

    /// What this process's writer has committed, and failed to, since the ledger opened.
    pub fn tally(&self) -> LedgerTally {
        LedgerTally {
            entries: OutcomeKind::ALL
                .iter()
                .map(|&kind| {
                    (
                        kind,
                        self.tally.entries[kind.index()].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            batches: self.tally.batches.load(Ordering::Relaxed),
            failed_batches: self.tally.failed_batches.load(Ordering::Relaxed),
            one_statement: self.tally.one_statement.load(Ordering::Relaxed),
            head_moved: self.tally.head_moved.load(Ordering::Relaxed),
        }
    }

    /// Appends `entries` if every one of `charges` still fits its caller's distinct-subject
    /// quota (and no such caller is suspended), charging them in the same transaction, or else
    /// their refusals ([`Entry::refuse`]) with the reason `reason` gives for the charges'
    /// outcomes; returns the outcomes, with the receipts of the entries appended.
    ///
    /// The charges are made in order, each all or nothing, and only as far as they go
    /// through ([`crate::harvest::quota::charge_sets`]): the outcomes end at the first that did not. One that
    /// went through stays counted when a later one does not (a relayed query refused by the
    /// relay's quota still counts against the caller it acted for): counting more than was
    /// disclosed only ever tightens a quota, and only that caller's.
    ///
    /// Why in the ledger's transaction: a first contact must both charge the quota and record
    /// the disclosure durably before anything is sent; one transaction makes that one fsync
    /// instead of two in series, and the charge and its record cannot part. Same contract as
    /// [`Ledger::append`] otherwise: an `Err` means disclose nothing.
    pub async fn append_charged(
        &self,
        charges: Vec<QuotaCharge>,
        entries: Vec<Entry>,
        reason: RefusalReason,
    ) -> Result<(Vec<Charge>, Vec<Receipt>), LedgerError> {
        self.request(|reply, sent| Command::AppendCharged {
            charges,
            entries,
            reason,
            reply,
            sent,
        })
        .await
    }

    /// Signs a tree head over everything committed so far (after whatever is queued now), or
    /// returns the latest one if it already covers the whole log.
    pub async fn sign_now(&self) -> Result<SignedTreeHead, LedgerError> {
        let (reply, sth) = oneshot::channel();
        self.commands
            .send(Command::SignNow { reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        sth.await.map_err(|_| LedgerError::Closed)?
    }

    /// Stops accepting appends, commits everything already queued, signs the tail, and returns
    /// when the writer has finished. Appends after this fail with [`LedgerError::Closed`].
    pub async fn shutdown(&self) {
        // Mid-round is fine: each of its transactions commits whole or not at all, rows beyond
        // `indexed` are harmless, and listings never depend on how far it got.
        self.lookup.abort();
        let (reply, done) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    /// The raw Ed25519 public key tree heads are signed with.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn latest_sth(&self) -> Result<Option<SignedTreeHead>, LedgerError> {
        latest_sth(&self.store).await
    }

    pub async fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        inclusion_proof(&self.store, seq, tree_size).await
    }

    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        consistency_proof(&self.store, first, second).await
    }

    pub async fn entries(
        &self,
        filter: &EntryFilter,
        page: Page,
    ) -> Result<EntryPage, LedgerError> {
        entries(&self.store, filter, page).await
    }
}

// ---------------------------------------------------------------------------------------------
// Read side, usable without a writer (the CLI reads a node's database this way).

/// Committed log size, from the head row.
pub async fn committed_size(store: &Store) -> Result<u64, LedgerError> {
    let read =
        sqlx::query::<Any>("SELECT size FROM ledger_head WHERE id = 0").fetch_one(store.pool());
    let row = store.deadline().run(read).await?;
    to_u64(row.try_get::<i64, _>(0)?, "head size")
}

/// The tree head with the largest size, if any was signed.
pub async fn latest_sth(store: &Store) -> Result<Option<SignedTreeHead>, LedgerError> {
    let read = sqlx::query::<Any>(
        "SELECT tree_size, root_hash, timestamp_ms, key_id, signature FROM ledger_sths \
         ORDER BY tree_size DESC LIMIT 1",
    )
    .fetch_optional(store.pool());
    let row = store.deadline().run(read).await?;
    row.as_ref().map(sth_from_row).transpose()
}

/// Every stored tree head, in issuance (= size) order.
pub async fn sths(store: &Store) -> Result<Vec<SignedTreeHead>, LedgerError> {
    let rows = sqlx::query::<Any>(
        "SELECT tree_size, root_hash, timestamp_ms, key_id, signature FROM ledger_sths \
         ORDER BY tree_size",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(sth_from_row).collect()
}

pub(super) fn sth_from_row(row: &AnyRow) -> Result<SignedTreeHead, LedgerError> {
    Ok(SignedTreeHead {
        head: TreeHead {
            tree_size: to_u64(row.try_get::<i64, _>("tree_size")?, "tree_size")?,
            root_hash: fixed(row.try_get::<Vec<u8>, _>("root_hash")?, "root_hash")?,
            timestamp_ms: row.try_get::<i64, _>("timestamp_ms")?,
        },
        key_id: fixed(row.try_get::<Vec<u8>, _>("key_id")?, "key_id")?,
        signature: fixed(row.try_get::<Vec<u8>, _>("signature")?, "signature")?,
    })
}

/// Audit path of entry `seq` in the tree of `tree_size` entries (RFC 9162 §2.1.3).
pub async fn inclusion_proof(
    store: &Store,
    seq: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let mut conn = store.pool().acquire().await?;
    // Two round trips, given up together at the deadline; the connection then goes back to
    // the pool, whose bounded release ping closes it.
    store
        .deadline()
        .run(inclusion_proof_on(&mut conn, seq, tree_size))
        .await
}

pub(super) async fn inclusion_proof_on(
    conn: &mut AnyConnection,
    seq: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    check_size(conn, tree_size).await?;
    let wanted = wanted(|l| merkle::inclusion_proof(seq, tree_size, l))?;
    let nodes = fetch_nodes(conn, &wanted).await?;
    Ok(merkle::inclusion_proof(seq, tree_size, |l, i| {
        nodes.get(&(l, i)).copied()
    })?)
}

/// Proof that the tree of `second` entries extends the tree of `first` (RFC 9162 §2.1.4).
pub async fn consistency_proof(
    store: &Store,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let mut conn = store.pool().acquire().await?;
    let deadline = store.deadline();
    deadline.run(check_size(&mut conn, second)).await?;
    let wanted = wanted(|l| merkle::consistency_proof(first, second, l))?;
    let nodes = deadline.run(fetch_nodes(&mut conn, &wanted)).await?;
    Ok(merkle::consistency_proof(first, second, |l, i| {
        nodes.get(&(l, i)).copied()
    })?)
}

async fn check_size(conn: &mut AnyConnection, requested: u64) -> Result<(), LedgerError> {
    let row = sqlx::query::<Any>("SELECT size FROM ledger_head WHERE id = 0")
        .fetch_one(&mut *conn)
        .await?;
    let size = to_u64(row.try_get::<i64, _>(0)?, "head size")?;
    if requested > size {
        return Err(LedgerError::BeyondLog { requested, size });
    }
    Ok(())
}

type Lookup<'a> = &'a dyn Fn(u8, u64) -> Option<Hash>;

/// The nodes a proof computation asks for. Which nodes are read depends only on the sizes,
/// never on hash values, so a dry run with zero hashes records exactly the set needed.
pub(super) fn wanted<T>(
    run: impl FnOnce(Lookup<'_>) -> Result<T, ProofError>,
) -> Result<Vec<(u8, u64)>, LedgerError> {
    let seen = RefCell::new(Vec::new());
    run(&|level, index| {
        seen.borrow_mut().push((level, index));
        Some([0; 32])
    })?;
    let mut seen = seen.into_inner();
    seen.sort_unstable();
    seen.dedup();
    Ok(seen)
}

/// Reads the named nodes: level 0 from the entries' leaf hashes, the rest from `ledger_nodes`.
/// A node asked for but not stored is simply absent from the map; the core reports it.
pub(super) async fn fetch_nodes(
    conn: &mut AnyConnection,
    keys: &[(u8, u64)],
) -> Result<HashMap<(u8, u64), Hash>, LedgerError> {
    let mut out = HashMap::with_capacity(keys.len());
    let (leaves, inner): (Vec<_>, Vec<_>) = keys.iter().partition(|(level, _)| *level == 0);
    for chunk in leaves.chunks(CHUNK) {
        let mut sql = String::from("SELECT seq, leaf_hash FROM ledger_entries WHERE seq IN (");
        Engine::of(conn).placeholders().list(&mut sql, chunk.len());
        sql.push(')');
        let mut q = sqlx::query::<Any>(&sql);
        for (_, index) in chunk {
            q = q.bind(to_i64(*index)?);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let seq = to_u64(row.try_get::<i64, _>(0)?, "seq")?;
            out.insert((0, seq), fixed(row.try_get::<Vec<u8>, _>(1)?, "leaf_hash")?);
        }
    }
    for chunk in inner.chunks(CHUNK) {
        let mut sql = String::from("SELECT level, node_index, hash FROM ledger_nodes WHERE ");
        let mut p = Engine::of(conn).placeholders();
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            let _ = write!(sql, "(level = {} AND node_index = {})", p.next(), p.next());
        }
        let mut q = sqlx::query::<Any>(&sql);
        for (level, index) in chunk {
            q = q.bind(i64::from(*level)).bind(to_i64(*index)?);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let level = u8::try_from(row.try_get::<i64, _>(0)?)
                .map_err(|_| LedgerError::Corrupt("node level out of range".into()))?;
            let index = to_u64(row.try_get::<i64, _>(1)?, "node_index")?;
            out.insert(
                (level, index),
                fixed(row.try_get::<Vec<u8>, _>(2)?, "hash")?,
            );
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Filtered listing.

/// The reason recorded in the refusals of a charged append, from its charges' outcomes.
pub type RefusalReason = Box<dyn Fn(&[Charge]) -> String + Send>;

/// Keyset pagination in sequence order: entries with `seq > after` (all when `None`), at most
/// `limit` of them. Stable while the log grows, unlike OFFSET. A limit of 0 lists nothing and
/// says nothing of what follows; callers refuse it or read it as their default.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub after: Option<u64>,
    pub limit: u32,
}

/// One stored entry: its canonical bytes, decoded.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    pub seq: u64,
    pub leaf_hash: Hash,
    pub bytes: Vec<u8>,
    pub entry: Entry,
}

#[derive(Clone, Debug)]
pub struct EntryPage {
    pub entries: Vec<StoredEntry>,
    /// Pass as `Page::after` for the next page; `None` when no matching entry follows. A page
    /// selected by `on_behalf_of` or `forwarded_to` may be short, even empty, and still have
    /// one: the entries read for it ran out before it was full.
    pub next_after: Option<u64>,
}

/// Lists committed entries matching `filter`, in sequence order.
///
/// With a caller or subject, the lookup's part of the log (`[0, indexed)`, see [`lookup`]) and
/// the rest are read one after the other, each in `seq` order and only until the page is full:
/// a page deep into a busy caller's entries, or with conditions besides, reads about one page
/// of them, never all of the caller's entries first. `indexed` is read once beforehand, so the
/// two parts are disjoint and together complete whatever the indexer does meanwhile.
pub async fn entries(
    store: &Store,
    filter: &EntryFilter,
    page: Page,
) -> Result<EntryPage, LedgerError> {
    let mut after = match page.after {
        Some(a) => to_i64(a)?,
        None => -1,
    };
    let limit = page.limit as usize;
    // One entry more than the page holds: "more follow" only when one really does.
    let want = limit.saturating_add(1);
    let mut entries = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    // Where the next page starts: after the last entry listed, or, when the rounds ran out
    // before the page was full, after the last entry read.
    let mut resume = None;
    // Without `on_behalf_of` or `forwarded_to` every row selected is listed: one round. With
    // either, rows are read in rounds of at least `SCAN_ROUND`, until the page is full, none
    // are left, or `SCAN_ROUNDS` rounds are read: a page of a sparse match then ends short,
    // and says where to go on, rather than one call reading the whole ledger.
    for round in 1.. {
        let ask = if filter.has_uncopied() {
            want.max(SCAN_ROUND)
        } else {
            want
        };
        let rows = selected(store, filter, after, ask).await?;
        // Every row read is checked, those beyond the page too: a page is refused whole rather
        // than shown short of an entry whose copies were changed.
        for (row, by_lookup) in &rows {
            let entry = stored_entry(row, filter, *by_lookup)?;
            after = to_i64(entry.seq)?;
            if !filter.meets_uncopied(&entry.entry) {
                continue;
            }
            if entries.len() < limit {
                entries.push(entry);
            } else {
                more = true;
            }
        }
        if more || rows.len() < ask {
            break;
        }
        if round == SCAN_ROUNDS {
            resume = Some(to_u64(after, "seq")?);
            break;
        }
    }
    let next_after = if more {
        entries.last().map(|e| e.seq)
    } else {
        resume
    };
    Ok(EntryPage {
        entries,
        next_after,
    })
}

/// Rows a listing by `on_behalf_of` or `forwarded_to` reads at a time: those conditions are
/// met or not only on the decoded entry, so a page may take several rounds.
const SCAN_ROUND: usize = 1024;
/// Rounds one page reads at most (some tens of milliseconds of decoding): past them the page
/// ends, short, with where to go on.
const SCAN_ROUNDS: usize = 16;

/// The rows of at most `want` entries after `after` that `filter`'s copied conditions select
/// (all but `on_behalf_of` and `forwarded_to`), in `seq` order, each with whether the lookup selected it (rather
/// than the log's own columns).
async fn selected(
    store: &Store,
    filter: &EntryFilter,
    after: i64,
    want: usize,
) -> Result<Vec<(AnyRow, bool)>, LedgerError> {
    // The subject when both are given: it has the fewer entries.
    let key = match (&filter.subject, &filter.caller) {
        (Some(subject), _) => Some((Field::Subject, subject.as_str())),
        (None, Some(caller)) => Some((Field::Caller, caller.as_str())),
        (None, None) => None,
    };
    Ok(match key {
        Some(key) => {
            let indexed = to_i64(lookup::indexed(store).await?)?;
            let mut rows: Vec<_> =
                matching(store, filter, Part::Indexed(key, indexed), after, want)
                    .await?
                    .into_iter()
                    .map(|row| (row, true))
                    .collect();
            if rows.len() < want {
                let tail = Part::Tail(key, indexed);
                let more = matching(store, filter, tail, after, want - rows.len()).await?;
                rows.extend(more.into_iter().map(|row| (row, false)));
            }
            rows
        }
        None => matching(store, filter, Part::All, after, want)
            .await?
            .into_iter()
            .map(|row| (row, false))
            .collect(),
    })
}

/// A listing's row (`seq, entry, leaf_hash` and the five filter columns), decoded and held to
/// its copies: its columns must be the entry's own fields, and the entry must meet the filter
/// the row was selected by.
///
/// Why: only the entry's bytes are covered by the Merkle log; the columns and the lookup are
/// copies a database administrator could change to hide an entry from a listing or an export,
/// or to show it under another caller, without `ledger verify` of the bytes noticing. A
/// listing cannot see an entry it did not select (the audit does, see
/// [`super::audit::verify_store`]), but it never shows one its copies misattribute.
fn stored_entry(
    row: &AnyRow,
    filter: &EntryFilter,
    by_lookup: bool,
) -> Result<StoredEntry, LedgerError> {
    let seq = to_u64(row.try_get::<i64, _>(0)?, "seq")?;
    let bytes = row.try_get::<Vec<u8>, _>(1)?;
    let entry = Entry::decode(&bytes)
        .map_err(|e| LedgerError::Corrupt(format!("entry {seq} cannot be decoded: {e}")))?;
    let own = FilterFields::of(&entry);
    // A value of another type (a BLOB caller on SQLite, say) reads as None: a difference.
    let text = |i: usize| row.try_get::<String, _>(i).ok();
    let (caller, subject, purpose) = (text(3), text(4), text(5));
    let stored = StoredColumns {
        caller: caller.as_deref(),
        subject: subject.as_deref(),
        purpose: purpose.as_deref(),
        outcome: text(6).and_then(|o| o.parse::<OutcomeKind>().ok()),
        time_ms: row.try_get::<i64, _>(7).ok(),
    };
    if let Some(column) = own.first_difference(&stored) {
        return Err(LedgerError::Misattributed {
            seq,
            column,
            copy: Copied::Column,
        });
    }
    // The columns are the entry's: a condition it does not meet was met by a lookup row.
    if let Some(column) = filter.first_unmet(&own) {
        return Err(LedgerError::Misattributed {
            seq,
            column,
            copy: if by_lookup {
                Copied::Lookup
            } else {
                Copied::Column
            },
        });
    }
    Ok(StoredEntry {
        seq,
        leaf_hash: fixed(row.try_get::<Vec<u8>, _>(2)?, "leaf_hash")?,
        bytes,
        entry,
    })
}

/// Which entries one statement of a listing reads.
#[derive(Clone, Copy)]
enum Part<'a> {
    /// Those below `indexed` whose field has the value, through the lookup.
    Indexed((Field, &'a str), i64),
    /// Those from `indexed` on whose field has the value, from the log itself.
    Tail((Field, &'a str), i64),
    /// All of them.
    All,
}

/// A bind parameter of a listing, in the order of its placeholder.
enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// The rows (`seq, entry, leaf_hash` and the filter columns, see [`stored_entry`]) of at most `limit` entries of `part` after `after` that
/// match `filter`'s other conditions, in `seq` order.
async fn matching(
    store: &Store,
    filter: &EntryFilter,
    part: Part<'_>,
    after: i64,
    limit: usize,
) -> Result<Vec<AnyRow>, LedgerError> {
    use std::fmt::Write as _;
    let mut p = store.engine().placeholders();
    let mut params = Vec::new();
    // The lookup's rows lead, in their key's order, which is `seq` order for one value; each
    // is joined to its entry (CROSS JOIN: SQLite keeps the lookup as the outer loop, rather
    // than scanning the log by time and sorting what it found).
    let mut sql = String::from(
        "SELECT e.seq, e.entry, e.leaf_hash, e.caller, e.subject, e.purpose, e.outcome, \
         e.time_ms FROM ",
    );
    let order = match part {
        Part::Indexed((field, _), _) => {
            let _ = write!(
                sql,
                "ledger_lookup l CROSS JOIN ledger_entries e WHERE e.seq = l.seq \
                 AND l.field = '{}' AND l.value = {} AND l.seq < {} AND l.seq > {}",
                field.column(),
                p.next(),
                p.next(),
                p.next()
            );
            "l.seq"
        }
        Part::Tail((field, _), _) => {
            let _ = write!(
                sql,
                "ledger_entries e WHERE e.{} = {} AND e.seq >= {} AND e.seq > {}",
                field.column(),
                p.next(),
                p.next(),
                p.next()
            );
            "e.seq"
        }
        Part::All => {
            let _ = write!(sql, "ledger_entries e WHERE e.seq > {}", p.next());
            "e.seq"
        }
    };
    // Bound in the order of the placeholders above: the value and `indexed`, then `after`.
    if let Part::Indexed((_, value), indexed) | Part::Tail((_, value), indexed) = part {
        params.extend([Param::Text(value), Param::Int(indexed)]);
    }
    params.push(Param::Int(after));
    // The caller as a plain condition when the subject led.
    let caller = match (&filter.subject, &filter.caller) {
        (Some(_), Some(caller)) => Some(caller.as_str()),
        _ => None,
    };
    let texts = [
        ("caller", caller),
        ("purpose", filter.purpose.as_deref()),
        ("outcome", filter.outcome.map(OutcomeKind::as_str)),
    ];
    for (column, value) in texts {
        if let Some(value) = value {
            let _ = write!(sql, " AND e.{column} = {}", p.next());
            params.push(Param::Text(value));
        }
    }
    // The tail is the last entries: read from `indexed` on in `seq` order. Left to itself,
    // SQLite would take all the range's entries by the time index and sort them; `+ 0` keeps
    // it off that index.
    let time = match part {
        Part::Tail(..) => "e.time_ms + 0",
        _ => "e.time_ms",
    };
    for (ms, op) in [(filter.from_ms, ">="), (filter.until_ms, "<")] {
        if let Some(ms) = ms {
            let _ = write!(sql, " AND {time} {op} {}", p.next());
            params.push(Param::Int(ms));
        }
    }
    let _ = write!(sql, " ORDER BY {order} LIMIT {}", p.next());
    params.push(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let mut q = sqlx::query::<Any>(&sql);
    for param in params {
        q = match param {
            Param::Text(text) => q.bind(text),
            Param::Int(n) => q.bind(n),
        };
    }
    Ok(q.fetch_all(store.pool()).await?)
}

// ---------------------------------------------------------------------------------------------
// Small conversions shared with the writer and the audit.

pub(super) fn to_i64(v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("{v} does not fit a BIGINT")))
}

pub(super) fn to_u64(v: i64, what: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("negative {what}: {v}")))
}

pub(super) fn fixed<const N: usize>(bytes: Vec<u8>, what: &str) -> Result<[u8; N], LedgerError> {
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| LedgerError::Corrupt(format!("{what} has {} bytes, not {N}", bytes.len())))
}
