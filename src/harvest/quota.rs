//! The distinct-subject quota and suspensions, in the store (so replicas share them).
//!
//! The hot path does no database work for them: [`QuotaStore::check`] answers from memory, and
//! whatever it does not know is charged by the ledger's writer, in the same transaction that
//! records the query ([`charge_all`]): the suspension check, the charge and the record of the
//! disclosure commit together, with one fsync, or not at all, and a charge that does not fit
//! (or a caller suspended meanwhile, on any replica) turns the query's entries into refusals
//! before anything is sent.
//!
//! Repeats cost nothing at all: each replica remembers, per caller, the subjects it has seen
//! counted in the caller's current window. Counted subjects are never uncounted within a
//! window, so this memory is right on every replica however the others charge; it holds at
//! most the caller's quota of subjects, and callers idle past their window are forgotten.
//! Suspensions are remembered too, refreshed from the store every housekeeping tick: a
//! suspension or lift on another replica takes effect here within that tick (a new subject is
//! always checked against the store itself, in the charge).
//!
//! On SQLite the charge counts a new subject with the query's entries but its
//! `quota_subjects` row waits in the writer ([`Unflushed`]) and is written within a second,
//! with the others, in key order: written with each batch, the new subjects' random pages were
//! most of a first contact's cost (SQLite's WAL logs whole pages). The count stays exact; a
//! crash can only make a repeat count again.
//!
//! Correctness across replicas: the ledger's transaction locks the ledger head first, then each
//! caller's usage row (an upsert that changes nothing, returning the count and any
//! suspension), then writes the new subjects and count (reading first which are counted when
//! the batch could reach the quota). The locks serialise concurrent charges
//! on PostgreSQL (the single write lock does on SQLite), always in the same order, and each
//! statement after them sees what the other replicas committed, so no interleaving overshoots
//! or double-counts.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use sqlx::{Any, AnyConnection, Row};

use crate::store::{AnyQuery, Deadline, Engine, Placeholders, Store};

/// What the quota's memory says of a query, before any record is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Everything asked about is already counted: nothing to charge.
    Counted,
    /// The caller is suspended.
    Suspended { since_ms: i64 },
    /// Not known counted: the query may disclose only once these subjects are charged.
    New(QuotaCharge),
}

/// Subjects to charge to a caller's quota, all or nothing, in the transaction that records
/// the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCharge {
    pub caller: String,
    pub window: i64,
    /// Distinct, canonical; those already counted cost nothing.
    pub subjects: Vec<String>,
    pub limit: u64,
    /// The query's own enumeration alert suspended the caller: the suspension holds from the
    /// next query on, so it does not refuse this one. Only when that alert's suspension is the
    /// one in the store ([`QuotaStore::suspend`] inserted it): a suspension already there (an
    /// earlier alert, on any replica) refuses this query like any other.
    pub raised_suspension: bool,
}

/// What a charge came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Everything asked about is counted (now or before).
    Within,
    /// The new subjects would take the caller past its quota; nothing was counted.
    Exhausted { used: u64 },
    /// The caller is suspended (found in the store); nothing was counted.
    Suspended { since_ms: i64 },
}

#[derive(Debug, thiserror::Error)]
#[error("quota store: {0}")]
pub struct QuotaError(String);

impl From<sqlx::Error> for QuotaError {
    fn from(e: sqlx::Error) -> Self {
        QuotaError(e.to_string())
    }
}

/// One suspended caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub caller: String,
    pub since_ms: i64,
    pub alert_seq: u64,
    pub reason: String,
}

/// Subjects known to be counted for one caller, in one window.
struct Known {
    window: i64,
    subjects: HashSet<Box<str>>,
}

#[derive(Clone)]
pub struct QuotaStore {
    store: Store,
    known: Arc<DashMap<String, Known>>,
    /// Suspended callers and since when, as last read from the store (or set here).
    suspended: Arc<DashMap<String, i64>>,
}

impl QuotaStore {
    /// The quota over `store` (migrated).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            known: Arc::default(),
            suspended: Arc::default(),
        }
    }

    /// Whether every subject is known counted for `caller` in `window`.
    fn all_known(&self, caller: &str, window: i64, subjects: &[&str]) -> bool {
        self.known
            .get(caller)
            .is_some_and(|k| k.window == window && subjects.iter().all(|s| k.subjects.contains(*s)))
    }

    /// Notes a charge's subjects as counted, once it has committed.
    pub fn remember(&self, charge: &QuotaCharge) {
        let QuotaCharge {
            caller,
            window,
            subjects,
            ..
        } = charge;
        let window = *window;
        let mut known = self.known.entry(caller.clone()).or_insert_with(|| Known {
            window,
            subjects: HashSet::new(),
        });
        if known.window != window {
            known.window = window;
            known.subjects.clear();
        }
        known
            .subjects
            .extend(subjects.iter().map(|s| Box::<str>::from(s.as_str())));
    }

    /// Forgets what was counted in windows before `window`.
    pub fn forget_before(&self, window: i64) {
        self.known.retain(|_, k| k.window >= window);
    }

    /// Since when `caller` is suspended, as this replica knows it (see [`QuotaStore::check`]).
    pub fn suspended_since(&self, caller: &str) -> Option<i64> {
        self.suspended.get(caller).map(|s| *s)
    }

    /// Re-reads the suspensions from the store (other replicas may have changed them).
    pub async fn refresh_suspensions(&self) -> Result<(), QuotaError> {
        let now: Vec<Suspension> = self.suspensions().await?;
        self.suspended
            .retain(|caller, _| now.iter().any(|s| &s.caller == caller));
        for s in now {
            self.suspended.insert(s.caller, s.since_ms);
        }
        Ok(())
    }

    /// Whether `subjects` (canonical identifiers, distinct) are all known counted for `caller`
    /// in `window`, or the caller known suspended; from memory only, so the hot path does no
    /// database work before the read. Anything else is to be charged with the query's entries
    /// ([`charge_all`]), which checks the store itself, under lock: counted subjects cost
    /// nothing there either, and a suspension made on another replica is found there.
    pub fn check(&self, caller: &str, window: i64, subjects: &[&str], limit: u64) -> Check {
        if let Some(since_ms) = self.suspended_since(caller) {
            return Check::Suspended { since_ms };
        }
        if self.all_known(caller, window, subjects) {
            return Check::Counted;
        }
        Check::New(QuotaCharge {
            caller: caller.to_owned(),
            window,
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            limit,
            raised_suspension: false,
        })
    }

    /// Suspends `caller` (a second alert keeps the first suspension). `true` if this call
    /// suspended it; `false` if it was suspended already (by another alert, perhaps on another
    /// replica), which then stands as it was.
    pub async fn suspend(&self, s: &Suspension) -> Result<bool, QuotaError> {
        let seq =
            i64::try_from(s.alert_seq).map_err(|_| QuotaError("alert_seq too large".into()))?;
        let _turn = self.store.write_turn(crate::store::File::Activity).await;
        let insert = sqlx::query::<Any>(
            "INSERT INTO suspensions (caller, since_ms, alert_seq, reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (caller) DO NOTHING",
        )
        .bind(s.caller.as_str())
        .bind(s.since_ms)
        .bind(seq)
        .bind(s.reason.as_str())
        .execute(self.store.pool());
        let inserted = self.store.deadline().run(insert).await?;
        self.suspended.entry(s.caller.clone()).or_insert(s.since_ms);
        Ok(inserted.rows_affected() == 1)
    }

    /// Lifts `caller`'s suspension raised by the alert at `alert_seq`, the one the officer's
    /// review names; `false` if that one is no longer in place: lifted already, or since
    /// replaced by a newer suspension (another alert), which no review has named and which
    /// therefore stays.
    pub async fn lift(&self, caller: &str, alert_seq: u64) -> Result<bool, QuotaError> {
        let seq = i64::try_from(alert_seq).map_err(|_| QuotaError("alert_seq too large".into()))?;
        let _turn = self.store.write_turn(crate::store::File::Activity).await;
        let delete =
            sqlx::query::<Any>("DELETE FROM suspensions WHERE caller = $1 AND alert_seq = $2")
                .bind(caller)
                .bind(seq)
                .execute(self.store.pool());
        let deleted = self.store.deadline().run(delete).await?;
        let lifted = deleted.rows_affected() == 1;
        if lifted {
            // Otherwise what is in force here is left to the next refresh.
            self.suspended.remove(caller);
        }
        Ok(lifted)
    }

    pub async fn suspension(&self, caller: &str) -> Result<Option<Suspension>, QuotaError> {
        let read = sqlx::query::<Any>(
            "SELECT caller, since_ms, alert_seq, reason FROM suspensions WHERE caller = $1",
        )
        .bind(caller)
        .fetch_optional(self.store.pool());
        let row = self.store.deadline().run(read).await?;
        row.map(|r| suspension_of(&r)).transpose()
    }

    pub async fn suspensions(&self) -> Result<Vec<Suspension>, QuotaError> {
        let read = sqlx::query::<Any>(
            "SELECT caller, since_ms, alert_seq, reason FROM suspensions ORDER BY since_ms",
        )
        .fetch_all(self.store.pool());
        let rows = self.store.deadline().run(read).await?;
        rows.iter().map(suspension_of).collect()
    }
}

fn suspension_of(row: &sqlx::any::AnyRow) -> Result<Suspension, QuotaError> {
    Ok(Suspension {
        caller: row.try_get(0)?,
        since_ms: row.try_get(1)?,
        alert_seq: u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or_default(),
        reason: row.try_get(3)?,
    })
}

/// Charges each of `charges`, in order and each all or nothing, inside the caller's open
/// transaction (the ledger writer's, after it has locked the ledger head).
/// Subjects in `unflushed` (SQLite) count as counted. Each statement is given up at
/// `deadline`, as the writer's own are.
pub async fn charge_all(
    conn: &mut AnyConnection,
    charges: &[&QuotaCharge],
    unflushed: Option<&Unflushed>,
    deadline: Deadline,
) -> Result<Vec<Charge>, sqlx::Error> {
    let mut outcomes = vec![Charge::Within; charges.len()];
    for (caller, window, members) in groups(charges) {
        let group = Group {
            caller,
            window,
            unflushed,
            deadline,
        };
        charge_group(&mut *conn, &group, charges, &members, &mut outcomes).await?;
    }
    Ok(outcomes)
}

/// Charges sets of charges, each set all in order and only as far as it goes through: a
/// set's second charge (a relay's) is made only if its first (the caller's own) fit, in a
/// second round after every set's first. A query refused by its caller's own quota then
/// costs its relay nothing, so one department cannot spend the quota a relay shares with the
/// rest by asking past its own. Returns the outcomes of the charges made, per set; a set's
/// list ends at its first charge that did not go through.
pub async fn charge_sets(
    conn: &mut AnyConnection,
    sets: &[&[QuotaCharge]],
    unflushed: Option<&Unflushed>,
    deadline: Deadline,
) -> Result<Vec<Vec<Charge>>, sqlx::Error> {
    let mut outcomes: Vec<Vec<Charge>> = vec![Vec::new(); sets.len()];
    let rounds = sets.iter().map(|s| s.len()).max().unwrap_or(0);
    for round in 0..rounds {
        let due: Vec<usize> = (0..sets.len())
            .filter(|&i| sets[i].len() > round && outcomes[i].iter().all(|o| *o == Charge::Within))
            .collect();
        if due.is_empty() {
            break;
        }
        let charges: Vec<&QuotaCharge> = due.iter().map(|&i| &sets[i][round]).collect();
        let made = charge_all(&mut *conn, &charges, unflushed, deadline).await?;
        for (i, outcome) in due.into_iter().zip(made) {
            outcomes[i].push(outcome);
        }
    }
    Ok(outcomes)
}

/// `charges` grouped by caller and window, in order of first appearance: a handful of
/// statements per caller and batch, however many of its queries are queued.
fn groups<'c>(charges: &[&'c QuotaCharge]) -> Vec<(&'c str, i64, Vec<usize>)> {
    let mut groups: Vec<(&str, i64, Vec<usize>)> = Vec::new();
    for (i, c) in charges.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(caller, w, _)| *caller == c.caller && *w == c.window)
        {
            Some((_, _, members)) => members.push(i),
            None => groups.push((c.caller.as_str(), c.window, vec![i])),
        }
    }
    groups
}

/// A batch's charges presumed to fit: written by the statements of [`Presumed::chunks`] with
/// the batch's entries (on SQLite in their one round trip), and confirmed from the rows those
/// statements return before the transaction commits.
///
/// Why: charging exactly ([`charge_all`]) reads the usage row before anything is written: more
/// round trips (to SQLite's connection thread, or to PostgreSQL) in a batch every Query of it
/// waits for (measured: most of the guard's cost on first contact). The counting statement
/// locks the usage row after the ledger head, as the exact charge does, so replicas still
/// queue in one order. Nearly always the charge fits; when
/// the rows say otherwise — past the quota, suspended, or no usage row yet in this window (the
/// first charge, which also clears older windows) — the writer rolls the transaction back and
/// charges exactly. Every member of a batch that fits as a whole fits in order, so the
/// outcome is the same as charging exactly.
pub struct Presumed {
    groups: Vec<PresumedGroup>,
    /// SQLite: the subjects are counted without writing their rows ([`Unflushed`]).
    deferred: bool,
}

struct PresumedGroup {
    caller: String,
    window: i64,
    subjects: Vec<String>,
    /// Those to count: `subjects` less those counted and not yet written ([`Unflushed`]).
    counting: Vec<String>,
    limit: u64,
}

/// Subjects counted per statement: bounds the parameters of one statement.
const COUNT_CHUNK: usize = 300;

impl Presumed {
    /// `None` if a charge asks about no subject (there would be nothing to confirm it by).
    /// With `unflushed` (SQLite), the subjects are counted without writing their rows, and
    /// those in it are known counted.
    pub fn new(charges: &[&QuotaCharge], unflushed: Option<&Unflushed>) -> Option<Self> {
        let mut out = Vec::new();
        for (caller, window, members) in groups(charges) {
            let mut subjects: Vec<String> = members
                .iter()
                .flat_map(|&i| charges[i].subjects.iter().cloned())
                .collect();
            if subjects.is_empty() {
                return None;
            }
            subjects.sort_unstable();
            subjects.dedup();
            let limit = members.iter().map(|&i| charges[i].limit).min().unwrap_or(0);
            let counting = subjects
                .iter()
                .filter(|s| !unflushed.is_some_and(|u| u.contains(caller, window, s)))
                .cloned()
                .collect();
            out.push(PresumedGroup {
                caller: caller.to_owned(),
                window,
                subjects,
                counting,
                limit,
            });
        }
        Some(Self {
            groups: out,
            deferred: unflushed.is_some(),
        })
    }

    /// Whether the counting statements are [`deferred_count_sql`]'s (else [`count_sql`]'s).
    pub fn deferred(&self) -> bool {
        self.deferred
    }

    /// The counting statements to run, as (caller, window, subjects): each returns one row.
    pub fn chunks(&self) -> impl Iterator<Item = (&str, i64, &[String])> {
        self.groups.iter().flat_map(|g| {
            chunks(&g.counting).map(move |chunk| (g.caller.as_str(), g.window, chunk))
        })
    }

    /// Notes every subject charged as counted, once the transaction has committed.
    pub fn committed(&self, unflushed: &mut Unflushed) {
        for g in &self.groups {
            unflushed.add(&g.caller, g.window, g.subjects.iter().map(String::as_str));
        }
    }

    /// Whether the rows returned by [`Presumed::chunks`]'s statements, in order, confirm that
    /// every charge fits and no caller is suspended.
    pub fn confirmed(&self, rows: &[sqlx::any::AnyRow]) -> Result<bool, sqlx::Error> {
        let mut rows = rows.iter();
        for g in &self.groups {
            let mut used = 0;
            for _ in chunks(&g.counting) {
                // No row: the caller has no usage row in this window yet.
                let Some(row) = rows.next() else {
                    return Ok(false);
                };
                if row.try_get::<Option<i64>, _>(1)?.is_some() {
                    return Ok(false);
                }
                used = row.try_get::<i64, _>(0)?;
            }
            if u64::try_from(used).map_or(true, |used| used > g.limit) {
                return Ok(false);
            }
        }
        Ok(rows.next().is_none())
    }
}

/// `subjects` in statement-sized chunks; one empty chunk if there are none, whose statement
/// still returns the caller's count and any suspension.
fn chunks(subjects: &[String]) -> impl Iterator<Item = &[String]> {
    let none: &[String] = &[];
    subjects
        .chunks(COUNT_CHUNK)
        .chain(subjects.is_empty().then_some(none))
}

/// SQLite: appends the statement that adds to the usage row of one caller and window how many
/// of `n` subjects (distinct, bound first, then caller and window) are not in
/// `quota_subjects`, writing no row there; it returns the count and any suspension. The rows
/// are the writer's to write later ([`Unflushed`]).
pub fn deferred_count_sql(sql: &mut String, p: &mut Placeholders, n: usize) {
    sql.push_str("UPDATE quota_usage SET used = used");
    if n > 0 {
        sql.push_str(" + (SELECT COUNT(*) FROM (VALUES ");
        p.tuples(sql, n, 1);
        sql.push_str(
            ") AS asked WHERE NOT EXISTS (SELECT 1 FROM quota_subjects s \
             WHERE s.caller = quota_usage.caller AND s.window_id = quota_usage.window_id \
             AND s.subject = asked.column1))",
        );
    }
    let (c, w) = (p.next(), p.next());
    let _ = write!(
        sql,
        " WHERE caller = {c} AND window_id = {w} RETURNING used, \
         (SELECT since_ms FROM suspensions WHERE suspensions.caller = quota_usage.caller)"
    );
}

/// Binds [`deferred_count_sql`]'s parameters, in its order.
pub fn bind_deferred_count<'q>(
    mut q: AnyQuery<'q>,
    caller: &'q str,
    window: i64,
    subjects: &'q [String],
) -> AnyQuery<'q> {
    for s in subjects {
        q = q.bind(s.as_str());
    }
    q.bind(caller).bind(window)
}

/// How long subjects counted on SQLite wait for their `quota_subjects` rows, at most.
const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// How many waiting rows make the writer write them at once.
const FLUSH_ROWS: usize = 16_384;

/// SQLite: subjects the ledger's writer has counted in `quota_usage` (with the entries of the
/// queries that asked about them) but not yet written to `quota_subjects`; it writes them
/// within [`FLUSH_AFTER`], sorted, in a transaction of their own.
///
/// Why: SQLite's WAL logs whole pages. Written with each batch, 60 queries about 60 new
/// subjects dirtied about 60 random pages of `quota_subjects` (≈ 240 KB written and fsync'd
/// per commit, against ≈ 10 sequential pages for the entries): most of what a first contact
/// cost with the guard on (BENCHMARKS.md, seventh session). Written once a second, each page
/// is written once for all the subjects that fall on it.
///
/// Exactness: on SQLite one process's writer charges at a time (the write lock), and it
/// counts a subject only if it is neither here nor in the table, so nothing is counted twice
/// and nothing escapes the count. What waiting rows can cost is an over-count, never an
/// under-count: rows lost in a crash, or waiting in another process's writer on the same file,
/// make a repeat of their subjects count again. The quota's bound holds either way.
#[derive(Default)]
pub struct Unflushed {
    /// Caller → its windows (two, briefly, around a window's end) and their waiting subjects.
    callers: HashMap<String, Vec<(i64, HashSet<String>)>>,
    rows: usize,
    /// Since when rows have been waiting.
    since: Option<Instant>,
    /// The last write failed: wait [`FLUSH_AFTER`] before the next, however many rows wait.
    failed: bool,
}

impl Unflushed {
    pub fn contains(&self, caller: &str, window: i64, subject: &str) -> bool {
        self.callers.get(caller).is_some_and(|windows| {
            windows
                .iter()
                .any(|(w, subjects)| *w == window && subjects.contains(subject))
        })
    }

    fn add<'s>(&mut self, caller: &str, window: i64, subjects: impl Iterator<Item = &'s str>) {
        let windows = self.callers.entry(caller.to_owned()).or_default();
        let i = match windows.iter().position(|(w, _)| *w == window) {
            Some(i) => i,
            None => {
                windows.push((window, HashSet::new()));
                windows.len() - 1
            }
        };
        for subject in subjects {
            if windows[i].1.insert(subject.to_owned()) {
                self.rows += 1;
            }
        }
        if self.rows > 0 && self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// Drops what waits for `caller` in windows before `window`: its first charge there has
    /// dropped their rows from the table, and writing them now would bring them back.
    pub fn forget_before(&mut self, caller: &str, window: i64) {
        let Some(windows) = self.callers.get_mut(caller) else {
            return;
        };
        let before = windows.len();
        windows.retain(|(w, subjects)| {
            let spent = *w < window;
            if spent {
                self.rows -= subjects.len();
            }
            !spent
        });
        if windows.len() == before {
            return;
        }
        if windows.is_empty() {
            self.callers.remove(caller);
        }
        if self.rows == 0 {
            *self = Self::default();
        }
    }

    /// How long until the rows are due to be written; `None` if none wait.
    pub fn due_in(&self) -> Option<Duration> {
        let since = self.since?;
        if self.rows >= FLUSH_ROWS && !self.failed {
            return Some(Duration::ZERO);
        }
        Some(FLUSH_AFTER.saturating_sub(since.elapsed()))
    }

    /// Writes the waiting rows in `conn`'s open transaction, in key order (each page of the
    /// table once); [`Unflushed::written`] once it has committed.
    pub async fn write(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let mut rows: Vec<(&str, i64, &str)> = self
            .callers
            .iter()
            .flat_map(|(caller, windows)| {
                windows.iter().flat_map(move |(window, subjects)| {
                    subjects
                        .iter()
                        .map(move |s| (caller.as_str(), *window, s.as_str()))
                })
            })
            .collect();
        rows.sort_unstable();
        for chunk in rows.chunks(COUNT_CHUNK) {
            let mut p = Engine::of(conn).placeholders();
            let mut sql =
                String::from("INSERT INTO quota_subjects (caller, window_id, subject) VALUES ");
            p.tuples(&mut sql, chunk.len(), 3);
            sql.push_str(" ON CONFLICT (caller, window_id, subject) DO NOTHING");
            let mut q = sqlx::query::<Any>(&sql);
            for &(caller, window, subject) in chunk {
                q = q.bind(caller).bind(window).bind(subject);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The rows are in the table.
    pub fn written(&mut self) {
        *self = Self::default();
    }

    /// Writing failed: keep the rows, try again in a while.
    pub fn failed(&mut self) {
        self.failed = true;
        self.since = Some(Instant::now());
    }
}

/// Appends to `sql` the statements that count `n` subjects for one caller and window (bound by
/// [`bind_count`]) and add the new ones to the usage row; with `returning`, the row returns the
/// count and any suspension.
pub fn count_sql(sql: &mut String, p: &mut Placeholders, n: usize, returning: bool) {
    let engine = p.engine();
    sql.push_str(match engine {
        Engine::Sqlite => "",
        // PostgreSQL has no changes(): the inserted rows come back through the CTE.
        Engine::Postgres => "WITH new AS (",
    });
    sql.push_str("INSERT INTO quota_subjects (caller, window_id, subject) VALUES ");
    p.tuples(sql, n, 3);
    sql.push_str(" ON CONFLICT (caller, window_id, subject) DO NOTHING");
    sql.push_str(match engine {
        // changes(): the rows the INSERT just before it added, conflicts not counted.
        Engine::Sqlite => "; UPDATE quota_usage SET used = used + changes()",
        Engine::Postgres => {
            " RETURNING 1) UPDATE quota_usage SET used = used + (SELECT COUNT(*) FROM new)"
        }
    });
    let (c, w) = (p.next(), p.next());
    let _ = write!(sql, " WHERE caller = {c} AND window_id = {w}");
    if returning {
        sql.push_str(
            " RETURNING used, \
             (SELECT since_ms FROM suspensions WHERE suspensions.caller = quota_usage.caller)",
        );
    }
}

/// Binds the parameters of [`count_sql`]'s statement for `subjects`: the one place that knows
/// its order, for the exact charge and the ledger writer's presumed one alike.
pub fn bind_count<'q, S: AsRef<str>>(
    mut q: AnyQuery<'q>,
    caller: &'q str,
    window: i64,
    subjects: &'q [S],
) -> AnyQuery<'q> {
    for s in subjects {
        q = q.bind(caller).bind(window).bind(s.as_ref());
    }
    q.bind(caller).bind(window)
}

/// One caller and window's charges in a batch.
struct Group<'a> {
    caller: &'a str,
    window: i64,
    unflushed: Option<&'a Unflushed>,
    deadline: Deadline,
}

impl Group<'_> {
    /// Counted, with its row not yet written.
    fn waiting(&self, subject: &str) -> bool {
        self.unflushed
            .is_some_and(|u| u.contains(self.caller, self.window, subject))
    }
}

/// Charges the charges `members` of one caller and window, in order, each all or nothing.
async fn charge_group(
    conn: &mut AnyConnection,
    group: &Group<'_>,
    batch: &[&QuotaCharge],
    members: &[usize],
    outcomes: &mut [Charge],
) -> Result<(), sqlx::Error> {
    let Group {
        caller,
        window,
        deadline,
        ..
    } = *group;
    let engine = Engine::of(conn);
    // One statement opens the caller's usage row for this window if need be and locks it
    // (PostgreSQL replicas queue here), then reads under the lock how much is used and whether
    // the caller is suspended on any replica. It opens none for a window the caller has
    // already left: a query that read the clock just before its window ended, charged after
    // the next window's first charge dropped this one, would reopen it at zero and obtain
    // subjects past a quota already spent. Such a charge is refused as if the window were full;
    // the caller asks again in the new window.
    let open = sqlx::query::<Any>(
        "INSERT INTO quota_usage (caller, window_id, used) SELECT $1, $2, 0 \
         WHERE NOT EXISTS (SELECT 1 FROM quota_usage later \
                           WHERE later.caller = $1 AND later.window_id > $2) \
         ON CONFLICT (caller, window_id) DO UPDATE SET used = quota_usage.used \
         RETURNING used, (SELECT since_ms FROM suspensions WHERE suspensions.caller = $1)",
    )
    .bind(caller)
    .bind(window)
    .fetch_optional(&mut *conn);
    let row = deadline.run(open).await?;
    let Some(row) = row else {
        for &i in members {
            outcomes[i] = Charge::Exhausted {
                used: batch[i].limit,
            };
        }
        return Ok(());
    };
    let used: i64 = row.try_get(0)?;
    let suspended: Option<i64> = row.try_get(1)?;
    if used == 0 {
        // Most likely the caller's first charge in this window: its older windows are spent;
        // drop them so the tables hold at most about one window per caller. Before the
        // suspension check: a refused charge still opened this window's usage row, and charges
        // presumed to fit ([`Presumed`]) clean up only where there is none.
        for table in ["quota_subjects", "quota_usage"] {
            let sql = format!("DELETE FROM {table} WHERE caller = $1 AND window_id < $2");
            let spent = sqlx::query::<Any>(&sql)
                .bind(caller)
                .bind(window)
                .execute(&mut *conn);
            deadline.run(spent).await?;
        }
    }
    let mut members = members.to_vec();
    if let Some(since_ms) = suspended {
        // Nothing is charged, nothing disclosed (except to the query whose own alert
        // suspended the caller).
        members.retain(|&i| {
            let refused = !batch[i].raised_suspension;
            if refused {
                outcomes[i] = Charge::Suspended { since_ms };
            }
            !refused
        });
    }
    if members.is_empty() {
        return Ok(());
    }
    let members = members.as_slice();
    let start = u64::try_from(used).unwrap_or_default();
    let mut asked: Vec<&str> = members
        .iter()
        .flat_map(|&i| batch[i].subjects.iter().map(String::as_str))
        .filter(|s| !group.waiting(s))
        .collect();
    asked.sort_unstable();
    asked.dedup();
    let limit = members.iter().map(|&i| batch[i].limit).min().unwrap_or(0);
    if start + asked.len() as u64 <= limit {
        // Even if every subject asked about is new, all fit: no need to read which are
        // counted first; only the new ones are added to the count.
        return count_subjects(conn, group, engine, &asked).await;
    }
    // Near the quota: each charge in order, all or nothing, against what is counted already
    // (by another replica or an earlier batch).
    let mut used = start;
    let mut counted: HashSet<String> = HashSet::new();
    for chunk in asked.chunks(500) {
        let mut p = engine.placeholders();
        let mut sql = format!(
            "SELECT subject FROM quota_subjects WHERE caller = {} AND window_id = {} \
             AND subject IN (",
            p.next(),
            p.next()
        );
        p.list(&mut sql, chunk.len());
        sql.push(')');
        let mut q = sqlx::query::<Any>(&sql).bind(caller).bind(window);
        for s in chunk {
            q = q.bind(*s);
        }
        for row in deadline.run(q.fetch_all(&mut *conn)).await? {
            counted.insert(row.try_get::<String, _>(0)?);
        }
    }
    let mut new_subjects: Vec<&str> = Vec::new();
    for &i in members {
        let r = &batch[i];
        let new: Vec<&str> = r
            .subjects
            .iter()
            .map(String::as_str)
            .filter(|s| !counted.contains(*s) && !group.waiting(s))
            .collect();
        if new.is_empty() {
            outcomes[i] = Charge::Within;
        } else if used + new.len() as u64 <= r.limit {
            used += new.len() as u64;
            counted.extend(new.iter().map(|s| (*s).to_owned()));
            new_subjects.extend(new);
            outcomes[i] = Charge::Within;
        } else {
            outcomes[i] = Charge::Exhausted { used };
        }
    }
    if used == start {
        return Ok(());
    }
    count_subjects(conn, group, engine, &new_subjects).await
}

/// Records `subjects` as counted and adds those not counted before to the usage row: one
/// round trip per chunk, where the count once came back to be written in a second. Each round
/// trip is in the ledger writer's batch, which every Query of the batch waits for.
async fn count_subjects(
    conn: &mut AnyConnection,
    group: &Group<'_>,
    engine: Engine,
    subjects: &[&str],
) -> Result<(), sqlx::Error> {
    for chunk in subjects.chunks(COUNT_CHUNK) {
        let mut sql = String::new();
        count_sql(&mut sql, &mut engine.placeholders(), chunk.len(), false);
        let count = bind_count(sqlx::query::<Any>(&sql), group.caller, group.window, chunk)
            .execute(&mut *conn);
        group.deadline.run(count).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_subjects_of_two_windows_are_both_kept_until_the_older_is_spent() {
        let mut waiting = Unflushed::default();
        assert_eq!(waiting.due_in(), None);
        // Around a window's end, charges of both windows commit (even in one batch): neither
        // may lose the other's subjects, or a repeat in it would count again.
        waiting.add("tax", 8, ["b", "c"].into_iter());
        waiting.add("tax", 7, ["a"].into_iter());
        waiting.add("tax", 8, ["c"].into_iter());
        assert!(waiting.contains("tax", 7, "a"));
        assert!(waiting.contains("tax", 8, "b") && waiting.contains("tax", 8, "c"));
        assert!(!waiting.contains("tax", 8, "a") && !waiting.contains("court", 8, "b"));
        assert_eq!(waiting.rows, 3);
        assert!(waiting.due_in().is_some());

        // Window 8's first charge dropped window 7's rows: its waiting ones go too.
        waiting.forget_before("tax", 8);
        assert!(!waiting.contains("tax", 7, "a"));
        assert!(waiting.contains("tax", 8, "b"));
        assert_eq!(waiting.rows, 2);

        waiting.forget_before("tax", 9);
        assert_eq!(waiting.rows, 0);
        assert_eq!(waiting.due_in(), None, "nothing waits: nothing to write");
    }
}
