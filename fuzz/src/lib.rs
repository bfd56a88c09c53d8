//! Helpers shared by the fuzz targets: an in-process gateway state on a
//! throwaway store, an in-memory socket, and a paused-clock runtime.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use clawgate_gateway::session::PeerContext;
use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig, RateLimitConfig};
use clawgate_gateway::{GatewayState, RuntimeOptions};
use clawgate_protocol::Secret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The shared secret of the fuzzed gateways (the seeds use it, so the
/// fuzzer reaches the authenticated request loop).
pub const SHARED_TOKEN: &str = "fuzz-shared-token-0123456789";

/// A gateway state on a fresh store in a temporary directory, as
/// `Gateway::bind` builds it. The limiter is opened up so a long run keeps
/// reaching the success paths after many failed attempts.
pub fn gateway_state(mode: AuthMode) -> (Arc<GatewayState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut auth = AuthConfig::new(
        mode,
        (mode == AuthMode::Token).then(|| Secret::new(SHARED_TOKEN)),
        (mode == AuthMode::Password).then(|| Secret::new(SHARED_TOKEN)),
    );
    auth.rate_limit = RateLimitConfig {
        max_attempts: u32::MAX,
        global_max_failures: u32::MAX,
        ..RateLimitConfig::default()
    };
    let mut config = GatewayConfig::loopback(dir.path(), auth);
    config.port = 0;
    let store = clawgate_store::Store::open(&dir.path().join(clawgate_store::DB_FILE_NAME))
        .expect("store opens");
    let state = GatewayState::new(config, RuntimeOptions::default(), Arc::new(store));
    (state, dir)
}

/// A current-thread runtime whose clock is paused: sleeps and timeouts
/// advance virtual time instantly once every task waits.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// The peer of a fuzzed connection; `kind` picks one of a few shapes.
pub fn peer(kind: u8, origin: Option<&str>) -> PeerContext {
    let (ip, direct_local): (IpAddr, bool) = match kind % 3 {
        0 => ([127, 0, 0, 1].into(), true),
        1 => ([192, 168, 1, 20].into(), false),
        _ => ([127, 0, 0, 1].into(), false),
    };
    PeerContext {
        ip,
        direct_local,
        origin: origin.map(str::to_owned),
        host: Some("127.0.0.1:18789".into()),
        proxy: Default::default(),
    }
}

/// Origins a fuzzed connect may carry: none, the gateway's own, a loopback
/// one, a foreign one, garbage.
pub const ORIGINS: &[Option<&str>] = &[
    None,
    Some("http://127.0.0.1:18789"),
    Some("http://localhost:5173"),
    Some("https://evil.example"),
    Some("null"),
    Some("http://[::1]:18789/"),
];

/// An in-memory socket: reads hand out `input` in chunks of `chunk`
/// bytes, then end of stream; writes are counted and dropped.
pub struct MemIo {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    pub written: usize,
}

impl MemIo {
    pub fn new(input: Vec<u8>, chunk: usize) -> MemIo {
        MemIo {
            input,
            pos: 0,
            chunk: chunk.max(1),
            written: 0,
        }
    }

    /// The input bytes handed out by reads so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl AsyncRead for MemIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this
            .chunk
            .min(this.input.len() - this.pos)
            .min(buf.remaining());
        buf.put_slice(&this.input[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Says nothing of readiness: the connection keeps its codec (a `MemIo`
/// is always ready anyway).
impl clawgate_gateway::fuzzing::ReadReady for MemIo {}

impl AsyncWrite for MemIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
