//! A byte-stream adapter that enforces the pre-auth frame cap.
//!
//! tokio-tungstenite fixes its message-size limit when the stream is
//! created, but the protocol allows 64 KiB before authentication and
//! 25 MiB after. This adapter sits under the WebSocket codec and, until it
//! is disarmed, follows the frame headers in the inbound bytes: as soon as a
//! header announces a data message over the pre-auth cap it fails the read
//! with [`PreauthTooLarge`], before any payload is buffered, and the
//! connection closes with 1009. After authentication it still follows the
//! frame boundaries (a few header bytes per frame), so the connection
//! knows when its codec holds nothing unread and may be dropped while
//! idle (`connection.rs`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error a read fails with when a pre-auth frame is too large.
#[derive(Debug)]
pub struct PreauthTooLarge;

impl std::fmt::Display for PreauthTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("preauth payload too large")
    }
}

impl std::error::Error for PreauthTooLarge {}

/// Whether an I/O error is the pre-auth cap firing.
pub fn is_preauth_too_large(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<PreauthTooLarge>())
}

/// Follows WebSocket frame boundaries in a byte stream.
#[derive(Debug, Default)]
struct FrameTracker {
    header: [u8; 14],
    header_len: usize,
    payload_left: u64,
    message_len: u64,
    /// Frame headers seen so far.
    frames: u64,
    /// A data frame without FIN was seen and its message's last frame not
    /// yet: the codec holds a half-assembled message.
    in_message: bool,
}

impl FrameTracker {
    /// Feeds inbound bytes; returns false when `cap` (while armed) is
    /// exceeded.
    fn feed(&mut self, mut bytes: &[u8], cap: Option<u64>) -> bool {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = (self.payload_left as usize).min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len < 2 {
                continue;
            }
            let len7 = self.header[1] & 0x7f;
            let masked = self.header[1] & 0x80 != 0;
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let need = 2 + ext + if masked { 4 } else { 0 };
            if self.header_len < need {
                continue;
            }
            let len = match ext {
                0 => u64::from(len7),
                2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                _ => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
            };
            let fin = self.header[0] & 0x80 != 0;
            let control = self.header[0] & 0x08 != 0;
            if !control {
                self.message_len = self.message_len.saturating_add(len);
                if cap.is_some_and(|cap| self.message_len > cap) {
                    return false;
                }
                self.in_message = !fin;
                if fin {
                    self.message_len = 0;
                }
            }
            self.payload_left = len;
            self.header_len = 0;
            self.frames += 1;
        }
        true
    }
}

/// The adapter. `armed` is shared with the connection, which clears it once
/// the client is authenticated.
pub struct PreauthGuardedIo<S> {
    inner: S,
    armed: Arc<AtomicBool>,
    cap: u64,
    tracker: FrameTracker,
    /// A write returned `Pending` and no flush has completed since: the
    /// codec may hold bytes it still has to write (an automatic pong).
    write_blocked: bool,
}

impl<S> PreauthGuardedIo<S> {
    /// Whether every byte read so far belongs to a whole frame, no message
    /// is half assembled and no write is waiting for the socket: a codec
    /// that has returned everything it could holds no state worth keeping.
    pub fn at_rest(&self) -> bool {
        let t = &self.tracker;
        t.payload_left == 0 && t.header_len == 0 && !t.in_message && !self.write_blocked
    }

    /// The stream under the guard.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether exactly one whole frame has been read from the socket and
    /// nothing after it: then a codec that returned that frame holds no
    /// unread bytes and can be replaced by a fresh one.
    pub fn read_exactly_one_frame(&self) -> bool {
        let t = &self.tracker;
        t.frames == 1 && t.payload_left == 0 && t.header_len == 0
    }

    pub fn new(inner: S, cap: usize) -> (Self, Arc<AtomicBool>) {
        let armed = Arc::new(AtomicBool::new(true));
        (
            PreauthGuardedIo {
                inner,
                armed: armed.clone(),
                cap: cap as u64,
                tracker: FrameTracker::default(),
                write_blocked: false,
            },
            armed,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreauthGuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let fresh = &buf.filled()[before..];
            let cap = this.armed.load(Ordering::Relaxed).then_some(this.cap);
            if !this.tracker.feed(fresh, cap) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    PreauthTooLarge,
                )));
            }
        }
        res
    }
}

/// Notes a write that could not proceed.
fn blocked<T>(flag: &mut bool, res: Poll<T>) -> Poll<T> {
    if res.is_pending() {
        *flag = true;
    }
    res
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreauthGuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        blocked(
            &mut this.write_blocked,
            Pin::new(&mut this.inner).poll_write(cx, buf),
        )
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        match res {
            Poll::Ready(Ok(())) => this.write_blocked = false,
            Poll::Pending => this.write_blocked = true,
            Poll::Ready(Err(_)) => {}
        }
        res
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        blocked(
            &mut this.write_blocked,
            Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
        )
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= 0xffff {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h.extend(std::iter::repeat_n(0u8, len as usize));
        h
    }

    #[test]
    fn tracks_frames_across_chunks() {
        let mut t = FrameTracker::default();
        let mut bytes = frame(true, 1, 300);
        bytes.extend(frame(true, 9, 4)); // ping
        bytes.extend(frame(true, 1, 65536));
        for chunk in bytes.chunks(7) {
            assert!(t.feed(chunk, Some(65536)));
        }
        let mut t = FrameTracker::default();
        assert!(!t.feed(&frame(true, 1, 65537)[..14], Some(65536)));
    }

    #[test]
    fn counts_fragmented_messages() {
        let mut t = FrameTracker::default();
        assert!(t.feed(&frame(false, 1, 40000), Some(65536)));
        assert!(!t.feed(&frame(true, 0, 40000), Some(65536)));
    }

    #[test]
    fn knows_when_exactly_one_whole_frame_was_read() {
        let io = |t: FrameTracker| PreauthGuardedIo {
            inner: (),
            armed: Arc::new(AtomicBool::new(true)),
            cap: 65536,
            tracker: t,
            write_blocked: false,
        };
        let one = frame(true, 1, 700);
        let mut t = FrameTracker::default();
        assert!(t.feed(&one[..300], Some(65536)));
        assert!(!io(t).read_exactly_one_frame(), "mid-frame");
        let mut t = FrameTracker::default();
        for chunk in one.chunks(64) {
            t.feed(chunk, Some(65536));
        }
        assert!(io(t).read_exactly_one_frame());
        // A pipelined second frame (even its first header byte) rules it out.
        let mut two = one.clone();
        two.extend(frame(true, 1, 10));
        let mut t = FrameTracker::default();
        t.feed(&two[..one.len() + 1], Some(65536));
        assert!(!io(t).read_exactly_one_frame());
        let mut t = FrameTracker::default();
        t.feed(&two, Some(65536));
        assert!(!io(t).read_exactly_one_frame());
    }
}
