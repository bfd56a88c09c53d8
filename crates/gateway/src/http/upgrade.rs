//! The WebSocket upgrade, decided in one place for the two ways a request
//! reaches it:
//!
//! - **Read here, off the socket** ([`first_request`], the common case):
//!   the accept loop reads the connection's first request head itself
//!   (httparse). An upgrade that passes every check gets its `101`
//!   written here and the WebSocket handler runs in the same task, on the
//!   same socket: no hyper connection, no upgrade hand-off, no second
//!   task, and the `101` leaves in the same write as the challenge.
//! - **Routed by hyper** (`routes.rs`): everything else: any other request,
//!   a head this reader will not take (too large, malformed, HTTP/1.0, a
//!   body), an upgrade that is refused (the refusal is answered there,
//!   once, with its metric), trusted-proxy mode (its verdict may fetch the
//!   proxy's key set). The bytes already read are replayed to hyper
//!   ([`Prefixed`]), so it sees the connection from its first byte.
//!
//! Both ways run [`check`] and [`acquire`]: the same rules in the same
//! order.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::auth;
use crate::config::AuthMode;
use crate::http::headers::{
    forwarded_client, has_forwarding_headers, header_str, host_header, is_websocket_upgrade,
};
use crate::session::{PeerContext, ProxyAuth, is_loopback};
use crate::state::GatewayState;
use crate::state::slots::{SlotRefusal, UnauthSlot};
use crate::ws::ReadReady;

/// The largest first request head read here; a larger one goes to hyper
/// (which has its own limit).
const MAX_HEAD: usize = 16 * 1024;
/// The most headers read here; more go to hyper.
const MAX_HEADERS: usize = 48;
/// The paths hyper routes even for an upgrade request (see `routes.rs`).
const ROUTED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// An upgrade request that passed every rule before the slot.
pub(crate) struct Checked {
    /// The client: the TCP peer, or the address a trusted proxy forwarded.
    client_ip: IpAddr,
    forwarded: bool,
    /// `Sec-WebSocket-Accept`.
    pub accept: String,
}

/// A refused upgrade: the answer and its metric label.
pub(crate) struct Refused {
    pub status: StatusCode,
    pub message: &'static str,
    pub metric: Option<&'static str>,
}

/// The rules an upgrade request must pass, in order: a GET, forwarding
/// headers only from trusted proxies, not shutting down, version 13, a key.
/// (The Host rule runs before, for every request.)
pub(crate) fn check(
    state: &GatewayState,
    peer: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Checked, Refused> {
    // RFC 6455: the opening handshake is a GET.
    if method != Method::GET {
        return Err(Refused {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "a WebSocket upgrade must be a GET request",
            metric: Some("method_not_get"),
        });
    }
    let forwarded = has_forwarding_headers(headers);
    if forwarded && !state.is_trusted_proxy(peer.ip()) {
        return Err(Refused {
            status: StatusCode::FORBIDDEN,
            message: "proxy_attribution_required: forwarding headers are only accepted from gateway.trustedProxies",
            metric: Some("untrusted_forwarding"),
        });
    }
    if state.is_shutting_down() {
        return Err(Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "gateway is shutting down",
            metric: Some("shutting_down"),
        });
    }
    if header_str(headers, "sec-websocket-version") != Some("13") {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            message: "unsupported websocket version",
            metric: None,
        });
    }
    let Some(key) = headers.get("sec-websocket-key") else {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            message: "missing sec-websocket-key",
            metric: None,
        });
    };
    let client_ip = if forwarded {
        forwarded_client(state, headers, peer.ip())
    } else {
        peer.ip()
    };
    Ok(Checked {
        client_ip,
        forwarded,
        accept: derive_accept_key(key.as_bytes()),
    })
}

/// An unauthenticated-socket slot for the client (per-address and global
/// caps), or the refusal.
pub(crate) fn acquire(state: &GatewayState, checked: &Checked) -> Result<UnauthSlot, Refused> {
    state
        .acquire_unauth(checked.client_ip)
        .map_err(|which| Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "too many unauthenticated connections; retry shortly",
            metric: Some(match which {
                SlotRefusal::Global => "unauth_global_cap",
                SlotRefusal::PerIp => "unauth_per_ip_cap",
            }),
        })
}

/// Who the peer of an accepted upgrade is, with the trusted-proxy verdict.
pub(crate) fn peer_context(
    checked: &Checked,
    tcp_peer: SocketAddr,
    headers: &HeaderMap,
    proxy: ProxyAuth,
) -> PeerContext {
    // A user a proxy vouched for is not a local caller, even from a
    // loopback proxy that sends no forwarding headers (no silent pairing,
    // no local password path, no loopback limiter exemption).
    let vouched = matches!(proxy, ProxyAuth::Verified { .. });
    PeerContext {
        proxy,
        ip: checked.client_ip,
        // Dual-stack listeners report an IPv4 loopback peer as
        // `::ffff:127.0.0.1`: that is loopback too.
        direct_local: is_loopback(tcp_peer.ip()) && !checked.forwarded && !vouched,
        origin: header_str(headers, "origin").map(str::to_owned),
        host: header_str(headers, "host").map(str::to_owned),
    }
}

/// The `101 Switching Protocols` answer, as bytes.
pub(crate) fn switching_protocols(accept: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// What a connection's first request turned out to be.
pub(crate) enum FirstRequest {
    /// An upgrade that passed every check: its slot, the peer, the `101`
    /// to send (with the challenge), and the bytes read after the head.
    Upgrade {
        slot: UnauthSlot,
        peer: PeerContext,
        response: Vec<u8>,
        rest: Vec<u8>,
    },
    /// Anything else: the bytes read so far, for hyper.
    Hyper(Vec<u8>),
    /// The peer closed before sending a whole head.
    Closed,
}

/// Reads the first request head off `io` and decides whether it is an
/// upgrade this path takes (see the module docs). The caller bounds the
/// time this may take.
pub(crate) async fn first_request<S: AsyncRead + Unpin>(
    state: &GatewayState,
    tcp_peer: SocketAddr,
    io: &mut S,
) -> io::Result<FirstRequest> {
    let mut buf = Vec::with_capacity(1024);
    // Parsed again only when a line has ended since the last parse: a head
    // dribbled a byte per read costs a parse per line, not per byte (and a
    // malformed line is still answered at once).
    let mut scanned = 0;
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_HEAD {
                return Ok(FirstRequest::Hyper(buf));
            }
            buf.reserve(buf.len());
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(if buf.is_empty() {
                FirstRequest::Closed
            } else {
                FirstRequest::Hyper(buf)
            });
        }
        if !buf[scanned..].contains(&b'\n') {
            scanned = buf.len();
            continue;
        }
        scanned = buf.len();
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                return Ok(match take_upgrade(state, tcp_peer, &req) {
                    Some((slot, peer, response)) => FirstRequest::Upgrade {
                        slot,
                        peer,
                        response,
                        rest: buf.split_off(len),
                    },
                    None => FirstRequest::Hyper(buf),
                });
            }
            // Malformed, or more headers than read here: hyper answers.
            Err(_) => return Ok(FirstRequest::Hyper(buf)),
        }
    }
}

/// The upgrade in a parsed head, when this path takes it: a checked
/// upgrade with a slot. `None` leaves the request to hyper, which answers
/// it (and counts any refusal) as it answers every other request.
fn take_upgrade(
    state: &GatewayState,
    tcp_peer: SocketAddr,
    req: &httparse::Request<'_, '_>,
) -> Option<(UnauthSlot, PeerContext, Vec<u8>)> {
    let path = req.path?;
    let path = path.split('?').next().unwrap_or(path);
    if req.version != Some(1) || ROUTED_PATHS.contains(&path) {
        return None;
    }
    // Trusted-proxy mode: the verdict may need the proxy's key set.
    if state.auth().config.mode == AuthMode::TrustedProxy {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    // A body on the opening handshake: hyper reads it as a body.
    if headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        return None;
    }
    if !is_websocket_upgrade(&headers) || !auth::host_allowed(&state.config, host_header(&headers))
    {
        return None;
    }
    let checked = check(state, tcp_peer, &method, &headers).ok()?;
    let slot = acquire(state, &checked).ok()?;
    let peer = peer_context(&checked, tcp_peer, &headers, ProxyAuth::NotApplicable);
    Some((slot, peer, switching_protocols(&checked.accept)))
}

/// A stream that yields `prefix` before reading from `io` (the bytes read
/// off the socket before it was handed on); writes go straight to `io`.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    io: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, io: S) -> Self {
        Prefixed { prefix, at: 0, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Replayed: its memory goes back now, not with the socket.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: ReadReady> ReadReady for Prefixed<S> {
    fn can_wait_readable(&self) -> bool {
        self.io.can_wait_readable()
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            return Poll::Ready(Ok(()));
        }
        self.io.poll_read_ready(cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefixed_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut p = Prefixed::new(b"hello".to_vec(), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
        assert!(p.prefix.capacity() == 0, "the replayed prefix is freed");
    }

    #[test]
    fn switching_protocols_is_a_whole_head() {
        let out = switching_protocols("abc=");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        assert_eq!(
            resp.parse(&out).unwrap(),
            httparse::Status::Complete(out.len())
        );
        assert_eq!(resp.code, Some(101));
        assert!(
            resp.headers
                .iter()
                .any(|h| h.name == "sec-websocket-accept" && h.value == b"abc=")
        );
    }
}
