//! `clawgate explain`: the real binary, for every catalogue code.

mod common;

use clawgate_protocol::catalogue::{CATALOGUE, Entry};
use serde_json::{Value, json};

/// Runs `clawgate explain <args>`: (exit code, stdout, stderr).
fn explain(args: &[&str]) -> (i32, String, String) {
    let out = common::bin()
        .arg("explain")
        .args(args)
        .output()
        .expect("clawgate runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

fn expected_json(e: &Entry) -> Value {
    let mut v = json!({
        "code": e.code,
        "errorCode": e.error_code,
        "title": e.title,
        "meaning": e.meaning,
        "cause": e.cause,
        "next": e.next,
    });
    if let Some(reason) = e.auth_reason {
        v["authReason"] = reason.into();
    }
    v
}

#[test]
fn every_code_is_explained_in_text() {
    for e in CATALOGUE {
        let (code, out, err) = explain(&[e.code]);
        assert_eq!(code, 0, "explain {}: {err}", e.code);
        assert!(
            out.starts_with(&format!("{}: {}\n", e.code, e.title)),
            "explain {} starts with the code and title:\n{out}",
            e.code
        );
        assert!(
            out.contains(&format!("meaning: {}\n", e.meaning)),
            "{}: {out}",
            e.code
        );
        assert!(
            out.contains(&format!("cause:   {}\n", e.cause)),
            "{}: {out}",
            e.code
        );
        assert!(
            out.contains(&format!("next:    {}\n", e.next)),
            "{}: the next line must carry the catalogue text verbatim:\n{out}",
            e.code
        );
        assert!(
            out.contains(&format!("error.code \"{}\"", e.error_code)),
            "{}: {out}",
            e.code
        );
        match e.auth_reason {
            Some(r) => assert!(
                out.contains(&format!("details.authReason \"{r}\"")),
                "{}: {out}",
                e.code
            ),
            None => assert!(!out.contains("authReason"), "{}: {out}", e.code),
        }
        assert!(err.is_empty(), "{}: stderr {err}", e.code);
    }
}

#[test]
fn every_code_is_explained_in_json() {
    for e in CATALOGUE {
        let (code, out, err) = explain(&[e.code, "--json"]);
        assert_eq!(code, 0, "explain {} --json: {err}", e.code);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|x| panic!("explain {} --json is not JSON ({x}): {out}", e.code));
        assert_eq!(v, expected_json(e), "explain {} --json", e.code);
    }
}

#[test]
fn codes_are_matched_ignoring_case_and_dashes() {
    let (code, out, _) = explain(&["auth-token-mismatch"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("AUTH_TOKEN_MISMATCH: "), "{out}");
    assert!(out.contains("clawgate gateway auth-token --show"), "{out}");

    let (code, out, _) = explain(&["Pairing-Required", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["code"], "PAIRING_REQUIRED");
    assert_eq!(
        v["next"],
        "On the gateway host run: clawgate devices approve <requestId>"
    );

    // The authReason a gateway error carries works too.
    let (code, out, _) = explain(&["device_token_mismatch", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["code"], "AUTH_DEVICE_TOKEN_MISMATCH");
}

#[test]
fn without_a_code_every_code_is_listed() {
    let (code, out, err) = explain(&[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for e in CATALOGUE {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(e.code) && l.trim_end().ends_with(e.title)),
            "{} with its title is not listed:\n{out}",
            e.code
        );
    }
    assert!(out.contains("clawgate explain <CODE>"), "{out}");

    let (code, out, _) = explain(&["--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let expected: Vec<Value> = CATALOGUE.iter().map(expected_json).collect();
    assert_eq!(v, Value::Array(expected));
}

#[test]
fn an_unknown_code_fails_with_suggestions() {
    let (code, out, err) = explain(&["AUTH_TOKEN_MISMACH"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert!(
        err.contains("unknown error code: AUTH_TOKEN_MISMACH"),
        "{err}"
    );
    assert!(
        err.contains("AUTH_TOKEN_MISMATCH"),
        "suggests the closest: {err}"
    );
    assert!(err.contains("clawgate explain"), "{err}");

    // A fragment suggests the codes that contain it.
    let (code, _, err) = explain(&["scope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("MISSING_SCOPE") && err.contains("AUTH_SCOPE_MISMATCH"),
        "{err}"
    );

    let (code, out, err) = explain(&["token-mismach", "--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown error code"),
        "{v}"
    );
    let next = v["error"]["next"].as_str().unwrap();
    assert!(
        next.contains("AUTH_TOKEN_MISMATCH") && next.contains("clawgate explain"),
        "{v}"
    );
    assert_eq!(v["error"]["suggestions"][0], "AUTH_TOKEN_MISMATCH");

    // Nothing close: no guesses, but the way to the list.
    let (code, _, err) = explain(&["qqqqqqqqqq"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("List every code with: clawgate explain"),
        "{err}"
    );
    assert!(!err.contains("Did you mean"), "{err}");
}
