//! Accepted connections: TLS terminated by us (not by tonic), so the verified peer certificate is
//! turned into a typed [`Caller`] exactly once per connection and handed to every request on it.
//!
//! A connection can outlive the trust it was accepted under: when the TLS material is reloaded
//! (a new CRL, a trust bundle removed), the next read on every open connection first verifies
//! its client's certificate again with the new verifier, and a connection that fails is closed
//! before another request is read from it. The check costs one atomic load per read otherwise.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::{
    identity::Caller,
    tls::{self, ServerTls},
};

/// What tonic puts into each request's extensions: the caller proven by the handshake.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub caller: Arc<Caller>,
    pub remote: SocketAddr,
}

/// A verified mutual-TLS connection. Holding the permit keeps it counted against
/// `limits.max_connections` until tonic drops the connection.
pub struct TlsConnection {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
    _permit: OwnedSemaphorePermit,
    /// The node's current TLS material, changed by reloads.
    trust: watch::Receiver<ServerTls>,
    /// Set once the client's certificate failed a check after a reload: nothing more is read.
    refused: bool,
}

impl TlsConnection {
    pub fn new(
        inner: TlsStream<TcpStream>,
        info: PeerInfo,
        permit: OwnedSemaphorePermit,
        trust: watch::Receiver<ServerTls>,
    ) -> Self {
        Self {
            inner,
            info,
            _permit: permit,
            trust,
            refused: false,
        }
    }

    /// After a reload, whether the client's certificate still verifies; `refused` sticks.
    fn still_trusted(&mut self) -> bool {
        // A closed channel (the node shutting down) is no reload.
        if !self.refused && self.trust.has_changed().unwrap_or(false) {
            let verifier = self.trust.borrow_and_update().verifier.clone();
            let peer = self.inner.get_ref().1.peer_certificates().unwrap_or(&[]);
            if let Err(error) = tls::still_trusted(&verifier, peer) {
                tracing::warn!(caller = %self.info.caller.spiffe_id, remote = %self.info.remote,
                    %error, "open connection closed: its client certificate is refused after the reload");
                self.refused = true;
            }
        }
        !self.refused
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.still_trusted() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the client certificate is no longer trusted",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
