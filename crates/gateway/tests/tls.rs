//! TLS on the gateway's port with the client library: wss:// pinned by
//! certificate or public key, a wrong pin refused with what the server
//! presented, plain ws:// answered with a clear 400, and a client that
//! never finishes the TLS handshake losing its slot at the deadline.

use std::time::Duration;

use clawgate_client::{Client, ClientError, ConnectOptions, Fingerprint, TlsPin};
use clawgate_gateway::config::{AuthConfig, AuthMode};
use clawgate_gateway::{Gateway, GatewayConfig, GatewayHandle, RuntimeOptions, testkit};
use clawgate_protocol::Secret;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tls-lib-test-token-77d1";

async fn tls_gateway(dir: &std::path::Path, options: RuntimeOptions) -> GatewayHandle {
    let mut cfg = GatewayConfig::loopback(
        dir,
        AuthConfig::new(AuthMode::Token, Some(Secret::new(TOKEN)), None),
    );
    cfg.port = 0;
    cfg.tls.enabled = true;
    Gateway::bind(cfg, options).await.unwrap().spawn().unwrap()
}

fn options(url: String, pin: TlsPin) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url).token(TOKEN);
    opts.tls_fingerprint = Some(pin);
    opts.reconnect = false;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_connects_over_wss_with_either_pin_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), RuntimeOptions::default()).await;
    let info = gw.state().tls().expect("TLS on").info();
    let url = format!("wss://{}", gw.local_addr());

    for pin in [
        TlsPin::Certificate(info.certificate.clone()),
        TlsPin::PublicKey(info.public_key.clone()),
    ] {
        let client = Client::connect(options(url.clone(), pin.clone()))
            .await
            .unwrap_or_else(|e| panic!("{pin}: {e}"));
        let status = client.request("status", json!({})).await.unwrap();
        let tls = &status["gateway"]["tls"];
        assert_eq!(tls["enabled"], true);
        assert_eq!(tls["certificateSha256"], info.certificate_pin());
        assert_eq!(tls["publicKeyPin"], info.public_key_pin());
        client.close().await;
    }

    // A wrong pin: the error carries exactly what the server presented.
    for wrong in [
        TlsPin::PublicKey(Fingerprint([1; 32])),
        TlsPin::Certificate(info.public_key.clone()),
    ] {
        let err = Client::connect(options(url.clone(), wrong.clone()))
            .await
            .err()
            .expect("a wrong pin is refused");
        match err {
            ClientError::TlsPinMismatch(m) => {
                assert_eq!(m.pinned, wrong);
                assert_eq!(m.presented.certificate, info.certificate);
                assert_eq!(m.presented.public_key.as_ref(), Some(&info.public_key));
                let text = m.to_string();
                assert!(
                    text.contains(&info.certificate_pin()) && text.contains(&info.public_key_pin()),
                    "{text}"
                );
            }
            other => panic!("expected a pin mismatch, got {other:?}"),
        }
    }

    // Plain ws:// to the TLS port: a 400 that says what to use.
    let mut plain = ConnectOptions::new(format!("ws://{}", gw.local_addr())).token(TOKEN);
    plain.reconnect = false;
    match Client::connect(plain)
        .await
        .err()
        .expect("plain ws refused")
    {
        ClientError::Rejected { status, body } => {
            assert_eq!(status, 400);
            assert!(body.contains("wss://"), "{body}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_the_tls_handshake_loses_its_slot_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        handshake_timeout: Duration::from_millis(400),
        ..RuntimeOptions::default()
    };
    let gw = tls_gateway(dir.path(), options).await;
    // The start of a TLS record (handshake, TLS 1.0 framing), then silence.
    let mut tcp = tokio::net::TcpStream::connect(gw.local_addr())
        .await
        .unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x80])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(testkit::pending_http(gw.state()), 1, "it holds a slot");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("closed by the deadline, not left open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(testkit::pending_http(gw.state()), 0, "the slot is free");
    assert!(
        testkit::metrics_text(gw.state()).contains("tls_handshake_timeout"),
        "counted"
    );
    gw.stop().await.unwrap();
}
