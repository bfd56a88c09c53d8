//! Entry points for the cargo-fuzz targets in `fuzz/` (feature
//! `fuzzing`). Not a stable API: everything here forwards to the code the
//! gateway itself runs, so the fuzzers exercise the real parsers and
//! decisions rather than copies.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::session::PeerContext;
use crate::state::GatewayState;

/// Serves one already-upgraded connection over `io` with the real
/// connection code (challenge, pre-auth frame cap, first-frame rules,
/// `auth::authenticate`, `hello-ok`, the request loop) until the stream
/// ends, holding an unauthenticated-socket slot as the listener does.
/// Returns `false` when the per-IP or global slot cap refused the socket.
pub async fn serve_connection<S>(state: Arc<GatewayState>, io: S, peer: PeerContext) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(slot) = state.acquire_unauth(peer.ip) else {
        return false;
    };
    crate::ws::serve(state, io, peer, slot).await;
    true
}
