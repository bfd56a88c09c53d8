//! The lean client path: TCP (optionally from a chosen loopback source
//! address), WebSocket upgrade, `connect.challenge`, `connect`, `hello-ok`.
//! Frames are pre-built strings; responses are parsed into borrowed structs
//! that skip everything but `type`, `id`, `ok` and `error`.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate_protocol::PROTOCOL_VERSION;
use clawgate_protocol::device_auth::{PayloadFields, payload_v3};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

pub type Ws = WebSocketStream<TcpStream>;

/// Deadline of one full handshake (TCP connect to `hello-ok`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a finished socket may take to complete the close handshake.
pub const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// WebSocket buffers: small, so thousands of held sockets stay cheap; the
/// read buffer grows for a large `hello-ok` anyway.
pub fn ws_config(write_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(write_buffer)
        .max_write_buffer_size(usize::MAX)
}

/// Why an attempt did not end in `hello-ok` (or a request in a response).
#[derive(Debug)]
pub enum Failure {
    Io(std::io::Error),
    Timeout,
    /// The server closed the socket: close-frame code, if it sent one.
    Closed(Option<u16>),
    /// The upgrade was answered with this HTTP status.
    Http(u16),
    /// Something that is not the OpenClaw protocol.
    Protocol(String),
    /// `ok:false`: `error.details.code`, else `error.code`, and the message.
    Rejected {
        code: String,
        message: String,
    },
}

impl Failure {
    /// The key errors are counted under.
    pub fn kind(&self) -> String {
        match self {
            Failure::Io(_) => "io".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Closed(Some(c)) => format!("closed-{c}"),
            Failure::Closed(None) => "closed".into(),
            Failure::Http(s) => format!("http-{s}"),
            Failure::Protocol(_) => "protocol".into(),
            Failure::Rejected { code, .. } => code.clone(),
        }
    }

    /// A human line for the first error of each kind.
    pub fn detail(&self) -> String {
        match self {
            Failure::Io(e) => e.to_string(),
            Failure::Timeout => format!(
                "no hello-ok / response within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
            Failure::Closed(Some(c)) => format!("server closed the socket with code {c}"),
            Failure::Closed(None) => "server closed the socket without a close frame".into(),
            Failure::Http(s) => format!("upgrade refused with HTTP {s}"),
            Failure::Protocol(m) => m.clone(),
            Failure::Rejected { message, .. } => message.clone(),
        }
    }
}

pub fn ws_failure(e: WsError) -> Failure {
    match e {
        WsError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout,
        WsError::Io(e) => Failure::Io(e),
        WsError::ConnectionClosed | WsError::AlreadyClosed => Failure::Closed(None),
        WsError::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::HandshakeIncomplete,
        ) => Failure::Closed(None),
        WsError::Http(resp) => Failure::Http(resp.status().as_u16()),
        other => Failure::Protocol(other.to_string()),
    }
}

/// The gateway under test: a validated loopback `ws://` URL and the source
/// addresses to spread sockets over.
pub struct Target {
    pub url: String,
    uri: Uri,
    pub addr: SocketAddr,
    src_ips: Vec<IpAddr>,
    next_src: AtomicUsize,
}

impl Target {
    pub fn new(url: &str, src_ips: Option<&str>) -> Result<Target, String> {
        let (uri, addr) = parse_url(url)?;
        let src_ips = match src_ips {
            Some(spec) => parse_src_ips(spec)?,
            None => Vec::new(),
        };
        if !src_ips.is_empty() && !addr.is_ipv4() {
            return Err("--src-ips needs an IPv4 --url (127.0.0.1, not ::1)".into());
        }
        Ok(Target {
            url: url.to_string(),
            uri,
            addr,
            src_ips,
            next_src: AtomicUsize::new(0),
        })
    }

    pub fn src_ips(&self) -> &[IpAddr] {
        &self.src_ips
    }

    /// The next source address, round-robin (None: let the kernel choose).
    pub fn pick_src(&self) -> Option<IpAddr> {
        if self.src_ips.is_empty() {
            return None;
        }
        let i = self.next_src.fetch_add(1, Ordering::Relaxed);
        Some(self.src_ips[i % self.src_ips.len()])
    }

    /// TCP connect (from `src` when given) and the WebSocket upgrade.
    pub async fn open(&self, src: Option<IpAddr>, cfg: WebSocketConfig) -> Result<Ws, Failure> {
        let sock = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(Failure::Io)?;
        let _ = sock.set_nodelay(true);
        if let Some(ip) = src {
            crate::sys::bind_address_no_port(&sock);
            sock.bind(SocketAddr::new(ip, 0)).map_err(Failure::Io)?;
        }
        let stream = sock.connect(self.addr).await.map_err(Failure::Io)?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(self.uri.clone(), stream, Some(cfg))
                .await
                .map_err(ws_failure)?;
        Ok(ws)
    }
}

/// Accepts only `ws://` URLs whose host is a loopback address.
pub fn parse_url(url: &str) -> Result<(Uri, SocketAddr), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some(other) => {
            return Err(format!(
                "--url must be a ws:// URL (got {other}://); the bench only drives loopback gateways"
            ));
        }
        None => return Err(format!("--url {url:?} must be a ws:// URL")),
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--url {url:?} has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if bare.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bare.parse().map_err(|_| {
            format!(
                "--url host {host:?} is not a loopback address (use 127.0.0.1, ::1 or localhost)"
            )
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "--url host {host} is not a loopback address: clawgate-bench only drives gateways on this machine"
        ));
    }
    let port = uri.port_u16().unwrap_or(80);
    Ok((uri, SocketAddr::new(ip, port)))
}

/// `127.0.0.1-8` (last octet range), `127.0.0.1-127.0.0.8`, single
/// addresses, or a comma-separated mix; IPv4 loopback only.
pub fn parse_src_ips(spec: &str) -> Result<Vec<IpAddr>, String> {
    let bad = || {
        format!(
            "--src-ips {spec:?}: expected loopback IPv4 addresses like 127.0.0.1-8 or 127.0.0.1,127.0.0.2"
        )
    };
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            None => {
                let ip: Ipv4Addr = part.parse().map_err(|_| bad())?;
                (ip, ip)
            }
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
                let b = b.trim();
                let b: Ipv4Addr = match b.parse::<u8>() {
                    Ok(last) => {
                        let o = a.octets();
                        Ipv4Addr::new(o[0], o[1], o[2], last)
                    }
                    Err(_) => b.parse().map_err(|_| bad())?,
                };
                (a, b)
            }
        };
        let (lo, hi) = (u32::from(first), u32::from(last));
        if hi < lo {
            return Err(format!("--src-ips {part:?}: the range is empty"));
        }
        if hi - lo >= 4096 {
            return Err(format!("--src-ips {part:?}: at most 4096 addresses"));
        }
        for n in lo..=hi {
            let ip = Ipv4Addr::from(n);
            if !ip.is_loopback() {
                return Err(format!(
                    "--src-ips: {ip} is not a loopback address (127.0.0.0/8 only)"
                ));
            }
            out.push(IpAddr::V4(ip));
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// The shared secret as sent, and the pre-built parts of the connect frame.
pub struct Credentials {
    /// `","method":"connect","params":{...,"scopes":[...]` + `,"auth":{...}`.
    head: String,
    /// The v3 signature's token slot: the shared token ("" for a password).
    sign_token: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Auth {
    Token(String),
    Password(String),
    None,
}

impl Auth {
    pub fn mode(&self) -> &'static str {
        match self {
            Auth::Token(_) => "token",
            Auth::Password(_) => "password",
            Auth::None => "none",
        }
    }
}

impl Credentials {
    pub fn new(auth: &Auth) -> Credentials {
        let v = PROTOCOL_VERSION;
        let auth_json = match auth {
            Auth::Token(t) => format!(r#","auth":{{"token":{}}}"#, json_str(t)),
            Auth::Password(p) => format!(r#","auth":{{"password":{}}}"#, json_str(p)),
            Auth::None => String::new(),
        };
        let head = format!(
            r#"","method":"connect","params":{{"minProtocol":{v},"maxProtocol":{v},"client":{{"id":"cli","version":"bench","platform":"linux","mode":"cli"}},"role":"operator","scopes":["operator.read"]{auth_json}"#
        );
        Credentials {
            head,
            sign_token: match auth {
                Auth::Token(t) => t.clone(),
                _ => String::new(),
            },
            scopes: vec!["operator.read".to_string()],
        }
    }

    /// The whole `connect` request.
    pub fn connect_frame(&self, id: &str, device: Option<(&DeviceKey, &Challenge)>) -> String {
        let mut s = String::with_capacity(self.head.len() + 400);
        s.push_str(r#"{"type":"req","id":""#);
        s.push_str(id);
        s.push_str(&self.head);
        if let Some((dev, ch)) = device {
            dev.push_device_json(&mut s, ch, &self.sign_token, &self.scopes);
        }
        s.push_str("}}");
        s
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// One bench device: an Ed25519 key derived from a fixed seed, so re-runs
/// present the same (already paired) devices.
pub struct DeviceKey {
    key: SigningKey,
    pub id: String,
    public_key: String,
}

impl DeviceKey {
    pub fn from_index(i: usize) -> DeviceKey {
        let seed: [u8; 32] = Sha256::digest(format!("clawgate-bench device seed v1 #{i}")).into();
        let key = SigningKey::from_bytes(&seed);
        let raw = key.verifying_key().to_bytes();
        let id = clawgate_protocol::device_auth::device_id(&raw);
        DeviceKey {
            key,
            id,
            public_key: URL_SAFE_NO_PAD.encode(raw),
        }
    }

    fn push_device_json(&self, s: &mut String, ch: &Challenge, token: &str, scopes: &[String]) {
        let payload = payload_v3(&PayloadFields {
            device_id: &self.id,
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes,
            signed_at_ms: ch.ts,
            token,
            nonce: &ch.nonce,
            platform: "linux",
            device_family: "",
        });
        let sig = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        use std::fmt::Write;
        let _ = write!(
            s,
            r#","device":{{"id":"{}","publicKey":"{}","signature":"{}","signedAt":{},"nonce":{}}}"#,
            self.id,
            self.public_key,
            sig,
            ch.ts,
            json_str(&ch.nonce)
        );
    }
}

/// The `connect.challenge` payload.
pub struct Challenge {
    pub nonce: String,
    pub ts: u64,
}

#[derive(Deserialize)]
struct EventFrame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(default)]
    payload: Option<ChallengePayload>,
}

#[derive(Deserialize)]
struct ChallengePayload {
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    ts: Option<u64>,
}

/// A frame as far as the bench cares: responses by id, events skipped.
#[derive(Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub ty: Cow<'a, str>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub error: Option<ErrorShape>,
}

#[derive(Deserialize)]
pub struct ErrorShape {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

impl ErrorShape {
    /// `error.details.code`, else `error.code`.
    pub fn key(&self) -> String {
        self.details
            .as_ref()
            .and_then(|d| d.get("code"))
            .and_then(|c| c.as_str())
            .or(self.code.as_deref())
            .unwrap_or("error")
            .to_string()
    }

    pub fn into_failure(self) -> Failure {
        let code = self.key();
        Failure::Rejected {
            code,
            message: self.message.unwrap_or_default(),
        }
    }
}

pub fn parse_frame(text: &str) -> Result<Frame<'_>, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::Protocol(format!("unparsable frame: {e}")))
}

/// The next text frame (pings are answered by tungstenite as we read).
pub async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, Failure> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(f))) => return Err(Failure::Closed(f.map(|f| f.code.into()))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws_failure(e)),
            None => return Err(Failure::Closed(None)),
        }
    }
}

fn parse_challenge(text: &str) -> Result<Challenge, Failure> {
    let f: EventFrame<'_> = serde_json::from_str(text)
        .map_err(|e| Failure::Protocol(format!("unparsable first frame: {e}")))?;
    if f.ty != "event" || f.event.as_deref() != Some("connect.challenge") {
        return Err(Failure::Protocol(
            "the first frame was not a connect.challenge event".into(),
        ));
    }
    match f.payload {
        Some(ChallengePayload {
            nonce: Some(nonce),
            ts: Some(ts),
        }) => Ok(Challenge { nonce, ts }),
        _ => Err(Failure::Protocol(
            "connect.challenge without nonce/ts".into(),
        )),
    }
}

/// A failed handshake, with the socket when it is still worth closing
/// politely (the server sent an error response and will close it).
pub type HandshakeError = (Failure, Option<Ws>);

/// One full handshake: TCP, upgrade, challenge, `connect`, `hello-ok`.
/// The caller bounds it with [`HANDSHAKE_TIMEOUT`].
pub async fn handshake(
    target: &Target,
    creds: &Credentials,
    device: Option<&DeviceKey>,
    src: Option<IpAddr>,
    cfg: WebSocketConfig,
) -> Result<Ws, HandshakeError> {
    let mut ws = target.open(src, cfg).await.map_err(|f| (f, None))?;
    let ch = match next_text(&mut ws).await {
        Ok(t) => match parse_challenge(&t) {
            Ok(ch) => ch,
            Err(f) => return Err((f, Some(ws))),
        },
        Err(f) => return Err((f, None)),
    };
    let id = format!("1:{}", uuid::Uuid::new_v4());
    let frame = creds.connect_frame(&id, device.map(|d| (d, &ch)));
    if let Err(e) = ws.send(Message::text(frame)).await {
        return Err((ws_failure(e), None));
    }
    loop {
        let text = match next_text(&mut ws).await {
            Ok(t) => t,
            Err(f) => return Err((f, None)),
        };
        let frame = match parse_frame(&text) {
            Ok(f) => f,
            Err(f) => return Err((f, Some(ws))),
        };
        if frame.ty != "res" || frame.id.as_deref() != Some(id.as_str()) {
            continue;
        }
        if frame.ok == Some(true) {
            return Ok(ws);
        }
        let failure = match frame.error {
            Some(e) => e.into_failure(),
            None => Failure::Protocol("ok:false without an error".into()),
        };
        return Err((failure, Some(ws)));
    }
}

/// Sends a close frame and waits briefly for the server's reply and EOF, so
/// the server closes the TCP connection first (its side keeps TIME_WAIT,
/// not the bench's ephemeral ports).
pub async fn finish(mut ws: Ws, wait: Duration) {
    let _ = tokio::time::timeout(wait, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_ws_urls() {
        assert_eq!(
            parse_url("ws://127.0.0.1:18789").unwrap().1,
            "127.0.0.1:18789".parse().unwrap()
        );
        assert_eq!(
            parse_url("ws://localhost:9/").unwrap().1,
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            parse_url("ws://[::1]:9").unwrap().1,
            "[::1]:9".parse().unwrap()
        );
        assert!(parse_url("ws://127.3.4.5:9").is_ok());
        for bad in [
            "ws://10.0.0.1:18789",
            "ws://example.com:18789",
            "wss://127.0.0.1:18789",
            "http://127.0.0.1:18789",
            "ws://[::2]:1",
            "127.0.0.1:18789",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn src_ip_ranges() {
        let ips = parse_src_ips("127.0.0.1-8").unwrap();
        assert_eq!(ips.len(), 8);
        assert_eq!(ips[7], "127.0.0.8".parse::<IpAddr>().unwrap());
        assert_eq!(parse_src_ips("127.0.0.1-127.0.0.3").unwrap().len(), 3);
        assert_eq!(parse_src_ips("127.0.0.1,127.0.0.9").unwrap().len(), 2);
        assert!(parse_src_ips("10.0.0.1-3").is_err());
        assert!(parse_src_ips("127.0.0.5-2").is_err());
        assert!(parse_src_ips("").is_err());
    }

    #[test]
    fn connect_frame_is_valid_json() {
        let creds = Credentials::new(&Auth::Token("t\"ok".into()));
        let ch = Challenge {
            nonce: "n-1".into(),
            ts: 1234,
        };
        let dev = DeviceKey::from_index(3);
        for frame in [
            creds.connect_frame("1:x", None),
            creds.connect_frame("1:x", Some((&dev, &ch))),
        ] {
            let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(v["method"], "connect");
            assert_eq!(v["params"]["auth"]["token"], "t\"ok");
            assert_eq!(v["params"]["minProtocol"], PROTOCOL_VERSION);
        }
        let v: serde_json::Value =
            serde_json::from_str(&creds.connect_frame("1:x", Some((&dev, &ch)))).unwrap();
        assert_eq!(v["params"]["device"]["id"], dev.id.as_str());
        assert_eq!(v["params"]["device"]["signedAt"], 1234);
        assert_eq!(v["params"]["device"]["nonce"], "n-1");
        assert_eq!(dev.id.len(), 64);
        assert_eq!(DeviceKey::from_index(3).id, dev.id);
    }

    #[test]
    fn error_key_prefers_details_code() {
        let f = parse_frame(
            r#"{"type":"res","id":"1","ok":false,"error":{"code":"INVALID_REQUEST","message":"m","details":{"code":"AUTH_TOKEN_MISMATCH"}}}"#,
        )
        .unwrap();
        assert_eq!(f.error.unwrap().key(), "AUTH_TOKEN_MISMATCH");
        let f = parse_frame(
            r#"{"type":"res","id":"1","ok":false,"error":{"code":"UNAVAILABLE","message":"m","details":"x"}}"#,
        )
        .unwrap();
        assert_eq!(f.error.unwrap().key(), "UNAVAILABLE");
    }
}
