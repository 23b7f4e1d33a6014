//! What the load benches share: connections to a node, and the subjects their Queries ask about.

use std::sync::Arc;

use credit_node::{client, records::Record, server::RunningNode};
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
