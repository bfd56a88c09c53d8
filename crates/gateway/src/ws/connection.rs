//! The framing of one WebSocket: tungstenite's codec over the pre-auth
//! guard (`preauth_io.rs`), with the few ways the gateway writes to it
//! (a text frame, an unbuffered large frame, an error reply then a close).
//! Hides the codec from the handler, as mini-redis's `Connection` does.
//!
//! While an authenticated connection waits for its peer with nothing read
//! and nothing queued, the codec is dropped ("parked") and only the socket
//! is kept:
//! the codec's read buffer, wakers and write buffer go back to the
//! allocator, which is most of what an idle connection costs beyond its
//! task. The socket's readiness, or anything to write, brings a fresh
//! codec back. Only sockets that can report readiness without a read
//! ([`ReadReady`]: plain TCP) park; TLS and hyper's upgraded stream keep
//! their codec. Before authentication a connection never parks: that
//! phase lasts a handshake timeout at most, and a refusal or a handshake
//! would only pay for dropping and rebuilding the codec.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use clawgate_protocol::frames::{ErrorShape, Response};
use clawgate_protocol::{MAX_PAYLOAD_BYTES, MAX_PREAUTH_PAYLOAD_BYTES, truncate_close_reason};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

use crate::ws::preauth_io::{PreauthGuardedIo, is_preauth_too_large};

/// A stream that can tell it has bytes to read without reading them, so a
/// connection over it can drop its codec while idle. The defaults say it
/// cannot (TLS, whose library holds decrypted bytes of its own; hyper's
/// upgraded stream; in-memory streams): such a connection keeps its codec.
pub trait ReadReady {
    /// Whether [`ReadReady::poll_read_ready`] means what it says.
    fn can_wait_readable(&self) -> bool {
        false
    }

    /// Ready when a read would return bytes, end of stream or an error
    /// (a spurious wake-up is allowed: the codec then finds nothing and the
    /// connection parks again).
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ReadReady for tokio::net::TcpStream {
    fn can_wait_readable(&self) -> bool {
        true
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl<S> ReadReady for tokio_rustls::server::TlsStream<S> {}
impl ReadReady for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

/// The WebSocket settings for every connection: small read buffer (most
/// frames are tiny, idle connections should cost little) and the post-auth
/// size limit; the pre-auth limit is enforced under the codec.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Also the most read per syscall. The codec keeps this buffer
        // while it exists (it is dropped while the connection is parked):
        // 1 KiB costs no measured pipelined RPC CPU against 2 KiB (2.74 µs
        // either way, BENCHMARKS.md); 512 bytes cost ~25% of the RPC rate.
        .read_buffer_size(1024)
        // Frames fed without a flush (an error response before its close
        // frame, a ping before a tick) go out in one write.
        .write_buffer_size(4096)
        .max_message_size(Some(MAX_PAYLOAD_BYTES))
        .max_frame_size(Some(MAX_PAYLOAD_BYTES))
}

/// A codec over the socket, built at once (tokio-tungstenite's constructor
/// is async but ready on its first poll; the waker it records is replaced
/// on every poll).
fn codec<S: AsyncRead + AsyncWrite + Unpin>(io: PreauthGuardedIo<S>) -> Codec<S> {
    let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(ws_config()))
        .now_or_never()
        .expect("a codec over a raw socket is ready at once");
    Codec::Active(Box::new(ws))
}

enum Codec<S> {
    /// Boxed: the codec's ~340 bytes are not carried inline by an idle
    /// connection's task.
    Active(Box<WebSocketStream<PreauthGuardedIo<S>>>),
    /// Idle: the socket alone, nothing read and nothing queued.
    Parked(PreauthGuardedIo<S>),
    /// Only while switching between the two.
    Switching,
}

/// How a parked connection learns that its socket has bytes to read.
type PollReady<S> = fn(&S, &mut Context<'_>) -> Poll<std::io::Result<()>>;

/// One upgraded socket.
pub(crate) struct Connection<S> {
    ws: Codec<S>,
    /// Cleared once the session is authenticated: the pre-auth frame cap
    /// stops applying.
    preauth_armed: Arc<AtomicBool>,
    /// `Some` when the socket can report readiness.
    poll_ready: Option<PollReady<S>>,
    /// Authenticated, over a socket that reports readiness: the codec may
    /// park.
    may_park: bool,
    /// Frames were queued in the codec and not yet flushed.
    queued: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + ReadReady> Connection<S> {
    /// Wraps an upgraded stream, with the pre-auth frame cap armed.
    pub fn new(io: S) -> Self {
        let poll_ready = io
            .can_wait_readable()
            .then_some(<S as ReadReady>::poll_read_ready as PollReady<S>);
        let (io, preauth_armed) = PreauthGuardedIo::new(io, MAX_PREAUTH_PAYLOAD_BYTES);
        Connection {
            ws: codec(io),
            preauth_armed,
            poll_ready,
            may_park: false,
            queued: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// The session is authenticated: lifts the pre-auth frame cap, and
    /// lets the codec park from now on (at once when it is at rest).
    ///
    /// Otherwise the codec's read buffer, grown to the size of the connect
    /// frame, would keep that capacity while the codec lives: when nothing
    /// but that frame has been read (no pipelined bytes to lose), the
    /// session starts with a fresh codec instead.
    pub fn authenticated(&mut self) {
        self.preauth_armed.store(false, Ordering::Relaxed);
        self.may_park = self.poll_ready.is_some();
        if self.park_if_idle() {
            return;
        }
        if let Codec::Active(ws) = &self.ws
            && ws.get_ref().read_exactly_one_frame()
            && !self.queued
            && let Codec::Active(ws) = std::mem::replace(&mut self.ws, Codec::Switching)
        {
            self.ws = codec((*ws).into_inner());
        }
    }

    /// The codec, brought back first when the connection is parked.
    fn active(&mut self) -> &mut WebSocketStream<PreauthGuardedIo<S>> {
        if let Codec::Parked(_) = self.ws
            && let Codec::Parked(io) = std::mem::replace(&mut self.ws, Codec::Switching)
        {
            self.ws = codec(io);
        }
        match &mut self.ws {
            Codec::Active(ws) => ws,
            _ => unreachable!("the codec is switched in place"),
        }
    }

    /// The socket under the codec, parked or not.
    fn io_mut(&mut self) -> &mut PreauthGuardedIo<S> {
        match &mut self.ws {
            Codec::Active(ws) => ws.get_mut(),
            Codec::Parked(io) => io,
            Codec::Switching => unreachable!("the codec is switched in place"),
        }
    }

    /// Whether the connection is parked (its codec dropped).
    #[cfg(test)]
    fn is_parked(&self) -> bool {
        matches!(self.ws, Codec::Parked(_))
    }

    /// Drops the codec when it may park (authenticated, and the socket can
    /// report readiness), nothing unread is in the codec (every byte read belongs to a frame it has
    /// returned, no fragmented message is half assembled) and nothing is
    /// queued or waiting to be written (an automatic pong included).
    fn park_if_idle(&mut self) -> bool {
        if !self.may_park || self.queued {
            return false;
        }
        let Codec::Active(ws) = &self.ws else {
            return false;
        };
        if !ws.get_ref().at_rest() {
            return false;
        }
        let Codec::Active(ws) = std::mem::replace(&mut self.ws, Codec::Switching) else {
            unreachable!("checked above")
        };
        self.ws = Codec::Parked((*ws).into_inner());
        true
    }

    /// The next message: a parked connection waits for its socket to be
    /// readable, then reads with a fresh codec; a codec that finds nothing
    /// to read parks.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        let mut parked_here = false;
        loop {
            if let (Codec::Parked(io), Some(ready)) = (&self.ws, self.poll_ready) {
                // Bytes, the end of the stream or an error: the codec reads
                // and reports it.
                if ready(io.get_ref(), cx).is_pending() {
                    return Poll::Pending;
                }
            }
            let next = Pin::new(self.active()).poll_next(cx);
            // Parks at most once per poll: readiness that the codec then
            // finds nothing behind leaves it active until the next poll.
            if next.is_pending() && !parked_here && self.park_if_idle() {
                parked_here = true;
                continue;
            }
            return next;
        }
    }

    /// The next message from the peer.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), WsError> {
        self.active().send(Message::Text(text.into())).await?;
        self.queued = false;
        Ok(())
    }

    /// Queues one text frame without flushing (a reply of a batch).
    pub async fn feed_text(&mut self, text: String) -> Result<(), WsError> {
        self.queued = true;
        self.active().feed(Message::Text(text.into())).await
    }

    /// Queues one message as it is (a relayed frame, without a copy),
    /// without flushing; an error when the socket is gone.
    pub async fn feed_message(&mut self, message: Message) -> Result<(), WsError> {
        self.queued = true;
        self.active().feed(message).await
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        if let Codec::Parked(_) = self.ws {
            // Nothing is queued while parked.
            return Ok(());
        }
        self.active().flush().await?;
        self.queued = false;
        Ok(())
    }

    /// Queues a frame without flushing: it goes out with the next send or
    /// close, in the same write.
    pub async fn feed(&mut self, message: Message) {
        self.queued = true;
        let _ = self.active().feed(message).await;
    }

    /// Writes one text frame, given as `parts` in order, straight to the
    /// socket instead of through tungstenite's write buffer, which keeps
    /// the capacity of the largest frame it ever held for the life of the
    /// connection. `hello-ok` is the largest frame most connections ever
    /// get (~15 KB, most of it the features list the caller passes as a
    /// part of its own, uncopied), so an idle connection stays smaller.
    /// Safe because everything written before was flushed.
    pub async fn send_unbuffered(&mut self, parts: &[&str]) -> std::io::Result<()> {
        self.write_text_frame(&[], parts).await
    }

    /// Writes `preamble` (the upgrade's `101`, or nothing) and the text
    /// frame `text` in one write: the first thing the socket sends.
    pub async fn send_first(&mut self, preamble: Vec<u8>, text: &str) -> std::io::Result<()> {
        self.write_text_frame(&preamble, &[text]).await
    }

    /// `preamble`, then one text frame of `parts`, with vectored writes
    /// straight to the socket, then a flush.
    async fn write_text_frame(&mut self, preamble: &[u8], parts: &[&str]) -> std::io::Result<()> {
        let len = parts.iter().map(|p| p.len()).sum();
        let (header, n) = frame_header(len);
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 2);
        slices.extend(
            std::iter::once(preamble)
                .chain(std::iter::once(&header[..n]))
                .chain(parts.iter().map(|p| p.as_bytes()))
                .filter(|b| !b.is_empty())
                .map(IoSlice::new),
        );
        let io = self.io_mut();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let written = io.write_vectored(slices).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        io.flush().await
    }

    /// Closes with `code` and `reason` (cut to the protocol's limit), then
    /// waits briefly for the peer's close so the TCP close is clean.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: truncate_close_reason(reason).to_string().into(),
        };
        let ws = self.active();
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }

    /// Sends an error response to request `id`, then closes with `code` and
    /// `reason` (the error's message when `None`), both in one write.
    pub async fn reject(&mut self, id: &str, error: ErrorShape, code: u16, reason: Option<&str>) {
        let reason = reason.map_or_else(|| error.message.clone(), str::to_owned);
        self.feed(Message::Text(Response::err(id, error).to_json().into()))
            .await;
        self.close(code, &reason).await;
    }
}

/// The header of an unmasked (server-to-client), final text frame with a
/// payload of `len` bytes (RFC 6455 5.2): the bytes and how many are used.
fn frame_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Whether a read failed because a frame was over the size limit (the
/// pre-auth cap under the codec, or the codec's own).
pub(crate) fn is_oversize(err: &WsError) -> bool {
    match err {
        WsError::Io(e) => is_preauth_too_large(e),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// A server `Connection` and the raw client socket, over loopback TCP.
    async fn pair() -> (Connection<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Connection::new(server), client)
    }

    /// A masked client frame (RFC 6455 5.3) with the mask 1, 2, 3, 4.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 | opcode } else { opcode }];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Polls for the next message once: `None` when none is ready (the
    /// connection then parks if it can).
    fn poll_once(conn: &mut Connection<TcpStream>) -> Option<Option<Result<Message, WsError>>> {
        conn.next().now_or_never()
    }

    /// Waits for the next message, failing after two seconds.
    async fn next(conn: &mut Connection<TcpStream>) -> Message {
        tokio::time::timeout(Duration::from_secs(2), conn.next())
            .await
            .expect("a message within 2 s")
            .expect("not closed")
            .expect("no error")
    }

    /// Reads exactly `n` bytes the server sent.
    async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut buf))
            .await
            .expect("bytes within 2 s")
            .unwrap();
        buf
    }

    /// An idle connection drops its codec and gets a working one back when
    /// the peer writes; pings are still answered, sends still go out.
    #[tokio::test]
    async fn an_idle_connection_parks_and_wakes() {
        let (mut conn, mut client) = pair().await;
        assert!(poll_once(&mut conn).is_none());
        assert!(!conn.is_parked(), "not authenticated: never parked");
        conn.authenticated();
        assert!(
            conn.is_parked(),
            "authenticated with nothing read: parked at once"
        );
        assert!(poll_once(&mut conn).is_none());
        assert!(conn.is_parked());

        client
            .write_all(&client_frame(true, 1, b"one"))
            .await
            .unwrap();
        assert_eq!(next(&mut conn).await, Message::Text("one".into()));
        assert!(poll_once(&mut conn).is_none());
        assert!(conn.is_parked(), "the frame was returned: parked again");

        // A ping wakes it; the automatic pong goes out with the next poll
        // (tungstenite's way), which then parks again.
        client
            .write_all(&client_frame(true, 9, b"p"))
            .await
            .unwrap();
        assert_eq!(next(&mut conn).await, Message::Ping(b"p".to_vec().into()));
        assert!(poll_once(&mut conn).is_none());
        assert!(conn.is_parked());
        assert_eq!(read_n(&mut client, 3).await, [0x8a, 1, b'p']);

        // A send while parked brings a codec back for the write only.
        conn.send_text("hi".into()).await.unwrap();
        assert_eq!(read_n(&mut client, 4).await, [0x81, 2, b'h', b'i']);
        assert!(poll_once(&mut conn).is_none());
        assert!(conn.is_parked());

        // The peer closing is seen from the parked state.
        drop(client);
        let end = tokio::time::timeout(Duration::from_secs(2), conn.next())
            .await
            .expect("the end within 2 s");
        assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    }

    /// Never parks with bytes the codec holds: half a frame, or the first
    /// frame of a fragmented message, or a queued frame not yet flushed.
    #[tokio::test]
    async fn never_parks_with_state_in_the_codec() {
        let (mut conn, mut client) = pair().await;
        conn.authenticated();
        let frame = client_frame(true, 1, b"hello");
        client.write_all(&frame[..4]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(poll_once(&mut conn).is_none());
        assert!(!conn.is_parked(), "half a frame read");
        client.write_all(&frame[4..]).await.unwrap();
        assert_eq!(next(&mut conn).await, Message::Text("hello".into()));

        client
            .write_all(&client_frame(false, 1, b"frag"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(poll_once(&mut conn).is_none());
        assert!(!conn.is_parked(), "half a message assembled");
        client
            .write_all(&client_frame(true, 0, b"ment"))
            .await
            .unwrap();
        assert_eq!(next(&mut conn).await, Message::Text("fragment".into()));

        conn.feed(Message::Ping(Default::default())).await;
        assert!(poll_once(&mut conn).is_none());
        assert!(!conn.is_parked(), "a frame is queued");
        conn.flush().await.unwrap();
        assert_eq!(read_n(&mut client, 2).await, [0x89, 0]);
        assert!(poll_once(&mut conn).is_none());
        assert!(conn.is_parked(), "flushed: parks");
    }

    /// The hand-made header is the one tungstenite formats, at every
    /// length class.
    #[test]
    fn frame_header_matches_tungstenite() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let frame = Frame::message(text, OpCode::Data(Data::Text), true);
            let mut bytes = Vec::new();
            frame.format(&mut bytes).unwrap();
            let (h, n) = frame_header(len);
            assert_eq!(&bytes[..n], &h[..n], "len {len}");
            assert_eq!(bytes.len(), n + len, "len {len}");
        }
    }
}
