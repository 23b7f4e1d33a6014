//! What the load benches share: connections to a node, and the subjects their Queries ask about.

use std::sync::Arc;

use credit_node::{
    client,
    proto::{self, credit_query_client::CreditQueryClient},
    records::Record,
    server::RunningNode,
};
use tonic::transport::Channel;

/// `n` connections to `node` over `tls`: one client's requests spread over several, as a
/// department's client pool would.
pub async fn connections(
    node: &RunningNode,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
) -> Vec<Channel> {
    let endpoint = format!("https://127.0.0.1:{}", node.local_addr().port());
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(
            client::connect(&endpoint, tls.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    channels
}

/// The subjects of `records` that have a registration: what the benches' Queries ask for.
pub fn registered(records: &[Record]) -> Arc<Vec<String>> {
    Arc::new(
        records
            .iter()
            .filter(|r| r.item == "registration")
            .map(|r| r.subject.clone())
            .collect(),
    )
}

/// One Query about `subject`'s registration, for tax administration (as every bench's caller,
/// a tax bureau, asks), naming `node` (empty: the node asked).
pub async fn query(api: &mut CreditQueryClient<Channel>, subject: String, node: &str) {
    api.query(proto::QueryRequest {
        subject,
        subject_type: proto::SubjectType::LegalPerson.into(),
        items: vec![proto::ItemSelection {
            item: "registration".into(),
            fields: vec![],
        }],
        purpose: "tax-administration".into(),
        basis_reference: "bench".into(),
        node: node.to_owned(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// One WhoAmI: the bare mTLS round trip the benches measure against.
pub async fn who_am_i(api: &mut CreditQueryClient<Channel>) {
    api.who_am_i(proto::WhoAmIRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The latencies of every worker, together.
pub async fn joined(tasks: Vec<tokio::task::JoinHandle<Vec<u128>>>) -> Vec<u128> {
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    latencies
}
