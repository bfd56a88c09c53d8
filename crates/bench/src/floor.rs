//! `clawgate-bench floor`: the cost floor of a handshake on this machine.
//!
//! A server that does only what the bytes of a handshake force on any
//! server: accept, read the upgrade request, answer `101` with the
//! `connect.challenge` in the same write, read the `connect` frame, answer
//! with a `hello-ok` of a given size (or, for a wrong token, an error and a
//! close frame after the same per-address loopback delay a gateway uses),
//! read the client's close, answer it and close the socket. The frames are
//! the protocol crate's (the challenge event, the response, the catalogue's
//! refusal), the framing tungstenite's and the upgrade head httparse's. No
//! auth state, no presence, no audit, no allocator tuning: the token is
//! found by a substring search and only the request id is read out of the
//! `connect` frame (`FrameHead`). With
//! `--verify-ed25519` a connect that carries a device also costs decoding
//! one Ed25519 public key and one `verify_strict`, the work a
//! signed-device handshake cannot skip.
//!
//! Measured with the same `handshake` / `badauth` runs and `--server-pid`
//! as a gateway, its server CPU per operation is what the kernel and the
//! runtime cost for the socket work alone: the part of a gateway's figure
//! no gateway code can remove. It listens on 127.0.0.1 only and exits
//! after `--secs`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use clawgate_protocol::catalogue::{self, Audience, AuthFailure};
use clawgate_protocol::close_code;
use clawgate_protocol::connect::ClientKind;
use clawgate_protocol::frames::{ErrorShape, Event, FrameHead, Response};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::conn::Auth;
use crate::{BenchError, Ctx, check_secs};

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Port on 127.0.0.1 (0: a free one). The address is printed on stdout
    /// once the socket listens.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Length of the `hello-ok` text in bytes (clawgate's for an
    /// `operator.read` CLI connect is about 2,400).
    #[arg(long, default_value_t = 2368)]
    pub hello_bytes: usize,
    /// Verify one Ed25519 signature (`verify_strict`) per connect that
    /// carries a device.
    #[arg(long)]
    pub verify_ed25519: bool,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub secs: f64,
}

/// Loopback delay schedule for wrong secrets (as the gateway's limiter).
const DELAY_BASE_MS: u64 = 250;
const DELAY_MAX_MS: u64 = 5_000;
/// Largest request head or frame this server reads.
const MAX_READ: usize = 64 * 1024;
/// Request head headers parsed at most.
const MAX_HEADERS: usize = 32;

const TEXT: OpCode = OpCode::Data(Data::Text);
const CLOSE: OpCode = OpCode::Control(Control::Close);

struct Shared {
    /// `"token":"<T>"` as it appears in a right `connect`; None: any.
    needle: Option<String>,
    /// The `hello-ok` payload, padded so the frame is `--hello-bytes` long
    /// for the bench's request ids: built once.
    hello_payload: String,
    /// What a wrong token gets: the gateway's own refusal for a local CLI.
    refusal: ErrorShape,
    /// A public key's bytes, a message and its signature: decoded and
    /// verified once per device connect, as a gateway must.
    verify: Option<([u8; 32], Vec<u8>, Signature)>,
    failures: Mutex<HashMap<IpAddr, u32>>,
}

impl Shared {
    fn delay(&self, ip: IpAddr) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        let ms = DELAY_BASE_MS
            .saturating_mul(1u64 << (*n).min(16))
            .min(DELAY_MAX_MS);
        *n += 1;
        Duration::from_millis(ms)
    }
}

pub async fn run(ctx: &Ctx, a: FloorArgs) -> Result<(), BenchError> {
    let secs = check_secs("--secs", a.secs)?;
    let needle = match &ctx.auth {
        Auth::Token(t) => Some(format!(
            r#""token":{}"#,
            serde_json::to_string(t).expect("a string serializes")
        )),
        Auth::Password(p) => Some(format!(
            r#""password":{}"#,
            serde_json::to_string(p).expect("a string serializes")
        )),
        Auth::None => None,
    };
    let verify = a.verify_ed25519.then(|| {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        // About the size of a v3 payload.
        let msg = vec![b'v'; 220];
        let sig = key.sign(&msg);
        (key.verifying_key().to_bytes(), msg, sig)
    });
    let shared = Arc::new(Shared {
        needle,
        hello_payload: hello_payload(a.hello_bytes),
        refusal: catalogue::auth_failure(
            AuthFailure::TokenMismatch,
            Audience {
                kind: ClientKind::Cli,
                local: true,
            },
            false,
        ),
        verify,
        failures: Mutex::new(HashMap::new()),
    });
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, a.port)))
        .await
        .map_err(|e| BenchError::Failed(format!("cannot listen on 127.0.0.1:{}: {e}", a.port)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    println!("{addr}");
    eprintln!("floor: listening on {addr} for {} s", secs.as_secs_f64());
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((sock, peer)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let _ = serve(sock, peer, &shared).await;
                    });
                }
                // Out of descriptors and the like: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let _ = tokio::time::timeout(secs, accept).await;
    Ok(())
}

/// A `hello-ok` payload whose response frame, for a request id as long as
/// the bench's (`1:` and a UUID), is `total` bytes long.
fn hello_payload(total: usize) -> String {
    let sample_id = format!("1:{}", uuid::Uuid::nil());
    let bare =
        json!({"type": "hello-ok", "protocol": clawgate_protocol::PROTOCOL_VERSION, "pad": ""});
    let pad = total.saturating_sub(Response::ok_text(&sample_id, &bare.to_string()).len());
    json!({"type": "hello-ok", "protocol": clawgate_protocol::PROTOCOL_VERSION, "pad": "x".repeat(pad)})
        .to_string()
}

async fn serve(mut s: TcpStream, peer: SocketAddr, shared: &Shared) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let accept_key = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = req.parse(&buf).map_err(invalid)? {
            let key = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|h| derive_accept_key(h.value))
                .ok_or_else(|| invalid("no Sec-WebSocket-Key"))?;
            buf.drain(..len);
            break key;
        }
        read_more(&mut s, &mut buf).await?;
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let challenge = Event::new(
        "connect.challenge",
        json!({"nonce": uuid::Uuid::new_v4().to_string(), "ts": ts, "capabilities": []}),
        None,
    );
    push_frame(&mut out, TEXT, challenge.to_json().as_bytes());
    s.write_all(&out).await?;

    let mut payload = Vec::new();
    if read_frame(&mut s, &mut buf, &mut payload).await? != TEXT {
        return Ok(());
    }
    let text = std::str::from_utf8(&payload).map_err(invalid)?;
    let head = FrameHead::parse(text).ok_or_else(|| invalid("not a JSON object"))?;
    let id = head.id.ok_or_else(|| invalid("no request id"))?;
    let authorized = shared
        .needle
        .as_deref()
        .is_none_or(|needle| text.contains(needle));
    out.clear();
    if authorized {
        if let Some((key, msg, sig)) = &shared.verify
            && text.contains(r#""device":{"#)
        {
            VerifyingKey::from_bytes(key)
                .and_then(|key| key.verify_strict(msg, sig))
                .map_err(invalid)?;
        }
        let hello = Response::ok_text(&id, &shared.hello_payload);
        push_frame(&mut out, TEXT, hello.as_bytes());
        s.write_all(&out).await?;
        // The client closes; answer its close frame, then close the socket.
        loop {
            match read_frame(&mut s, &mut buf, &mut payload).await? {
                CLOSE => {
                    out.clear();
                    let code = &payload[..payload.len().min(2)];
                    push_frame(&mut out, CLOSE, code);
                    s.write_all(&out).await?;
                    return Ok(());
                }
                OpCode::Control(Control::Ping) => {
                    out.clear();
                    push_frame(&mut out, OpCode::Control(Control::Pong), &payload);
                    s.write_all(&out).await?;
                }
                _ => {}
            }
        }
    } else {
        tokio::time::sleep(shared.delay(peer.ip())).await;
        let refusal = Response::err(id.as_ref(), shared.refusal.clone());
        push_frame(&mut out, TEXT, refusal.to_json().as_bytes());
        let mut close = close_code::POLICY_VIOLATION.to_be_bytes().to_vec();
        close.extend_from_slice(shared.refusal.message.as_bytes());
        push_frame(&mut out, CLOSE, &close);
        s.write_all(&out).await?;
        // Wait for the client's close reply (or its EOF), then close.
        while read_frame(&mut s, &mut buf, &mut payload).await? != CLOSE {}
        Ok(())
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if buf.len() >= MAX_READ {
        return Err(invalid("too large"));
    }
    if s.read_buf(buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// One client frame, unmasked into `payload`; returns its opcode.
async fn read_frame(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    payload: &mut Vec<u8>,
) -> io::Result<OpCode> {
    loop {
        if let Some(op) = take_frame(buf, payload)? {
            return Ok(op);
        }
        read_more(s, buf).await?;
    }
}

/// The frame at the start of `buf`, when it is whole: removed from `buf`,
/// its payload unmasked into `payload`.
fn take_frame(buf: &mut Vec<u8>, payload: &mut Vec<u8>) -> io::Result<Option<OpCode>> {
    let mut cursor = io::Cursor::new(&buf[..]);
    let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(invalid)? else {
        return Ok(None);
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_READ)
        .ok_or_else(|| invalid("frame too large"))?;
    let at = cursor.position() as usize;
    if buf.len() < at + len {
        return Ok(None);
    }
    payload.clear();
    payload.extend_from_slice(&buf[at..at + len]);
    if let Some(mask) = header.mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    buf.drain(..at + len);
    Ok(Some(header.opcode))
}

/// A server frame (unmasked, final).
fn push_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec does not fail");
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_reader() {
        for len in [0usize, 125, 126, 300, 60_000] {
            let mut buf = Vec::new();
            push_frame(&mut buf, TEXT, &vec![b'a'; len]);
            let whole = buf.clone();
            // Any prefix of the frame is "not yet", and left as it is.
            let mut part = whole[..whole.len() - 1].to_vec();
            let mut payload = Vec::new();
            assert!(take_frame(&mut part, &mut payload).unwrap().is_none());
            assert_eq!(part.len(), whole.len() - 1);
            assert_eq!(take_frame(&mut buf, &mut payload).unwrap(), Some(TEXT));
            assert_eq!(payload, vec![b'a'; len]);
            assert!(buf.is_empty());
        }
        let mut huge = Vec::new();
        FrameHeader {
            opcode: TEXT,
            ..FrameHeader::default()
        }
        .format(1 << 32, &mut huge)
        .unwrap();
        assert!(take_frame(&mut huge, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_masked_client_frame_is_unmasked() {
        let mask = [1u8, 2, 3, 4];
        let text = br#"{"type":"req","id":"1:x"}"#;
        let mut buf = Vec::new();
        FrameHeader {
            opcode: TEXT,
            mask: Some(mask),
            ..FrameHeader::default()
        }
        .format(text.len() as u64, &mut buf)
        .unwrap();
        buf.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        buf.extend_from_slice(b"next");
        let mut payload = Vec::new();
        assert_eq!(take_frame(&mut buf, &mut payload).unwrap(), Some(TEXT));
        assert_eq!(payload, text);
        assert_eq!(buf, b"next");
    }

    #[test]
    fn hello_ok_has_the_asked_length_and_the_refusal_is_the_gateways() {
        let id = format!("1:{}", uuid::Uuid::new_v4());
        let hello = Response::ok_text(&id, &hello_payload(2368));
        assert_eq!(hello.len(), 2368);
        let v: serde_json::Value = serde_json::from_str(&hello).unwrap();
        assert_eq!(v["payload"]["type"], "hello-ok");
        let refusal = catalogue::auth_failure(
            AuthFailure::TokenMismatch,
            Audience {
                kind: ClientKind::Cli,
                local: true,
            },
            false,
        );
        assert_eq!(refusal.detail_code(), Some("AUTH_TOKEN_MISMATCH"));
    }

    #[test]
    fn the_delay_doubles_per_address_up_to_five_seconds() {
        let shared = Shared {
            needle: None,
            hello_payload: String::new(),
            refusal: ErrorShape::invalid_request("x"),
            verify: None,
            failures: Mutex::new(HashMap::new()),
        };
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let ms: Vec<u128> = (0..7).map(|_| shared.delay(ip).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        assert_eq!(shared.delay(other).as_millis(), 250);
    }
}
