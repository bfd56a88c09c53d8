//! `clawgate-bench floor`: the cost floor of a handshake on this machine.
//!
//! A server that does only what the bytes of a handshake force on any
//! server: accept, read the upgrade request, answer `101` with the
//! `connect.challenge` in the same write, read the `connect` frame, answer
//! with a `hello-ok` of a given size (or, for a wrong token, an error and a
//! close frame after the same per-address loopback delay a gateway uses),
//! read the client's close, answer it and close the socket. No JSON parser,
//! no auth state, no presence, no audit, no allocator tuning: the token is
//! found by a substring search, the request id cut out of the text. With
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
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

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

const OP_TEXT: u8 = 1;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// The refusal a wrong token gets: the same text a gateway sends.
const REFUSAL: &str = r#"","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)","details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":false,"recommendedNextStep":"update_auth_configuration"}}}"#;
const REFUSAL_REASON: &str = "unauthorized: gateway token mismatch";

struct Shared {
    /// `"token":"<T>"` as it appears in a right `connect`; None: any.
    needle: Option<String>,
    hello_bytes: usize,
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
        hello_bytes: a.hello_bytes,
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

async fn serve(mut s: TcpStream, peer: SocketAddr, shared: &Shared) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let key = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let key = header(&buf[..end], "sec-websocket-key")
                .ok_or_else(|| invalid("no Sec-WebSocket-Key"))?
                .to_owned();
            buf.drain(..end + 4);
            break key;
        }
        read_more(&mut s, &mut buf).await?;
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(derive_accept_key(key.as_bytes()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let challenge = format!(
        r#"{{"type":"event","event":"connect.challenge","payload":{{"nonce":"{}","ts":{},"capabilities":[]}}}}"#,
        uuid::Uuid::new_v4(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    push_frame(&mut out, OP_TEXT, challenge.as_bytes());
    s.write_all(&out).await?;

    let mut payload = Vec::new();
    if read_frame(&mut s, &mut buf, &mut payload).await? != OP_TEXT {
        return Ok(());
    }
    let text = std::str::from_utf8(&payload).map_err(|_| invalid("not UTF-8"))?;
    let id = cut(text, r#""id":""#).ok_or_else(|| invalid("no request id"))?;
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
                .map_err(|_| invalid("signature"))?;
        }
        let head = format!(
            r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"type":"hello-ok","protocol":4,"pad":""#
        );
        let mut body = String::with_capacity(shared.hello_bytes.max(head.len() + 3));
        body.push_str(&head);
        let pad = shared.hello_bytes.saturating_sub(head.len() + 3);
        body.extend(std::iter::repeat_n('x', pad));
        body.push_str("\"}}");
        push_frame(&mut out, OP_TEXT, body.as_bytes());
        s.write_all(&out).await?;
        // The client closes; answer its close frame, then close the socket.
        loop {
            match read_frame(&mut s, &mut buf, &mut payload).await? {
                OP_CLOSE => {
                    out.clear();
                    let code = &payload[..payload.len().min(2)];
                    push_frame(&mut out, OP_CLOSE, code);
                    s.write_all(&out).await?;
                    return Ok(());
                }
                OP_PING => {
                    out.clear();
                    push_frame(&mut out, OP_PONG, &payload);
                    s.write_all(&out).await?;
                }
                _ => {}
            }
        }
    } else {
        tokio::time::sleep(shared.delay(peer.ip())).await;
        let mut body = String::with_capacity(REFUSAL.len() + 64);
        body.push_str(r#"{"type":"res","id":""#);
        body.push_str(id);
        body.push_str(REFUSAL);
        push_frame(&mut out, OP_TEXT, body.as_bytes());
        let mut close = 1008u16.to_be_bytes().to_vec();
        close.extend_from_slice(REFUSAL_REASON.as_bytes());
        push_frame(&mut out, OP_CLOSE, &close);
        s.write_all(&out).await?;
        // Wait for the client's close reply (or its EOF), then close.
        while read_frame(&mut s, &mut buf, &mut payload).await? != OP_CLOSE {}
        Ok(())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of a header in a request head (name compared without case).
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The text after `start` up to the next `"`.
fn cut<'a>(text: &'a str, start: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find('"')?])
}

/// One client frame (masked), unmasked into `payload`; returns its opcode.
async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>, payload: &mut Vec<u8>) -> io::Result<u8> {
    loop {
        if let Some(h) = frame_header(buf)?
            && buf.len() >= h.at + h.len
        {
            payload.clear();
            payload.extend(
                buf[h.at..h.at + h.len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ h.mask[i % 4]),
            );
            buf.drain(..h.at + h.len);
            return Ok(h.op);
        }
        read_more(s, buf).await?;
    }
}

/// A frame's header: opcode, header length, payload length, mask.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    op: u8,
    at: usize,
    len: usize,
    mask: [u8; 4],
}

/// The header of the frame at the start of `b`, when it is complete.
fn frame_header(b: &[u8]) -> io::Result<Option<Header>> {
    if b.len() < 2 {
        return Ok(None);
    }
    let op = b[0] & 0x0f;
    let (len, mut at) = match b[1] & 0x7f {
        126 if b.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() < 10 => return Ok(None),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (
                usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                10,
            )
        }
        n => (n as usize, 2),
    };
    if len > MAX_READ {
        return Err(invalid("frame too large"));
    }
    let mut mask = [0u8; 4];
    if b[1] & 0x80 != 0 {
        if b.len() < at + 4 {
            return Ok(None);
        }
        mask.copy_from_slice(&b[at..at + 4]);
        at += 4;
    }
    Ok(Some(Header { op, at, len, mask }))
}

/// A server frame (unmasked, final).
fn push_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    out.push(0x80 | op);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_header_parser() {
        for len in [0usize, 125, 126, 300, 70_000 - 10_000] {
            let mut out = Vec::new();
            push_frame(&mut out, OP_TEXT, &vec![b'a'; len]);
            let h = frame_header(&out).unwrap().unwrap();
            assert_eq!((h.op, h.len, h.mask), (OP_TEXT, len, [0; 4]));
            assert_eq!(out.len(), h.at + len);
            // Any prefix shorter than the header is "not yet".
            assert!(frame_header(&out[..h.at - 1]).unwrap().is_none());
        }
        assert!(frame_header(&[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn header_and_id_extraction() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nsec-WebSocket-KEY:  abc== \r\n";
        assert_eq!(header(head, "sec-websocket-key"), Some("abc=="));
        assert_eq!(header(head, "origin"), None);
        assert_eq!(
            cut(r#"{"type":"req","id":"1:x","m":1}"#, r#""id":""#),
            Some("1:x")
        );
        assert_eq!(cut(r#"{"type":"req"}"#, r#""id":""#), None);
    }

    #[test]
    fn the_delay_doubles_per_address_up_to_five_seconds() {
        let shared = Shared {
            needle: None,
            hello_bytes: 0,
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
