//! TLS on the gateway, through the real binary: `gateway run` with
//! `gateway.tls` (self-signed, and from PEM files), the CLI over wss://
//! pinned by certificate and by public key, wrong pins, plain ws:// to the
//! TLS port, reloads on file change and on SIGHUP, and bad settings.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Running, clawgate, start, start_with, stop, unsafe_kill};

const TOKEN: &str = "tls-test-token-0c4f6a1e9b";

/// The two pins `gateway run` printed: (certificate SHA-256, public key).
fn printed_pins(r: &Running) -> (String, String) {
    let cert = r
        .stdout
        .lines()
        .find_map(|l| l.split("(SHA-256 ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no certificate pin printed: {}", r.stdout));
    let key = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("TLS public key pin: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no public key pin printed: {}", r.stdout))
        .to_string();
    (cert, key)
}

fn wss(r: &Running) -> String {
    format!("wss://127.0.0.1:{}", r.port)
}

/// `clawgate gateway <args> --url wss://... --token T --tls-fingerprint pin`.
fn over_tls(state: &Path, r: &Running, pin: &str, args: &[&str]) -> (i32, String, String) {
    let url = wss(r);
    let mut all = vec!["gateway"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &url, "--token", TOKEN, "--tls-fingerprint", pin]);
    clawgate(state, &all)
}

fn set(state: &Path, key: &str, value: &str) {
    let (code, out, err) = clawgate(state, &["config", "set", key, value]);
    assert_eq!(code, 0, "config set {key}: {out}{err}");
}

/// Writes a PEM file padded to a fixed size (PEM readers skip the blank
/// tail), so a replacement can have the same size as the file it replaces.
fn write_padded(path: &Path, pem: &str) {
    let mut text = pem.to_string();
    assert!(text.len() < 4096);
    text.push_str(&"\n".repeat(4096 - text.len()));
    std::fs::write(path, text).unwrap();
}

struct Pair {
    cert: String,
    key: String,
    cert_pin: String,
}

fn issue(key: &rcgen::KeyPair, serial: u64) -> Pair {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let cert = params.self_signed(key).unwrap();
    let cert_pin = clawgate_client_pin(cert.der());
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
        cert_pin,
    }
}

/// The certificate SHA-256 in colon hex, computed here independently.
fn clawgate_client_pin(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The public-key pin of a key pair, computed here independently.
fn spki_pin(key: &rcgen::KeyPair) -> String {
    use base64::Engine;
    use rcgen::PublicKeyData;
    use sha2::Digest;
    format!(
        "sha256/{}",
        base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(key.subject_public_key_info()))
    )
}

/// Polls `gateway status` (pinned by `pin`) until it reports `want` as the
/// certificate served.
fn wait_for_served(state: &Path, r: &Running, pin: &str, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let (code, out, _) = over_tls(state, r, pin, &["status"]);
        if code == 0 && out.contains(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("CLAWGATE_GATEWAY_TOKEN", TOKEN)]
}

#[test]
fn a_self_signed_gateway_is_reached_with_either_pin_and_a_wrong_pin_shows_the_right_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    set(state, "gateway.tls.enabled", "true");
    // A fixed port in the config, so `gateway status` without --url finds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    set(state, "gateway.port", &port.to_string());
    let r = start_with(state, &[], &env());
    assert!(
        r.stdout
            .contains(&format!("listening on wss://127.0.0.1:{}", r.port)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("https://127.0.0.1:{}/", r.port)),
        "the dashboard URL is https: {}",
        r.stdout
    );
    let (cert_pin, key_pin) = printed_pins(&r);
    assert!(
        key_pin.starts_with("sha256/") && key_pin.len() == 7 + 44,
        "{key_pin}"
    );

    // Generated once into the state dir, the key private.
    let tls_dir = state.join("tls");
    let cert_file = tls_dir.join("gateway-cert.pem");
    assert!(cert_file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls_dir.join("gateway-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The certificate pin and the public-key pin both connect; status shows both.
    let (code, out, err) = over_tls(state, &r, &cert_pin, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&cert_pin) && out.contains(&key_pin), "{out}");
    assert!(out.contains("self-signed"), "{out}");
    let (code, out, err) = over_tls(state, &r, &key_pin, &["health"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = over_tls(state, &r, &key_pin, &["call", "health"]);
    assert_eq!(code, 0, "{out}{err}");

    // The local gateway (no --url) is reached over wss, pinned to its file.
    let local = common::bin()
        .arg("--state-dir")
        .arg(state)
        .args(["gateway", "status"])
        .env("CLAWGATE_GATEWAY_TOKEN", TOKEN)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&local.stdout),
        String::from_utf8_lossy(&local.stderr),
    );
    assert_eq!(local.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("wss://127.0.0.1") && out.contains(&key_pin),
        "{out}"
    );

    // A wrong pin of either kind: refused, one line naming what the server
    // presented, and the flag to fix it.
    for wrong in [
        format!("sha256/{}", "A".repeat(43) + "="),
        vec!["00"; 32].join(":"),
    ] {
        let (code, out, err) = over_tls(state, &r, &wrong, &["call", "health"]);
        assert_eq!(code, 1, "{out}{err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{err}");
        assert!(
            first.contains(&cert_pin) && first.contains(&key_pin),
            "the error names the presented pins: {err}"
        );
        assert!(
            err.contains(&format!("--tls-fingerprint {key_pin}")),
            "the hint gives the flag: {err}"
        );
        assert!(!err.contains(TOKEN) && !out.contains(TOKEN));
    }

    // Plain ws:// to the TLS port fails clearly.
    let url = format!("ws://127.0.0.1:{}", r.port);
    let (code, out, err) = clawgate(
        state,
        &["gateway", "health", "--url", &url, "--token", TOKEN],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("wss://"), "{err}");

    let (code, _) = stop(r);
    assert_eq!(code, 0);

    // A restart reuses the generated certificate: same pins.
    let r = start_with(state, &[], &env());
    assert_eq!(printed_pins(&r), (cert_pin, key_pin));
    stop(r);
}

#[test]
fn certificates_from_files_reload_on_change_and_on_sighup_and_a_bad_reload_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let cert: PathBuf = dir.path().join("cert.pem");
    let key_file: PathBuf = dir.path().join("key.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let first = issue(&key, 1);
    write_padded(&cert, &first.cert);
    write_padded(&key_file, &first.key);
    let spki = spki_pin(&key);
    set(&state, "gateway.tls.certPath", cert.to_str().unwrap());
    set(&state, "gateway.tls.keyPath", key_file.to_str().unwrap());
    set(&state, "gateway.tls.enabled", "true");
    let r = start(&state, &[], &env());
    assert_eq!(printed_pins(&r), (first.cert_pin.clone(), spki.clone()));
    let (code, out, err) = over_tls(&state, &r, &first.cert_pin, &["health"]);
    assert_eq!(code, 0, "{out}{err}");

    // Renewal with the same key (new serial): picked up from the file
    // change; the public-key pin keeps working, the old certificate pin
    // does not.
    let renewed = issue(&key, 2);
    assert_ne!(renewed.cert_pin, first.cert_pin);
    write_padded(&cert, &renewed.cert);
    assert!(
        wait_for_served(&state, &r, &spki, &renewed.cert_pin),
        "the renewed certificate is served after a file change"
    );
    let (code, _, err) = over_tls(&state, &r, &first.cert_pin, &["health"]);
    assert_eq!(code, 1, "the old certificate pin no longer matches: {err}");
    assert!(err.contains(&renewed.cert_pin), "{err}");

    // A new key, written with the files' old size and modification times:
    // the poll sees no change, SIGHUP reloads.
    let new_key = rcgen::KeyPair::generate().unwrap();
    let replaced = issue(&new_key, 3);
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (cert_time, key_time) = (stamp(&cert), stamp(&key_file));
    write_padded(&key_file, &replaced.key);
    write_padded(&cert, &replaced.cert);
    for (p, t) in [(&cert, cert_time), (&key_file, key_time)] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let (code, out, err) = over_tls(&state, &r, &spki, &["status"]);
    assert_eq!(code, 0, "no reload without a visible change: {out}{err}");
    unsafe_kill(r.child.id(), "HUP");
    let new_spki = spki_pin(&new_key);
    assert!(
        wait_for_served(&state, &r, &new_spki, &replaced.cert_pin),
        "SIGHUP reloads the certificate"
    );

    // A reload that fails keeps the certificate in use and says why.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (code, out, err) = over_tls(&state, &r, &new_spki, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&replaced.cert_pin), "{out}");
    let (_, log) = stop(r);
    assert!(
        log.contains("TLS certificate reload failed") && log.contains(cert.to_str().unwrap()),
        "the warning names the file: {log}"
    );
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&entry.path()));
        }
        out.push((entry.path(), meta.len(), meta.modified().unwrap()));
    }
    out.sort();
    out
}

/// `gateway run` that must refuse to start: (stderr, exit code).
fn refused(state: &Path) -> (String, i32) {
    let before = snapshot(state);
    let out = common::bin()
        .arg("--state-dir")
        .arg(state)
        .args(["gateway", "run", "--port", "0"])
        .env("CLAWGATE_GATEWAY_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(snapshot(state), before, "nothing changed on disk");
    (
        String::from_utf8_lossy(&out.stderr).to_string(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn bad_tls_settings_refuse_to_start_with_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let files = dir.path();
    let key = rcgen::KeyPair::generate().unwrap();
    let pair = issue(&key, 1);
    let other = issue(&rcgen::KeyPair::generate().unwrap(), 1);
    std::fs::write(files.join("cert.pem"), &pair.cert).unwrap();
    std::fs::write(files.join("other-key.pem"), &other.key).unwrap();
    std::fs::write(files.join("junk.pem"), "hello\n").unwrap();
    let path = |n: &str| files.join(n).to_str().unwrap().to_string();

    let cases = [
        (
            "missing.pem",
            "other-key.pem",
            "gateway.tls.certPath",
            "cannot read",
        ),
        (
            "junk.pem",
            "other-key.pem",
            "gateway.tls.certPath",
            "no PEM certificate",
        ),
        (
            "cert.pem",
            "junk.pem",
            "gateway.tls.keyPath",
            "no PEM private key",
        ),
        (
            "cert.pem",
            "other-key.pem",
            "gateway.tls.keyPath",
            "does not belong",
        ),
    ];
    for (cert, key, named, problem) in cases {
        set(&state, "gateway.tls.certPath", &path(cert));
        set(&state, "gateway.tls.keyPath", &path(key));
        set(&state, "gateway.tls.enabled", "true");
        let (err, code) = refused(&state);
        assert_eq!(code, 1, "{cert}/{key}: {err}");
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(
            lines[0].starts_with(&format!("error: refusing to start: {named}: "))
                && lines[0].contains(problem)
                && (lines[0].contains("clawgate config set") || lines[0].contains("matching pair")),
            "{cert}/{key}: {err}"
        );
    }

    // TLS on, no files and no self-signing: a clear refusal, nothing generated.
    // (`config set` refuses to write this, so the file is written directly.)
    std::fs::write(
        state.join("clawgate.json"),
        "{gateway: {tls: {enabled: true, autoGenerate: false}}}\n",
    )
    .unwrap();
    let (err, code) = refused(&state);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("gateway.tls.autoGenerate") && err.contains("certPath"),
        "{err}"
    );
    assert!(!state.join("tls").exists());
}

/// With `gateway.tls.enabled`, `clawgate dashboard` names the https:// UI
/// and the wss:// socket.
#[test]
fn the_dashboard_url_is_https_when_tls_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    std::fs::write(
        state.join("clawgate.json"),
        format!(
            "{{ gateway: {{ port: 18999, auth: {{ token: \"{TOKEN}\" }}, tls: {{ enabled: true }} }} }}"
        ),
    )
    .unwrap();
    let (code, out, err) = clawgate(state, &["dashboard", "--no-open", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = v.to_string();
    assert!(text.contains("https://127.0.0.1:18999/"), "{text}");
    assert!(text.contains("wss://127.0.0.1:18999/"), "{text}");
    assert!(!text.contains("http://"), "{text}");
}
