//! A connection's first bytes, as the accept loop's own head reader reads
//! them (`http/upgrade.rs` through the fuzzing facade).
//!
//! Input: `[chunk, bytes...]`; `bytes` arrive `chunk` bytes per read (0:
//! one byte). Properties, whatever the bytes:
//!
//! - nothing is lost: what goes to hyper is exactly the bytes read so far;
//!   an upgrade's head is a complete HTTP/1.1 request head and the bytes
//!   after it are handed on as they were read;
//! - an upgrade taken here is a GET with the WebSocket headers, and its
//!   answer is a complete `101` head with the key's accept value.

#![no_main]

use std::sync::Arc;

use clawgate_fuzz::{MemIo, gateway_state, paused_runtime};
use clawgate_gateway::GatewayState;
use clawgate_gateway::config::AuthMode;
use clawgate_gateway::fuzzing::{FirstRequest, first_request};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

struct Ctx {
    rt: tokio::runtime::Runtime,
    state: Arc<GatewayState>,
    _dir: tempfile::TempDir,
}

thread_local! {
    static CTX: Ctx = {
        let (state, dir) = gateway_state(AuthMode::Token);
        Ctx { rt: paused_runtime(), state, _dir: dir }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    CTX.with(|ctx| {
        ctx.rt.block_on(async {
            let mut io = MemIo::new(bytes.to_vec(), usize::from(chunk));
            let outcome = first_request(&ctx.state, &mut io).await;
            let read = &bytes[..io.consumed()];
            match outcome {
                FirstRequest::Hyper(got) => assert_eq!(got, read, "bytes lost on the way to hyper"),
                FirstRequest::Closed => assert!(read.is_empty()),
                FirstRequest::Error => panic!("an in-memory read cannot fail"),
                FirstRequest::Upgrade { response, rest } => {
                    let head_len = read.len() - rest.len();
                    assert_eq!(&read[head_len..], &rest[..], "bytes after the head lost");
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut headers);
                    assert_eq!(
                        req.parse(&read[..head_len]).ok(),
                        Some(httparse::Status::Complete(head_len)),
                        "the upgrade's head is one whole request head"
                    );
                    assert_eq!(req.method, Some("GET"));
                    let key = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                        .expect("an upgrade has a key")
                        .value;
                    let mut headers = [httparse::EMPTY_HEADER; 8];
                    let mut resp = httparse::Response::new(&mut headers);
                    assert_eq!(
                        resp.parse(&response).ok(),
                        Some(httparse::Status::Complete(response.len()))
                    );
                    assert_eq!(resp.code, Some(101));
                    let accept = derive_accept_key(key);
                    assert!(resp.headers.iter().any(|h| {
                        h.name == "sec-websocket-accept" && h.value == accept.as_bytes()
                    }));
                }
            }
        })
    });
});
