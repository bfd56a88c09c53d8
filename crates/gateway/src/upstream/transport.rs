//! The byte stream to the upstream (TCP, or TLS pinned to
//! `gateway.upstream.tlsFingerprint`) and [`HandshakeIo`], which lets the
//! relay drop the buffer the upstream's large `hello-ok` grew.
//!
//! The WebSocket codec keeps the capacity of the largest frame it ever
//! read for the life of the socket; OpenClaw's `hello-ok` is ~15 KB, so
//! every relayed client would carry it. During the handshake `HandshakeIo`
//! follows the frame boundaries of the inbound bytes and never hands the
//! codec more than the rest of the current frame, so once `hello-ok` is
//! delivered the codec holds no unread byte and can be replaced by a fresh
//! one with small buffers (`link.rs`). After that it is a pass-through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::Upstream;

/// A byte stream to the upstream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// The TLS settings for a `wss://` / `https://` upstream.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    pub(super) fn for_upstream(host: &str, pin: Option<&clawgate_client::TlsPin>) -> Tls {
        let config: Arc<_> = clawgate_client::tls::client_config(pin);
        let name = ServerName::try_from(host.to_string())
            .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid name"));
        Tls {
            connector: TlsConnector::from(config),
            name,
        }
    }
}

impl Upstream {
    /// Opens the byte stream to the upstream: TCP (no Nagle), then TLS for
    /// a `wss://` upstream, pinned when a fingerprint is configured.
    pub async fn transport(&self) -> io::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port)).await?;
        let _ = tcp.set_nodelay(true);
        Ok(match &self.tls {
            Some(tls) => Box::new(tls.connector.connect(tls.name.clone(), tcp).await?),
            None => Box::new(tcp),
        })
    }
}

/// Where [`HandshakeIo`] is in the inbound byte stream.
#[derive(Debug)]
enum Phase {
    /// The HTTP response to the upgrade; `matched` bytes of "\r\n\r\n".
    HttpHead { matched: usize },
    /// WebSocket frames: reads stop at frame boundaries.
    Frames,
    /// After the handshake: a plain pass-through.
    Passthrough,
}

/// See the module docs.
pub struct HandshakeIo<S> {
    inner: S,
    phase: Phase,
    header: [u8; 14],
    header_len: usize,
    payload_left: u64,
    /// Whole messages (control frames, final data frames) read so far.
    messages: u64,
}

impl<S> HandshakeIo<S> {
    /// Follows frames from the start of an upgrade response.
    pub fn new(inner: S) -> HandshakeIo<S> {
        HandshakeIo {
            inner,
            phase: Phase::HttpHead { matched: 0 },
            header: [0; 14],
            header_len: 0,
            payload_left: 0,
            messages: 0,
        }
    }

    /// A pass-through over an established socket.
    pub fn passthrough(inner: S) -> HandshakeIo<S> {
        HandshakeIo {
            phase: Phase::Passthrough,
            ..HandshakeIo::new(inner)
        }
    }

    /// Whether exactly `delivered` whole messages have been read and not a
    /// byte more: then a codec that delivered them holds nothing unread.
    pub fn drained_after(&self, delivered: u64) -> bool {
        matches!(self.phase, Phase::Frames)
            && self.header_len == 0
            && self.payload_left == 0
            && self.messages == delivered
    }

    /// Stops following frames (the handshake is over).
    pub fn set_passthrough(&mut self) {
        self.phase = Phase::Passthrough;
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The header bytes still needed before the current header is complete.
    fn header_need(&self) -> usize {
        if self.header_len < 2 {
            return 2 - self.header_len;
        }
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask - self.header_len
    }

    /// Follows frame boundaries over `bytes` (inbound, in order).
    fn track(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = (self.payload_left as usize).min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_need() > 0 {
                continue;
            }
            let len = match self.header[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
                n => u64::from(n),
            };
            self.payload_left = len;
            if len == 0 {
                self.frame_done();
            }
        }
    }

    /// A frame's payload ended.
    fn frame_done(&mut self) {
        let fin = self.header[0] & 0x80 != 0;
        let control = self.header[0] & 0x08 != 0;
        if fin || control {
            self.messages += 1;
        }
        self.header_len = 0;
    }
}

/// The most one read takes while frames are tracked (the upstream's
/// handshake frames; hello-ok is a few KiB).
const HANDSHAKE_READ_CHUNK: usize = 8 * 1024;

impl<S: AsyncRead + Unpin> AsyncRead for HandshakeIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Passthrough => Pin::new(&mut this.inner).poll_read(cx, buf),
            Phase::HttpHead { matched } => {
                let before = buf.filled().len();
                let res = Pin::new(&mut this.inner).poll_read(cx, buf);
                if let Poll::Ready(Ok(())) = res {
                    let fresh = buf.filled()[before..].to_vec();
                    let mut matched = matched;
                    for (i, b) in fresh.iter().enumerate() {
                        let want = b"\r\n\r\n"[matched];
                        matched = if *b == want {
                            matched + 1
                        } else if *b == b'\r' {
                            1
                        } else {
                            0
                        };
                        if matched == 4 {
                            this.phase = Phase::Frames;
                            this.track(&fresh[i + 1..]);
                            return res;
                        }
                    }
                    this.phase = Phase::HttpHead { matched };
                }
                res
            }
            Phase::Frames => {
                // Never past the end of the current frame (or header).
                let limit = if this.payload_left > 0 {
                    usize::try_from(this.payload_left).unwrap_or(usize::MAX)
                } else {
                    this.header_need()
                };
                // Only during the upstream handshake: a small scratch copy
                // keeps this free of unsafe initialisation bookkeeping.
                let mut scratch = [0u8; HANDSHAKE_READ_CHUNK];
                let limit = limit.min(buf.remaining()).min(HANDSHAKE_READ_CHUNK);
                let mut limited = ReadBuf::new(&mut scratch[..limit]);
                let res = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
                if let Poll::Ready(Ok(())) = res {
                    let fresh = limited.filled();
                    buf.put_slice(fresh);
                    this.track(fresh);
                }
                res
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HandshakeIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A server frame (unmasked) with `payload`.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn reads_stop_at_frame_boundaries() {
        let big = vec![b'x'; 20_000];
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let mut stream = head.to_vec();
        stream.extend(frame(1, true, b"challenge"));
        stream.extend(frame(1, true, &big));
        stream.extend(frame(1, true, b"after"));
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        tokio::io::AsyncWriteExt::write_all(&mut server, &stream)
            .await
            .unwrap();
        let mut io = HandshakeIo::new(&mut client);
        let mut head_and_challenge = vec![0u8; head.len() + 11];
        io.read_exact(&mut head_and_challenge).await.unwrap();
        assert!(io.drained_after(1), "the challenge ended the read");
        // A large read buffer still gets only the rest of the big frame.
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while !io.drained_after(2) {
            got += io.read(&mut buf).await.unwrap();
        }
        assert_eq!(got, 4 + big.len());
        assert!(!io.drained_after(3));
    }

    #[tokio::test]
    async fn fragments_and_control_frames_count_as_messages() {
        let mut stream = b"HTTP/1.1 101 OK\r\n\r\n".to_vec();
        stream.extend(frame(1, false, b"part"));
        stream.extend(frame(9, true, b"")); // a ping between fragments
        stream.extend(frame(0, true, b"rest"));
        let total = stream.len();
        let (mut client, mut server) = tokio::io::duplex(4096);
        tokio::io::AsyncWriteExt::write_all(&mut server, &stream)
            .await
            .unwrap();
        let mut io = HandshakeIo::new(&mut client);
        let mut all = vec![0u8; total];
        io.read_exact(&mut all).await.unwrap();
        assert!(io.drained_after(2));
    }
}
