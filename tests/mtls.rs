//! Promise 1: identity comes from the certificate, and only trusted, valid, unrevoked
//! certificates with exactly one SPIFFE ID of their own trust domain get in.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::{sync::Arc, time::Duration};

use common::{TestPki, endpoint, whoami_as};
use credit_node::{
    client,
    identity::Kind,
    pki::{REGION_A, REGION_A_IDENTITIES, REGION_B, REGION_B_IDENTITIES},
    proto::{self, credit_query_client::CreditQueryClient},
    tls,
};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[tokio::test]
async fn whoami_identifies_every_kind_of_identity_in_both_regions() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    for (region, identities) in [
        (REGION_A, REGION_A_IDENTITIES),
        (REGION_B, REGION_B_IDENTITIES),
    ] {
        for &(kind, id) in identities {
            let (cert, key) = pki.identity(region, kind, id);
            let who = whoami_as(&pki, &node, &cert, &key)
                .await
                .unwrap_or_else(|e| panic!("{region} {kind} {id}: {e}"));
            assert_eq!(who.spiffe_id, format!("spiffe://{region}/{kind}/{id}"));
            assert_eq!(who.trust_domain, region);
            assert_eq!(who.kind, kind.as_str());
            assert_eq!(who.id, id);
            assert_eq!(who.node, "spiffe://region-a.credit.test/dept/samr");

            let der = &tls::load_certs(&cert).expect("cert")[0];
            let caller = tls::caller_from_cert(der).expect("caller");
            assert_eq!(who.certificate_serial, caller.serial);
            assert_eq!(who.certificate_sha256, tls::hex(&caller.fingerprint));
            assert!(
                who.certificate_not_after.ends_with('Z'),
                "{}",
                who.certificate_not_after
            );
        }
    }
    node.shutdown().await;
}

/// Each negative fixture is refused, for its own reason: the TLS alert names it.
#[tokio::test]
async fn negative_fixtures_are_refused_at_the_handshake() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    for (fixture, alert) in [
        ("rogue", "unknown ca"),
        ("expired", "certificate expired"),
        ("revoked", "certificate revoked"),
        // Issued by region B's CA, claims region A: verified against region A's roots only.
        ("cross-domain", "unknown ca"),
        ("no-spiffe-id", "access denied"),
        ("two-spiffe-ids", "access denied"),
        ("extra-uri-san", "access denied"),
    ] {
        let (cert, key) = pki.layout.negative(fixture);
        let result = whoami_as(&pki, &node, &cert, &key).await;
        match result {
            Ok(who) => panic!("{fixture} was accepted as {}", who.spiffe_id),
            Err(e) => assert!(
                e.to_string().contains(&format!("alert \"{alert}\"")),
                "{fixture}: expected TLS alert {alert}, got: {e}"
            ),
        }
    }
    // The node keeps serving good callers after all those refusals.
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    whoami_as(&pki, &node, &cert, &key)
        .await
        .expect("good caller still served");
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_without_certificate_is_refused() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let mut roots = rustls::RootCertStore::empty();
    for root in tls::load_certs(&pki.layout.ca_cert(REGION_A)).expect("ca") {
        roots.add(root).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let err = credit_node::cli::whoami::whoami(&endpoint(&node), Arc::new(config))
        .await
        .expect_err("no client certificate must be refused");
    assert!(
        err.to_string().contains("alert \"certificate required\""),
        "{err}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_tls12_only_client_is_refused() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let mut roots = rustls::RootCertStore::empty();
    for root in tls::load_certs(&pki.layout.ca_cert(REGION_A)).expect("ca") {
        roots.add(root).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            tls::load_certs(&cert).expect("cert"),
            tls::load_key(&key).expect("key"),
        )
        .expect("client auth");
    let tcp = TcpStream::connect(node.local_addr()).await.expect("tcp");
    let result = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await;
    let err = result.expect_err("TLS 1.2 must be refused");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_client_gets_nothing() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let plain = format!("http://127.0.0.1:{}", node.local_addr().port());
    let channel = tonic::transport::Endpoint::from_shared(plain)
        .expect("endpoint")
        .connect_lazy();
    let status = CreditQueryClient::new(channel)
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect_err("plaintext must be refused");
    assert_ne!(status.code(), tonic::Code::Ok);
    node.shutdown().await;
}

#[tokio::test]
async fn health_and_reflection_answer_stock_clients() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Operator, "admin");
    let channel = credit_node::client::connect(&endpoint(&node), pki.client_tls(&cert, &key))
        .await
        .expect("connect");

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "credit.v1.CreditQuery".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("message")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"credit.v1.CreditQuery"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    node.shutdown().await;
}

/// Reload through the node's own API: a newly revoked certificate is refused on the next
/// connection; a broken CRL file is refused while the running material stays.
#[tokio::test]
async fn reload_picks_up_a_new_crl_and_refuses_broken_material() {
    let pki = TestPki::new();
    let config_path = pki.write_config(REGION_A);
    let loaded = credit_node::config::LoadedConfig::load(&config_path).expect("config");
    let node = common::start_from_config(&config_path).await;
    let (court_cert, court_key) = pki.identity(REGION_A, Kind::Dept, "court");
    whoami_as(&pki, &node, &court_cert, &court_key)
        .await
        .expect("court before revocation");

    credit_node::pki::revoke(&pki.layout, REGION_A, &court_cert).expect("revoke");
    node.tls()
        .reload(loaded.tls_material().expect("material"))
        .expect("reload");
    let err = whoami_as(&pki, &node, &court_cert, &court_key)
        .await
        .expect_err("revoked after reload");
    assert!(
        err.to_string().contains("alert \"certificate revoked\""),
        "{err}"
    );

    std::fs::write(pki.layout.crl(REGION_A), "not a CRL").expect("break CRL");
    let refused = credit_node::config::LoadedConfig::load(&config_path)
        .expect("config")
        .tls_material();
    let err = refused.expect_err("broken CRL must be refused");
    assert!(err.to_string().contains("trust_domain[0].crls[0]"), "{err}");
    let (tax_cert, tax_key) = pki.identity(REGION_A, Kind::Dept, "tax");
    whoami_as(&pki, &node, &tax_cert, &tax_key)
        .await
        .expect("still serving");
    let err = whoami_as(&pki, &node, &court_cert, &court_key)
        .await
        .expect_err("still revoked");
    assert!(
        err.to_string().contains("alert \"certificate revoked\""),
        "{err}"
    );
    node.shutdown().await;
}

/// A node that accepts the connection and then says nothing (hung, or not a node at all) is
/// given up on: the client reports it instead of waiting forever.
#[tokio::test]
async fn a_peer_that_never_answers_is_given_up_on() {
    let pki = TestPki::new();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let (connection, _) = silent.accept().await.expect("accept");
        // Held open, never read or written, until the test ends.
        std::future::pending::<()>().await;
        drop(connection);
    });
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let endpoint = format!("https://127.0.0.1:{port}");
    let limits = client::Limits {
        connect: Duration::from_millis(300),
        ..client::LIMITS
    };
    let connecting = client::connect_within(&endpoint, pki.client_tls(&cert, &key), limits);
    // A guard against the limit not working: a failure, not a hung test.
    let err = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("the client's own limit ends the wait")
        .expect_err("a silent peer cannot give a channel");
    assert!(
        matches!(err, client::ClientError::Connect { .. })
            && err.to_string().contains("no answer within 300 ms"),
        "{err}"
    );
    held.abort();
}

/// A peer that completes TLS and HTTP/2, takes the call and never answers it (a node hung
/// behind a healthy listener): the call is given up at the client's limit, and the CLI says so.
#[tokio::test]
async fn a_call_that_is_never_answered_is_given_up_on() {
    let pki = TestPki::new();
    let (node_cert, node_key) = pki.identity(REGION_A, Kind::Dept, "samr");
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(
            tls::load_certs(&node_cert).expect("node cert"),
            tls::load_key(&node_key).expect("node key"),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let calls = Arc::new(tokio::sync::Notify::new());
    let taken = Arc::clone(&calls);
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let tls = acceptor.accept(tcp).await.expect("TLS");
        let mut h2 = h2::server::handshake(tls).await.expect("HTTP/2");
        // Every call is taken and held, unanswered, until the test ends.
        let mut held = Vec::new();
        while let Some(Ok(call)) = h2.accept().await {
            held.push(call);
            taken.notify_one();
        }
    });

    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let limits = client::Limits {
        call: Duration::from_millis(300),
        ..client::LIMITS
    };
    let channel = client::connect_within(
        &format!("https://127.0.0.1:{port}"),
        pki.client_tls(&cert, &key),
        limits,
    )
    .await
    .expect("the peer completes the handshakes");
    let mut api = CreditQueryClient::new(channel);
    let call = api.who_am_i(proto::WhoAmIRequest {});
    let status = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the client's own limit ends the wait")
        .expect_err("an unanswered call has no response");
    // The call reached the peer: the limit ended a call in flight, not a connection attempt.
    tokio::time::timeout(Duration::from_secs(30), calls.notified())
        .await
        .expect("the peer took the call");
    assert!(client::timed_out(&status), "{status:?}");
    assert_eq!(
        credit_node::cli::whoami::describe_status(&status),
        "CANCELLED: the node did not answer within 30 s; the call was given up"
    );
    peer.abort();
}

/// A client that comes back is verified again: the node never resumes a TLS session, because a
/// resumed session skips the certificate check (its expiry, the CRLs loaded since).
#[tokio::test]
async fn every_connection_is_a_full_handshake() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    // One config, so one session cache: what a client that reconnects would offer.
    let connector = TlsConnector::from(pki.client_tls(&cert, &key));
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(node.local_addr()).await.expect("tcp");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let tls = connector.connect(name, tcp).await.expect("handshake");
        // Read the node's first bytes: any session ticket comes before them.
        let mut tls = tokio::io::BufReader::new(tls);
        let first = tokio::io::AsyncBufReadExt::fill_buf(&mut tls)
            .await
            .expect("the node speaks first");
        assert!(!first.is_empty());
        kinds.push(tls.get_ref().get_ref().1.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Full)
        ]
    );
    node.shutdown().await;
}

/// A connection can outlive its certificate: a call made after the certificate's notAfter is
/// refused on the connection opened while it was valid, and nothing is answered.
#[tokio::test]
async fn a_certificate_that_expires_on_an_open_connection_is_refused_from_then_on() {
    let pki = TestPki::new();
    let now = common::SetClock::now();
    let node = common::start_with_clock(&pki.write_config(REGION_A), now.clock()).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let caller = tls::caller_from_cert(&tls::load_certs(&cert).expect("cert")[0]).expect("caller");
    let channel = client::connect(&common::endpoint(&node), pki.client_tls(&cert, &key))
        .await
        .expect("valid today");
    let mut api = CreditQueryClient::new(channel);
    api.who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("valid: answered");

    now.set(caller.not_after_unix + 1);
    let status = api
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect_err("expired: refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("has expired"), "{status:?}");
    let status = api
        .query(proto::QueryRequest {
            subject: "91330100716105852F".into(),
            purpose: "tax-administration".into(),
            ..Default::default()
        })
        .await
        .expect_err("expired: no query");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    node.shutdown().await;
}

/// Revoking a certificate and reloading cuts it off on the connection it already has open, not
/// only on new ones: the next call on that connection is not answered, and reconnecting is
/// refused for the revocation.
#[tokio::test]
async fn a_certificate_revoked_while_connected_is_cut_off_at_the_reload() {
    let pki = TestPki::new();
    let config_path = pki.write_config(REGION_A);
    let node = common::start_from_config(&config_path).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "court");
    let channel = client::connect(&common::endpoint(&node), pki.client_tls(&cert, &key))
        .await
        .expect("court connects");
    let mut api = CreditQueryClient::new(channel);
    api.who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("court before revocation");
    // Another caller's open connection is unaffected by the reload.
    let (tax_cert, tax_key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let tax = client::connect(
        &common::endpoint(&node),
        pki.client_tls(&tax_cert, &tax_key),
    )
    .await
    .expect("tax connects");
    let mut tax = CreditQueryClient::new(tax);

    credit_node::pki::revoke(&pki.layout, REGION_A, &cert).expect("revoke");
    common::reload_and_assert_cut_off(&node, &config_path, &mut api).await;
    tax.who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("a caller still trusted keeps its connection");
    node.shutdown().await;
}

/// The node's identity is fixed at start-up: a reload that offers another identity's
/// certificate is refused, and the node goes on serving as itself.
#[tokio::test]
async fn a_reload_cannot_change_the_nodes_identity() {
    let pki = TestPki::new();
    let config_path = pki.write_config(REGION_A);
    let node = common::start_from_config(&config_path).await;
    let (samr_cert, samr_key) = pki.identity(REGION_A, Kind::Dept, "samr");
    let (tax_cert, tax_key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let text = std::fs::read_to_string(&config_path).expect("config");
    let other = text
        .replace(
            &samr_cert.display().to_string(),
            &tax_cert.display().to_string(),
        )
        .replace(
            &samr_key.display().to_string(),
            &tax_key.display().to_string(),
        );
    assert_ne!(other, text);
    std::fs::write(&config_path, other).expect("config");
    let loaded = credit_node::config::LoadedConfig::load(&config_path).expect("config");
    let err = node
        .tls()
        .reload(loaded.tls_material().expect("material"))
        .expect_err("another identity's certificate");
    assert!(
        err.to_string().contains(
            "is spiffe://region-a.credit.test/dept/tax, but this node is spiffe://region-a.credit.test/dept/samr"
        ),
        "{err}"
    );
    let who = whoami_as(&pki, &node, &tax_cert, &tax_key)
        .await
        .expect("still serving");
    assert_eq!(who.node, "spiffe://region-a.credit.test/dept/samr");
    node.shutdown().await;
}
