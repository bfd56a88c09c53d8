//! Inbound WebSocket bytes of one connection, as the gateway reads them.
//!
//! Input: `[flags, chunk, stream...]`; `stream` is what the client sends
//! after the upgrade (masked WebSocket frames), delivered `chunk` bytes per
//! read (0: all at once). Two passes over the same bytes:
//!
//! 1. Property of the pre-auth cap (`preauth_io`): with the adapter armed
//!    at a small cap, the WebSocket codec never yields a data message
//!    longer than the cap.
//! 2. The real connection (`connection::serve` through the fuzzing facade)
//!    on an in-process gateway: challenge, pre-auth cap, first-frame rules,
//!    connect params, `auth::authenticate`, `hello-ok` and, when the
//!    connect carries the shared token, the request loop over every
//!    following frame. It must end without panicking.

#![no_main]

use std::sync::Arc;

use clawgate_fuzz::{MemIo, ORIGINS, gateway_state, paused_runtime, peer};
use clawgate_gateway::GatewayState;
use clawgate_gateway::config::AuthMode;
use clawgate_gateway::ws::preauth_io::PreauthGuardedIo;
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

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
    let [flags, chunk, stream @ ..] = data else {
        return;
    };
    let chunk = match *chunk {
        0 => usize::MAX,
        n => usize::from(n),
    };
    CTX.with(|ctx| {
        // 1. The pre-auth cap, at 16..2048 bytes so short inputs reach it.
        let cap = 16usize << (flags >> 5);
        ctx.rt.block_on(async {
            let (io, _armed) = PreauthGuardedIo::new(MemIo::new(stream.to_vec(), chunk), cap);
            let mut ws = WebSocketStream::from_raw_socket(
                io,
                Role::Server,
                Some(WebSocketConfig::default()),
            )
            .await;
            while let Some(next) = ws.next().await {
                match next {
                    Ok(Message::Text(t)) => assert!(t.len() <= cap, "{} > cap {cap}", t.len()),
                    Ok(Message::Binary(b)) => assert!(b.len() <= cap, "{} > cap {cap}", b.len()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        // 2. The gateway's own connection code.
        let origin = ORIGINS[usize::from(flags >> 2 & 7) % ORIGINS.len()];
        let peer = peer(flags & 3, origin);
        let io = MemIo::new(stream.to_vec(), chunk);
        ctx.rt.block_on(clawgate_gateway::fuzzing::serve_connection(
            ctx.state.clone(),
            io,
            peer,
        ));
    });
});
