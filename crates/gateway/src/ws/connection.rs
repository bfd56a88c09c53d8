//! The framing of one WebSocket: tungstenite's codec over the pre-auth
//! guard (`preauth_io.rs`), with the few ways the gateway writes to it
//! (a text frame, an unbuffered large frame, an error reply then a close).
//! Hides the codec from the handler, as mini-redis's `Connection` does.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clawgate_protocol::frames::{ErrorShape, Response};
use clawgate_protocol::{MAX_PAYLOAD_BYTES, MAX_PREAUTH_PAYLOAD_BYTES, truncate_close_reason};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

use crate::ws::preauth_io::{PreauthGuardedIo, is_preauth_too_large};

/// The WebSocket settings for every connection: small read buffer (most
/// frames are tiny, idle connections should cost little) and the post-auth
/// size limit; the pre-auth limit is enforced under the codec.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Also the most read per syscall. The codec keeps this buffer for
        // the connection's life: 1 KiB is ~1 KB less per idle session than
        // 2 KiB at no measured cost in pipelined RPC CPU (2.74 µs either
        // way, BENCHMARKS.md); 512 bytes cost ~25% of the RPC rate.
        .read_buffer_size(1024)
        // Frames fed without a flush (an error response before its close
        // frame, a ping before a tick) go out in one write.
        .write_buffer_size(4096)
        .max_message_size(Some(MAX_PAYLOAD_BYTES))
        .max_frame_size(Some(MAX_PAYLOAD_BYTES))
}

/// One upgraded socket.
pub(crate) struct Connection<S> {
    ws: WebSocketStream<PreauthGuardedIo<S>>,
    /// Cleared once the session is authenticated: the pre-auth frame cap
    /// stops applying.
    preauth_armed: Arc<AtomicBool>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an upgraded stream, with the pre-auth frame cap armed.
    pub async fn new(io: S) -> Self {
        let (io, preauth_armed) = PreauthGuardedIo::new(io, MAX_PREAUTH_PAYLOAD_BYTES);
        let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(ws_config())).await;
        Connection { ws, preauth_armed }
    }

    /// The session is authenticated: lifts the pre-auth frame cap.
    ///
    /// The codec's read buffer grew to the size of the connect frame and
    /// would keep that capacity for the whole session. When nothing but
    /// that frame has been read (no pipelined bytes to lose), the session
    /// starts with a fresh codec instead.
    pub async fn authenticated(self) -> Self {
        let Connection { ws, preauth_armed } = self;
        let ws = if ws.get_ref().read_exactly_one_frame() {
            WebSocketStream::from_raw_socket(ws.into_inner(), WsRole::Server, Some(ws_config()))
                .await
        } else {
            ws
        };
        preauth_armed.store(false, Ordering::Relaxed);
        Connection { ws, preauth_armed }
    }

    /// The next message from the peer.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        self.ws.next().await
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), WsError> {
        self.ws.send(Message::Text(text.into())).await
    }

    /// Queues one text frame without flushing (a reply of a batch).
    pub async fn feed_text(&mut self, text: String) -> Result<(), WsError> {
        self.ws.feed(Message::Text(text.into())).await
    }

    /// Queues one message as it is (a relayed frame, without a copy),
    /// without flushing; an error when the socket is gone.
    pub async fn feed_message(&mut self, message: Message) -> Result<(), WsError> {
        self.ws.feed(message).await
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        self.ws.flush().await
    }

    /// Queues a frame without flushing: it goes out with the next send or
    /// close, in the same write.
    pub async fn feed(&mut self, message: Message) {
        let _ = self.ws.feed(message).await;
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
        let io = self.ws.get_mut();
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
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(Some(frame))).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = self.ws.next().await {}
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
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

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
