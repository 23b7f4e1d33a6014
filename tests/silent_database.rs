//! A PostgreSQL server that goes silent under a running node: its open connections stop
//! answering without being closed (a partition, a failover whose old address no longer
//! answers), while new connections get through. A relay in this file stands between the node
//! and PostgreSQL and can freeze the connections open at a moment, as such a server would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use common::{REP_ID, TestPki, registration_row};
use credit_node::{
    identifier::Uscc,
    identity::Kind,
    ledger::store::{EntryFilter, Page},
    pki::REGION_A,
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tonic::Code;

/// A TCP relay to one address whose connections can be frozen: [`Relay::freeze`] stops every
/// connection open at that moment from passing anything on, in either direction, closing
/// included, and closes none of them; connections opened afterwards pass as before.
struct Relay {
    addr: SocketAddr,
    /// Connections numbered below this pass nothing on.
    frozen_below: Arc<AtomicU64>,
    /// Connections accepted so far, numbered from 0 in order of acceptance.
    accepted: Arc<AtomicU64>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen_below = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (frozen, count) = (frozen_below.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = count.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::join!(
                        pipe(from_client, to_server, id, &frozen),
                        pipe(from_server, to_client, id, &frozen),
                    );
                });
            }
        });
        Self {
            addr,
            frozen_below,
            accepted,
        }
    }

    fn freeze(&self) {
        let open = self.accepted.load(Ordering::SeqCst);
        self.frozen_below.store(open, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends; once connection `id` is frozen, holds both open
/// and passes nothing more on, not even the end of the stream.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, id: u64, frozen: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buf).await;
        if id < frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `url` with its host and port replaced by `addr`, and the host and port it named.
async fn relayed(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let target = tokio::net::lookup_host(&host)
        .await
        .expect("PostgreSQL's host resolves")
        .next()
        .expect("an address");
    (format!("{scheme}://{user}{addr}{path}"), target)
}

fn ask(subject: &str) -> proto::QueryRequest {
    common::ask_for(subject, "registration", "enforcement")
}

/// The legal representative's identity number in `response`, if disclosed.
fn rep_id(response: &proto::QueryResponse) -> Option<&str> {
    let result = response.result.as_ref()?;
    let record = result.records.iter().find(|r| r.item == "registration")?;
    let field = record.fields.iter().find(|f| f.field == "legal_rep_id")?;
    Some(field.value.as_str())
}

/// Queries until `done` says the answer is the awaited one, at most `attempts` times; every
/// answer before it must be one `other` accepts.
async fn query_until(
    api: &mut CreditQueryClient<tonic::transport::Channel>,
    subject: &str,
    attempts: usize,
    done: impl Fn(&Result<proto::QueryResponse, tonic::Status>) -> bool,
    other: impl Fn(&Result<proto::QueryResponse, tonic::Status>) -> bool,
) -> Result<proto::QueryResponse, tonic::Status> {
    let mut seen = Vec::new();
    for _ in 0..attempts {
        let answer = api
            .query(ask(subject))
            .await
            .map(tonic::Response::into_inner);
        if done(&answer) {
            return answer;
        }
        assert!(
            other(&answer),
            "unexpected answer {answer:?} after {seen:?}"
        );
        seen.push(answer.map(|_| "answered").map_err(|s| s.code()));
    }
    panic!("not within {attempts} queries: {seen:?}");
}

/// The round trip's deadline, not the request's, ends a query stuck on a silent connection:
/// UNAVAILABLE with nothing of the record (not CANCELLED two minutes later), and the node
/// heals by itself on new connections: a later query is answered, on record, and the ledger
/// verifies.
#[tokio::test]
async fn a_silent_database_is_given_up_unavailable_and_the_node_heals_on_new_connections() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    // The relay's address is known only once it listens: it learns its target first.
    let (_, target) = relayed(&url, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await;
    let relay = Relay::start(target).await;
    let (through_relay, _) = relayed(&url, relay.addr).await;

    let pki = TestPki::new();
    let config = pki.write_config_on(REGION_A, &through_relay);
    let text = std::fs::read_to_string(&config).unwrap();
    let limited = text
        .replace(
            "[store]\n",
            "[store]\nround_trip_timeout_ms = 400\nlock_timeout_ms = 200\n\
             idle_in_transaction_timeout_ms = 3000\n",
        )
        .replace("[limits]\n", "[limits]\nrequest_timeout_ms = 120000\n");
    assert_eq!(limited.matches("timeout_ms").count(), 4, "{limited}");
    std::fs::write(&config, limited).unwrap();
    let node = common::start_from_config(&config).await;

    let subject = Uscc::from_seed(42).to_string();
    let operator = pki.channel(&node, REGION_A, Kind::Operator, "admin").await;
    AdministrationClient::new(operator)
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![registration_row(&subject)],
        })
        .await
        .expect("operator ingests");
    let mut court = CreditQueryClient::new(pki.channel(&node, REGION_A, Kind::Dept, "court").await);
    let up = court
        .query(ask(&subject))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(rep_id(&up), Some(REP_ID));

    // Every connection the node holds now goes silent; it keeps some of them for its next
    // reads and its ledger's next batch.
    relay.freeze();
    let unavailable = |answer: &Result<proto::QueryResponse, tonic::Status>| matches!(answer, Err(status) if status.code() == Code::Unavailable);
    let answered = |answer: &Result<proto::QueryResponse, tonic::Status>| matches!(answer, Ok(response) if rep_id(response) == Some(REP_ID));
    // The reads' connections are taken in turn: queries whose read opens a new one are
    // answered, the one whose read meets a silent one is refused. Any query answered from here
    // on also had its entry committed past the writer's kept connection, silent since the
    // freeze: given up, its batch in doubt, and written (once) on a new connection.
    let Err(refused) = query_until(&mut court, &subject, 32, unavailable, answered).await else {
        unreachable!("query_until returns what `unavailable` accepts");
    };
    assert!(
        !refused.message().contains(REP_ID) && !refused.message().contains("欧阳"),
        "no record data in the refusal: {refused:?}"
    );

    // The node gives up the silent connections and answers on new ones by itself.
    let healed = query_until(&mut court, &subject, 32, answered, unavailable)
        .await
        .expect("answered again");
    let receipt = healed.receipt.expect("a receipt");
    let store = node.state().store();
    let ledger = node.state().ledger();
    let stored = credit_node::ledger::store::entries(
        store,
        &EntryFilter::default(),
        Page {
            after: None,
            limit: 10_000,
        },
    )
    .await
    .expect("the ledger lists")
    .entries;
    let entry = stored
        .iter()
        .find(|e| e.seq == receipt.sequence)
        .expect("the healed query's entry is in the ledger");
    assert_eq!(entry.leaf_hash.to_vec(), receipt.leaf_hash);
    ledger.sign_now().await.expect("a tree head");
    let report = credit_node::ledger::audit::verify_store(store, ledger.public_key(), |_| {})
        .await
        .expect("the ledger verifies");
    assert_eq!(report.entries, stored.len() as u64);
    // A batch given up in doubt and written again on a new connection would be there twice.
    let mut queries: Vec<[u8; 16]> = stored.iter().map(|e| e.entry.query_id).collect();
    queries.sort_unstable();
    queries.dedup();
    assert_eq!(queries.len(), stored.len(), "no entry twice");
    node.shutdown().await;
}
