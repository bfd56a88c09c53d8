//! Connects once with the clawgate client library and reports, as one JSON
//! line, how the connect went: the auth method of `hello-ok`, whether the
//! one bounded device-token retry was used (and for which error), whether a
//! device token is cached, and whether `health` works. Run by
//! `scripts/interop.sh` against a real OpenClaw gateway: first with its
//! token (the device is paired and its token cached), then, after the
//! gateway's token changed, with the old one (the retry must recover).
//!
//! usage: cargo run -p clawgate-client --example bounded_retry -- URL TOKEN STATE_DIR
//! Exit 0 when connected and `health` answered ok, 1 otherwise.

use std::time::Duration;

use clawgate_client::{
    Client, ClientEvent, ClientInfo, ConnectOptions, FileTokenCache, TokenCache,
};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, dir] = args.as_slice() else {
        eprintln!("usage: bounded_retry URL TOKEN STATE_DIR");
        std::process::exit(2);
    };
    let opts = match ConnectOptions::new(url.as_str())
        .token(token.as_str())
        .scopes(["operator.read"])
        .state_dir(dir)
    {
        // As the clawgate CLI: the reference gives a local gateway-client in
        // backend mode no pairing and no device token.
        Ok(mut o) => {
            o.client = ClientInfo {
                id: "cli".into(),
                mode: "cli".into(),
                display_name: Some("clawgate interop".into()),
                ..ClientInfo::default()
            };
            o
        }
        Err(e) => {
            eprintln!("bounded_retry: {e}");
            std::process::exit(2);
        }
    };
    let key = opts.token_key();
    let cached_before = cached(dir, key.as_ref());
    let report = match tokio::time::timeout(Duration::from_secs(30), Client::connect(opts)).await {
        Err(_) => json!({"ok": false, "error": "no hello-ok within 30 s"}),
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string(), "detailCode": e.detail_code()}),
        Ok(Ok(client)) => {
            let hello = client.hello();
            let mut recovered: Value = Value::Null;
            if let Some(mut events) = client.events() {
                while let Ok(Some(ev)) =
                    tokio::time::timeout(Duration::from_millis(200), events.recv()).await
                {
                    if let ClientEvent::Recovered { error, auth_method } = ev {
                        recovered =
                            json!({"detailCode": error.detail_code(), "authMethod": auth_method});
                    }
                }
            }
            let health = client.request("health", json!({})).await;
            let health_ok = matches!(&health, Ok(v) if v["ok"] == true);
            client.close().await;
            json!({
                "ok": health_ok,
                "authMethod": hello["auth"]["method"],
                "deviceTokenIssued": hello["auth"]["deviceToken"].is_string(),
                "recovered": recovered,
                "health": health.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
            })
        }
    };
    let mut report = report;
    report["cachedBefore"] = json!(cached_before);
    report["cachedAfter"] = json!(cached(dir, key.as_ref()));
    println!("{report}");
    std::process::exit(if report["ok"] == true { 0 } else { 1 });
}

/// Whether a device token for this gateway and device is in the cache.
fn cached(dir: &str, key: Option<&clawgate_client::TokenKey>) -> bool {
    key.is_some_and(|k| matches!(FileTokenCache::new(dir).load(k), Ok(Some(_))))
}
