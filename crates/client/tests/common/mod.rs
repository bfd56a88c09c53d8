//! A real clawgate gateway on 127.0.0.1:0 for the client's integration
//! tests, plus the small helpers they share: handshake counts from the
//! gateway's metrics, an event reader, an admin client, a TCP forwarder
//! that timestamps connections and a TLS terminator in front of the
//! gateway.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawgate_client::{Client, ClientEvent, ConnectOptions};
use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig};
use clawgate_gateway::testkit;
use clawgate_gateway::{Gateway, GatewayState, RuntimeOptions};
use clawgate_protocol::Secret;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub const TOKEN: &str = "client-test-token-A-3b7e91";
pub const TOKEN_B: &str = "client-test-token-B-c40d5f";
pub const PASSWORD: &str = "client test password 8d2f";

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: Arc<GatewayState>,
    handle: clawgate_gateway::GatewayHandle,
    _dir: tempfile::TempDir,
}

/// A loopback gateway configuration in `mode` (token: [`TOKEN`],
/// password: [`PASSWORD`]) with its own state directory.
pub fn config(mode: AuthMode) -> (GatewayConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::loopback(
        dir.path(),
        AuthConfig::new(
            mode,
            (mode == AuthMode::Token).then(|| Secret::new(TOKEN)),
            (mode == AuthMode::Password).then(|| Secret::new(PASSWORD)),
        ),
    );
    cfg.port = 0;
    (cfg, dir)
}

/// Without the loopback failure delays (250 ms doubling), so that the
/// client's own timing can be measured.
pub fn without_failure_delays(cfg: &mut GatewayConfig) {
    cfg.auth.rate_limit.exempt_loopback = false;
    cfg.auth.rate_limit.max_attempts = 1000;
}

pub fn options() -> RuntimeOptions {
    RuntimeOptions::default()
}

impl TestGateway {
    pub async fn start(mode: AuthMode) -> TestGateway {
        let (cfg, dir) = config(mode);
        Self::start_with(cfg, options(), dir).await
    }

    pub async fn start_with(
        cfg: GatewayConfig,
        options: RuntimeOptions,
        dir: tempfile::TempDir,
    ) -> TestGateway {
        let handle = Gateway::bind(cfg, options)
            .await
            .expect("bind")
            .spawn()
            .expect("spawn");
        TestGateway {
            addr: handle.local_addr(),
            state: handle.state().clone(),
            handle,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The key device tokens for this gateway are cached under.
    pub fn origin(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Changes the shared token live; returns how many sessions the
    /// gateway closed because they used the old one.
    pub fn set_token(&self, token: &str) -> usize {
        let mut auth = (*self.state.auth().config).clone();
        auth.token = Some(Secret::new(token));
        self.state
            .apply_auth_config(auth, "test")
            .expect("auth config applied")
    }

    /// `clawgate_handshakes_total` by outcome.
    pub fn handshakes(&self) -> Handshakes {
        Handshakes::parse(&testkit::metrics_text(&self.state))
    }

    /// The handshake counts once every earlier connection has ended (a
    /// successful handshake is counted just after hello-ok goes out, so a
    /// snapshot right after `Client::connect` returned could miss it).
    pub async fn idle_handshakes(&self) -> Handshakes {
        let until = Instant::now() + WAIT;
        while testkit::open_connections(&self.state) != 0 {
            assert!(Instant::now() < until, "connections still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.handshakes()
    }

    /// Waits until the gateway has seen `expected` handshakes more than
    /// `before`, then a little longer (so that an extra one would show),
    /// and returns the difference.
    pub async fn attempts_since(&self, before: &Handshakes, expected: u64) -> Handshakes {
        let until = Instant::now() + WAIT;
        while self.handshakes().total() < before.total() + expected && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.handshakes().minus(before)
    }

    pub async fn stop(self) {
        self.handle.stop().await.unwrap();
    }
}

/// Handshake counts by outcome ("ok" or the error's details.code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshakes(pub BTreeMap<String, u64>);

impl Handshakes {
    fn parse(metrics: &str) -> Handshakes {
        let prefix = "clawgate_handshakes_total{outcome=\"";
        let mut out = BTreeMap::new();
        for line in metrics.lines() {
            if let Some(rest) = line.strip_prefix(prefix) {
                let (outcome, value) = rest.split_once("\"} ").expect("metric line");
                out.insert(outcome.to_string(), value.trim().parse().unwrap());
            }
        }
        Handshakes(out)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn get(&self, outcome: &str) -> u64 {
        self.0.get(outcome).copied().unwrap_or(0)
    }

    fn minus(&self, before: &Handshakes) -> Handshakes {
        Handshakes(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.get(k)))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    /// `[("AUTH_TOKEN_MISMATCH", 1), ("ok", 1)]` style, for assertions.
    pub fn pairs(&self) -> Vec<(&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }
}

/// A device-less admin session with the shared `token`.
pub async fn admin(url: &str, token: &str) -> Client {
    let mut opts = ConnectOptions::new(url)
        .token(token)
        .scopes(["operator.admin"]);
    opts.reconnect = false;
    Client::connect(opts).await.expect("admin connects")
}

/// The next connection event (gateway events such as `tick` are skipped).
pub async fn next_event(rx: &mut mpsc::Receiver<ClientEvent>) -> ClientEvent {
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("client event in time")
            .expect("event stream still open");
        if !matches!(ev, ClientEvent::Event { .. }) {
            return ev;
        }
    }
}

/// A short name for an event, for asserting sequences.
pub fn kind(ev: &ClientEvent) -> &'static str {
    match ev {
        ClientEvent::Connected { .. } => "Connected",
        ClientEvent::Recovered { .. } => "Recovered",
        ClientEvent::Disconnected { .. } => "Disconnected",
        ClientEvent::Reconnecting { .. } => "Reconnecting",
        ClientEvent::Paused(_) => "Paused",
        ClientEvent::Event { .. } => "Event",
    }
}

/// A TCP forwarder to `target` that records when each connection arrived.
pub struct Forwarder {
    pub addr: SocketAddr,
    pub accepted: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let log = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                log.lock().unwrap().push(Instant::now());
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Forwarder {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS terminator with a fresh self-signed certificate (for `localhost`
/// and `127.0.0.1`) that forwards the plaintext to `target`.
pub struct TlsFront {
    pub addr: SocketAddr,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(target: SocketAddr) -> TlsFront {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let cert_der = certified.cert.der().to_vec();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                    }
                });
            }
        });
        TlsFront {
            addr,
            cert_der,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("wss://{}/", self.addr)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
