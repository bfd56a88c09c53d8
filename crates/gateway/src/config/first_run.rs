//! First run: when nothing configures auth, a fresh shared token is
//! generated and saved so the gateway starts protected.

use clawgate_protocol::Secret;
use serde_json::Value;

use super::file::ConfigFile;
use super::resolve::{EnvOverrides, RunOverrides};
use super::types::ConfigError;

/// First run: when nothing configures auth at all (no `gateway.auth.mode`,
/// `token` or `password` in the file, no auth flags, no environment
/// secret), generates a token, writes `gateway.auth.mode = "token"` and
/// `gateway.auth.token` to the file and returns the token. Otherwise
/// returns `None` and writes nothing.
pub fn ensure_first_run_token(
    file: &mut ConfigFile,
    overrides: &RunOverrides,
    env: &EnvOverrides,
) -> Result<Option<Secret>, ConfigError> {
    let flags = overrides.auth.is_some()
        || overrides.token.is_some()
        || overrides.token_file.is_some()
        || overrides.password.is_some()
        || overrides.password_file.is_some();
    let from_env = env.token.is_some() || env.password.is_some();
    let in_file = [
        "gateway.auth.mode",
        "gateway.auth.token",
        "gateway.auth.password",
    ]
    .iter()
    .any(|k| file.get(k).is_some_and(|v| !v.is_null()));
    // A `gateway` or `gateway.auth` that is not an object is a config error
    // that `resolve` reports; do not paper over it here.
    let malformed = ["gateway", "gateway.auth"]
        .iter()
        .any(|k| file.get(k).is_some_and(|v| !v.is_object() && !v.is_null()));
    if flags || from_env || in_file || malformed {
        return Ok(None);
    }
    let token = Secret::generate();
    let mut updated = file.clone();
    updated.set("gateway.auth.mode", Value::String("token".into()))?;
    updated.set(
        "gateway.auth.token",
        Value::String(token.expose().to_string()),
    )?;
    updated.save()?;
    *file = updated;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve::env_token;
    use crate::config::resolve::resolve;
    use crate::config::test_support::file_with;
    use crate::config::types::CONFIG_FILE_NAME;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_run_generates_and_saves_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(CONFIG_FILE_NAME);
        let mut file = ConfigFile::load(&path).unwrap();
        let token = ensure_first_run_token(
            &mut file,
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap()
        .expect("a token is generated");
        assert_eq!(token.expose().len(), 43);
        assert_eq!(file.get("gateway.auth.mode"), Some(&json!("token")));
        assert_eq!(file.get("gateway.auth.token"), Some(&json!(token.expose())));
        let saved = ConfigFile::load(&path).unwrap();
        assert_eq!(saved.doc, file.doc);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let cfg = resolve(
            &saved,
            dir.path(),
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.auth.token, Some(token));

        // A second run finds the token and writes nothing.
        let mut again = ConfigFile::load(&path).unwrap();
        assert!(
            ensure_first_run_token(
                &mut again,
                &RunOverrides::default(),
                &EnvOverrides::default()
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn first_run_does_nothing_when_anything_configures_auth() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE_NAME);
        let overrides = [
            RunOverrides {
                auth: Some("none".into()),
                ..Default::default()
            },
            RunOverrides {
                token: Some(Secret::new("t")),
                ..Default::default()
            },
            RunOverrides {
                token_file: Some("/x".into()),
                ..Default::default()
            },
            RunOverrides {
                password: Some(Secret::new("p")),
                ..Default::default()
            },
            RunOverrides {
                password_file: Some("/x".into()),
                ..Default::default()
            },
        ];
        for o in &overrides {
            let mut file = ConfigFile::load(&path).unwrap();
            assert!(
                ensure_first_run_token(&mut file, o, &EnvOverrides::default())
                    .unwrap()
                    .is_none()
            );
        }
        let envs = [
            env_token("t"),
            EnvOverrides {
                password: Some(Secret::new("p")),
                ..Default::default()
            },
        ];
        for e in &envs {
            let mut file = ConfigFile::load(&path).unwrap();
            assert!(
                ensure_first_run_token(&mut file, &RunOverrides::default(), e)
                    .unwrap()
                    .is_none()
            );
        }
        for doc in [
            json!({"gateway": {"auth": {"mode": "none"}}}),
            json!({"gateway": {"auth": {"token": "t"}}}),
            json!({"gateway": {"auth": {"password": "p"}}}),
            json!({"gateway": {"auth": "broken"}}),
        ] {
            let (mut file, _d) = file_with(doc.clone());
            assert!(
                ensure_first_run_token(
                    &mut file,
                    &RunOverrides::default(),
                    &EnvOverrides::default()
                )
                .unwrap()
                .is_none()
            );
            assert_eq!(file.doc, doc);
        }
        assert!(!path.exists(), "nothing was written");
    }

    #[test]
    fn first_run_into_a_commented_file_keeps_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        let original = "// my gateway\n{\n  gateway: {\n    port: 18790, // moved off the default\n  },\n  /* agents */\n  agents: {},\n}\n";
        std::fs::write(&path, original).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        let token = ensure_first_run_token(
            &mut file,
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap()
        .expect("a token is generated");
        let expected = original.replace(
            "    port: 18790, // moved off the default\n  },",
            &format!(
                "    port: 18790, // moved off the default\n    auth: {{\n      mode: \"token\",\n      token: \"{}\",\n    }},\n  }},",
                token.expose()
            ),
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }
}
