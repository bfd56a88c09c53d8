use super::*;
use crate::config::resolve::env_token;
use crate::config::test_support::file_with;
use crate::config::types::AuthMode;
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "s3cret-token-value-9f2b";
const PASSWORD: &str = "s3cret-password-value-77ac";

fn with_token(mut doc: Value) -> Value {
    if doc.get("gateway").is_none() {
        doc["gateway"] = json!({});
    }
    if doc["gateway"].get("auth").is_none() {
        doc["gateway"]["auth"] = json!({});
    }
    if doc["gateway"]["auth"].get("token").is_none() {
        doc["gateway"]["auth"]["token"] = json!(TOKEN);
    }
    doc
}

fn resolve_doc(doc: Value, overrides: &RunOverrides) -> Result<GatewayConfig, ConfigError> {
    let (file, dir) = file_with(doc);
    resolve(&file, dir.path(), overrides, &EnvOverrides::default())
}

fn ok(doc: Value) -> GatewayConfig {
    resolve_doc(with_token(doc), &RunOverrides::default()).expect("config resolves")
}

/// The key of the error for `doc` (with a token added) and its message.
fn err_with(doc: Value, overrides: &RunOverrides) -> (String, String) {
    let err = resolve_doc(doc, overrides).expect_err("config must be refused");
    let message = err.to_string();
    assert!(
        !message.contains(TOKEN) && !message.contains(PASSWORD),
        "{message}"
    );
    (err.key().unwrap_or_default().to_string(), message)
}

fn err(doc: Value) -> (String, String) {
    err_with(with_token(doc), &RunOverrides::default())
}

// ---- resolve: defaults, port, bind ----

#[test]
fn defaults() {
    let cfg = ok(json!({}));
    assert_eq!(cfg.port, DEFAULT_PORT);
    assert_eq!(cfg.bind, BindMode::Loopback);
    assert_eq!(cfg.auth.mode, AuthMode::Token);
    assert_eq!(cfg.auth.token, Some(Secret::new(TOKEN)));
    assert_eq!(cfg.auth.password, None);
    assert_eq!(cfg.auth.rate_limit, RateLimitConfig::default());
    assert_eq!(cfg.control_ui, ControlUiConfig::default());
    assert!(cfg.auto_approve_local);
    assert!(cfg.trusted_proxies.is_empty());
    assert_eq!(
        cfg.tick_interval,
        Duration::from_millis(clawgate_protocol::TICK_INTERVAL_MS)
    );
}

#[test]
fn state_dir_and_config_path() {
    let (file, dir) = file_with(with_token(json!({})));
    let state = dir.path().join("state");
    let cfg = resolve(
        &file,
        &state,
        &RunOverrides::default(),
        &EnvOverrides::default(),
    )
    .unwrap();
    assert_eq!(cfg.state_dir, state);
    assert_eq!(cfg.config_path, file.path);
}

#[test]
fn port_from_file_flag_and_errors() {
    assert_eq!(ok(json!({"gateway": {"port": 19000}})).port, 19000);
    let flag = RunOverrides {
        port: Some(0),
        ..Default::default()
    };
    let cfg = resolve_doc(with_token(json!({"gateway": {"port": 19000}})), &flag).unwrap();
    assert_eq!(cfg.port, 0, "port 0 is allowed from the flag");
    for bad in [
        json!(0),
        json!(65536),
        json!(-1),
        json!(1.5),
        json!("18789"),
        json!(true),
    ] {
        let (key, msg) = err(json!({"gateway": {"port": bad}}));
        assert_eq!(key, "gateway.port", "{msg}");
        assert!(msg.contains("clawgate config set gateway.port"), "{msg}");
    }
}

/// The environment with port and bind overrides set.
fn env_listen(port: Option<(&'static str, &str)>, bind: Option<&str>) -> EnvOverrides {
    let var = |name: &'static str, value: &str| EnvVar {
        name,
        value: value.to_string(),
    };
    EnvOverrides {
        token: Some(Secret::new(TOKEN)),
        port: port.map(|(name, value)| var(name, value)),
        bind: bind.map(|value| var("CLAWGATE_BIND", value)),
        ..Default::default()
    }
}

#[test]
fn port_and_bind_from_the_environment_beat_the_file_and_lose_to_flags() {
    let doc = json!({"gateway": {"port": 19000, "bind": "loopback"}});
    let (file, dir) = file_with(doc);
    let env = env_listen(Some(("CLAWGATE_PORT", "19001")), Some("lan"));
    let cfg = resolve(&file, dir.path(), &RunOverrides::default(), &env).unwrap();
    assert_eq!((cfg.port, cfg.bind), (19001, BindMode::Lan));

    let flags = RunOverrides {
        port: Some(19002),
        bind: Some("loopback".into()),
        ..Default::default()
    };
    let cfg = resolve(&file, dir.path(), &flags, &env).unwrap();
    assert_eq!((cfg.port, cfg.bind), (19002, BindMode::Loopback));

    // A bad value behind a flag is never looked at.
    let bad = env_listen(Some(("CLAWGATE_PORT", "x")), Some("x"));
    assert!(resolve(&file, dir.path(), &flags, &bad).is_ok());
}

#[test]
fn a_bad_environment_value_is_refused_naming_the_variable() {
    let (file, dir) = file_with(json!({"gateway": {"port": 19000}}));
    let env = env_listen(Some(("OPENCLAW_GATEWAY_PORT", "99999")), Some("public"));
    let errors = resolve_all(&file, dir.path(), &RunOverrides::default(), &env).unwrap_err();
    let keys: Vec<_> = errors.iter().filter_map(|e| e.key()).collect();
    assert_eq!(keys, ["OPENCLAW_GATEWAY_PORT", "CLAWGATE_BIND"]);
    assert!(
        errors[0]
            .to_string()
            .contains("export OPENCLAW_GATEWAY_PORT=18789"),
        "{}",
        errors[0]
    );
}

#[test]
fn bind_modes() {
    assert_eq!(
        ok(json!({"gateway": {"bind": "loopback"}})).bind,
        BindMode::Loopback
    );
    assert_eq!(ok(json!({"gateway": {"bind": "lan"}})).bind, BindMode::Lan);
    let cfg = ok(json!({"gateway": {"bind": "custom", "customBindHost": "10.1.2.3"}}));
    assert_eq!(cfg.bind, BindMode::Custom("10.1.2.3".parse().unwrap()));
    assert!(!cfg.bind.is_loopback());

    let flag = RunOverrides {
        bind: Some("custom".into()),
        host: Some("::1".into()),
        ..Default::default()
    };
    let cfg = resolve_doc(with_token(json!({"gateway": {"bind": "lan"}})), &flag).unwrap();
    assert_eq!(cfg.bind, BindMode::Custom("::1".parse().unwrap()));
    assert!(cfg.bind.is_loopback());
}

#[test]
fn bind_errors() {
    let (key, msg) = err(json!({"gateway": {"bind": "everywhere"}}));
    assert_eq!(key, "gateway.bind");
    assert!(
        msg.contains("clawgate config set gateway.bind loopback"),
        "{msg}"
    );
    assert_eq!(err(json!({"gateway": {"bind": 3}})).0, "gateway.bind");
    assert_eq!(
        err(json!({"gateway": {"bind": "custom"}})).0,
        "gateway.customBindHost"
    );
    assert_eq!(
        err(json!({"gateway": {"bind": "custom", "customBindHost": "example.com"}})).0,
        "gateway.customBindHost"
    );

    let t = with_token(json!({}));
    let flag = |bind: &str, host: Option<&str>| RunOverrides {
        bind: Some(bind.into()),
        host: host.map(String::from),
        ..Default::default()
    };
    assert_eq!(err_with(t.clone(), &flag("wide", None)).0, "--bind");
    assert_eq!(err_with(t.clone(), &flag("custom", None)).0, "--host");
    assert_eq!(
        err_with(t.clone(), &flag("custom", Some("nope"))).0,
        "--host"
    );
    assert_eq!(err_with(t, &flag("lan", Some("10.0.0.1"))).0, "--host");
}

// ---- resolve: auth ----

#[test]
fn auth_mode_inference() {
    let cfg = resolve_doc(
        json!({"gateway": {"auth": {"token": TOKEN}}}),
        &RunOverrides::default(),
    )
    .unwrap();
    assert_eq!(cfg.auth.mode, AuthMode::Token);
    let cfg = resolve_doc(
        json!({"gateway": {"auth": {"password": PASSWORD}}}),
        &RunOverrides::default(),
    )
    .unwrap();
    assert_eq!(cfg.auth.mode, AuthMode::Password);
    assert_eq!(cfg.auth.password, Some(Secret::new(PASSWORD)));
    assert_eq!(cfg.auth.token, None);

    let (key, msg) = err_with(
        json!({"gateway": {"auth": {"token": TOKEN, "password": PASSWORD}}}),
        &RunOverrides::default(),
    );
    assert_eq!(key, "gateway.auth.mode");
    assert!(
        msg.contains("clawgate config set gateway.auth.mode"),
        "{msg}"
    );

    let cfg = resolve_doc(
        json!({"gateway": {"auth": {"mode": "password", "token": TOKEN, "password": PASSWORD}}}),
        &RunOverrides::default(),
    )
    .unwrap();
    assert_eq!(cfg.auth.mode, AuthMode::Password);
    assert_eq!(
        cfg.auth.token, None,
        "only the chosen mode's secret is kept"
    );
}

#[test]
fn nothing_configured_means_token_mode_which_needs_a_token() {
    let (key, msg) = err_with(json!({}), &RunOverrides::default());
    assert_eq!(key, "gateway.auth.token");
    assert!(
        msg.contains("clawgate config set gateway.auth.token"),
        "{msg}"
    );
    let e = resolve_doc(json!({}), &RunOverrides::default()).unwrap_err();
    assert!(e.is_missing_secret());
}

#[test]
fn auth_mode_errors() {
    for bad in ["foo", "Token", "Trusted-Proxy"] {
        let (key, msg) = err(json!({"gateway": {"auth": {"mode": bad}}}));
        assert_eq!(key, "gateway.auth.mode", "{msg}");
        assert!(msg.contains("\"trusted-proxy\""), "{msg}");
    }
    assert_eq!(
        err(json!({"gateway": {"auth": {"mode": 1}}})).0,
        "gateway.auth.mode"
    );

    let (key, msg) = err_with(
        json!({"gateway": {"auth": {"mode": "token", "password": PASSWORD}}}),
        &RunOverrides::default(),
    );
    assert_eq!(key, "gateway.auth.token", "{msg}");
    let (key, msg) = err(json!({"gateway": {"auth": {"mode": "password"}}}));
    assert_eq!(key, "gateway.auth.password", "{msg}");
    assert!(msg.contains("clawgate gateway set-password"), "{msg}");
    let (key, _) = err_with(
        json!({"gateway": {"auth": "token"}}),
        &RunOverrides::default(),
    );
    assert_eq!(key, "gateway.auth");
}

#[test]
fn auth_none_only_on_loopback() {
    let cfg = ok(json!({"gateway": {"auth": {"mode": "none"}}}));
    assert_eq!(cfg.auth.mode, AuthMode::None);
    assert_eq!(cfg.auth.token, None);

    let (key, msg) = err(json!({"gateway": {"bind": "lan", "auth": {"mode": "none"}}}));
    assert_eq!(key, "gateway.auth.mode");
    assert!(msg.contains("loopback") && msg.contains("anyone"), "{msg}");

    let flag = RunOverrides {
        auth: Some("none".into()),
        bind: Some("lan".into()),
        ..Default::default()
    };
    assert_eq!(err_with(json!({}), &flag).0, "--auth");
    let flag = RunOverrides {
        auth: Some("none".into()),
        bind: Some("custom".into()),
        host: Some("127.0.0.2".into()),
        ..Default::default()
    };
    assert_eq!(
        resolve_doc(json!({}), &flag).unwrap().auth.mode,
        AuthMode::None
    );
}

#[test]
fn secret_precedence_flag_file_env_config() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tok");
    std::fs::write(&token_file, "from-file\n").unwrap();
    let (file, d) = file_with(json!({"gateway": {"auth": {"token": "from-config"}}}));
    let run = |o: &RunOverrides, e: &EnvOverrides| {
        resolve(&file, d.path(), o, e)
            .unwrap()
            .auth
            .token
            .unwrap()
            .expose()
            .to_string()
    };
    let none = EnvOverrides::default();
    assert_eq!(run(&RunOverrides::default(), &none), "from-config");
    assert_eq!(
        run(&RunOverrides::default(), &env_token("from-env")),
        "from-env"
    );
    let with_file = RunOverrides {
        token_file: Some(token_file.clone()),
        ..Default::default()
    };
    assert_eq!(run(&with_file, &env_token("from-env")), "from-file");
    let with_flag = RunOverrides {
        token: Some(Secret::new("from-flag")),
        token_file: Some(token_file),
        ..Default::default()
    };
    assert_eq!(run(&with_flag, &env_token("from-env")), "from-flag");

    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "  pw-from-file  \n").unwrap();
    let o = RunOverrides {
        auth: Some("password".into()),
        password_file: Some(pw_file),
        ..Default::default()
    };
    let cfg = resolve(&file, d.path(), &o, &none).unwrap();
    assert_eq!(cfg.auth.password.unwrap().expose(), "pw-from-file");
}

#[test]
fn unreadable_secret_file_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let o = RunOverrides {
        token_file: Some(dir.path().join("missing")),
        ..Default::default()
    };
    assert_eq!(err_with(json!({}), &o).0, "--token-file");
    let o = RunOverrides {
        auth: Some("password".into()),
        password_file: Some(dir.path().join("missing")),
        ..Default::default()
    };
    assert_eq!(err_with(json!({}), &o).0, "--password-file");
}

#[test]
fn blank_and_placeholder_secrets_are_refused_naming_their_source() {
    for bad in ["", "   ", "undefined", "null", " null "] {
        let (key, _) = err_with(
            json!({"gateway": {"auth": {"token": bad}}}),
            &RunOverrides::default(),
        );
        assert_eq!(key, "gateway.auth.token", "{bad:?}");
        let (key, _) = err_with(
            json!({"gateway": {"auth": {"mode": "password", "password": bad}}}),
            &RunOverrides::default(),
        );
        assert_eq!(key, "gateway.auth.password", "{bad:?}");
        let o = RunOverrides {
            token: Some(Secret::new(bad)),
            ..Default::default()
        };
        assert_eq!(err_with(json!({}), &o).0, "--token");

        let (file, d) = file_with(json!({}));
        let e = resolve(&file, d.path(), &RunOverrides::default(), &env_token(bad)).unwrap_err();
        assert!(e.key().unwrap().contains("CLAWGATE_GATEWAY_TOKEN"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank");
    std::fs::write(&blank, "\n\n").unwrap();
    let o = RunOverrides {
        token_file: Some(blank),
        ..Default::default()
    };
    assert_eq!(err_with(json!({}), &o).0, "--token-file");
    let (key, _) = err_with(
        json!({"gateway": {"auth": {"token": 12345}}}),
        &RunOverrides::default(),
    );
    assert_eq!(key, "gateway.auth.token");
}

#[test]
fn no_error_message_contains_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, TOKEN).unwrap();
    let both = json!({"gateway": {"auth": {"token": TOKEN, "password": PASSWORD}}});
    let cases: Vec<(Value, RunOverrides, EnvOverrides)> = vec![
        (
            both.clone(),
            RunOverrides::default(),
            EnvOverrides::default(),
        ),
        (
            json!({"gateway": {"bind": "lan", "auth": {"mode": "none", "token": TOKEN}}}),
            RunOverrides::default(),
            EnvOverrides::default(),
        ),
        (
            json!({"gateway": {"auth": {"mode": "password", "token": TOKEN}}}),
            RunOverrides::default(),
            EnvOverrides::default(),
        ),
        (
            json!({"gateway": {"auth": {"token": {"value": TOKEN}}}}),
            RunOverrides::default(),
            EnvOverrides::default(),
        ),
        (
            json!({"gateway": {"auth": {"mode": TOKEN}}}),
            RunOverrides::default(),
            EnvOverrides::default(),
        ),
        (
            json!({"gateway": {"port": 0, "auth": {"token": TOKEN}}}),
            RunOverrides::default(),
            EnvOverrides::default(),
        ),
        (
            json!({}),
            RunOverrides {
                auth: Some("none".into()),
                bind: Some("lan".into()),
                token: Some(Secret::new(TOKEN)),
                password_file: Some(secret_file),
                ..Default::default()
            },
            EnvOverrides {
                token: Some(Secret::new(TOKEN)),
                password: Some(Secret::new(PASSWORD)),
                ..Default::default()
            },
        ),
    ];
    for (doc, o, e) in cases {
        let (file, d) = file_with(doc.clone());
        let errors = resolve_all(&file, d.path(), &o, &e).expect_err("refused");
        for err in errors {
            let msg = format!("{err} {err:?}");
            assert!(
                !msg.contains(TOKEN) && !msg.contains(PASSWORD),
                "{doc}: {msg}"
            );
        }
    }
}

// ---- resolve: rate limit, Control UI, nodes, proxies ----

#[test]
fn rate_limit_values() {
    let cfg = ok(json!({"gateway": {"auth": {"rateLimit": {
        "maxAttempts": 3, "windowMs": 1000, "lockoutMs": 2000,
        "exemptLoopback": false, "globalMaxFailures": 50, "attackGuard": false,
        "attackCooldownMs": 5000, "recentSuccessTtlMs": 7000
    }}}}));
    assert_eq!(
        cfg.auth.rate_limit,
        RateLimitConfig {
            max_attempts: 3,
            window_ms: 1000,
            lockout_ms: 2000,
            exempt_loopback: false,
            global_max_failures: 50,
            attack_guard: false,
            attack_cooldown_ms: 5000,
            recent_success_ttl_ms: 7000,
        }
    );
}

#[test]
fn rate_limit_errors_name_the_full_key() {
    for field in [
        "maxAttempts",
        "windowMs",
        "lockoutMs",
        "globalMaxFailures",
        "attackCooldownMs",
        "recentSuccessTtlMs",
    ] {
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("10"),
            json!(true),
            json!([1]),
        ] {
            let (key, msg) = err(json!({"gateway": {"auth": {"rateLimit": {field: bad}}}}));
            assert_eq!(key, format!("gateway.auth.rateLimit.{field}"), "{msg}");
            assert!(msg.contains("clawgate config set"), "{msg}");
        }
    }
    let (key, _) =
        err(json!({"gateway": {"auth": {"rateLimit": {"maxAttempts": 5_000_000_000u64}}}}));
    assert_eq!(key, "gateway.auth.rateLimit.maxAttempts");
    let (key, _) = err(json!({"gateway": {"auth": {"rateLimit": {"exemptLoopback": "yes"}}}}));
    assert_eq!(key, "gateway.auth.rateLimit.exemptLoopback");
    let (key, _) = err(json!({"gateway": {"auth": {"rateLimit": 5}}}));
    assert_eq!(key, "gateway.auth.rateLimit");
}

#[test]
fn control_ui_values() {
    let cfg = ok(json!({"gateway": {"controlUi": {
        "enabled": false,
        "basePath": "ui//admin",
        "allowedOrigins": ["HTTPS://Example.COM/", "http://10.0.0.5:8080", "https://x.example:443", "*", "http://[::1]:3000"]
    }}}));
    assert!(!cfg.control_ui.enabled);
    assert_eq!(cfg.control_ui.base_path, "/ui/admin/");
    assert_eq!(
        cfg.control_ui.allowed_origins,
        [
            "https://example.com",
            "http://10.0.0.5:8080",
            "https://x.example",
            "*",
            "http://[::1]:3000"
        ]
    );
    for (raw, want) in [
        ("", "/"),
        ("/", "/"),
        ("ui", "/ui/"),
        ("/ui", "/ui/"),
        ("/ui/", "/ui/"),
    ] {
        let cfg = ok(json!({"gateway": {"controlUi": {"basePath": raw}}}));
        assert_eq!(cfg.control_ui.base_path, want, "{raw:?}");
    }
}

#[test]
fn control_ui_errors() {
    assert_eq!(
        err(json!({"gateway": {"controlUi": {"enabled": "no"}}})).0,
        "gateway.controlUi.enabled"
    );
    for bad in [json!("/a b/"), json!("/ui?x"), json!("/../etc"), json!(3)] {
        assert_eq!(
            err(json!({"gateway": {"controlUi": {"basePath": bad}}})).0,
            "gateway.controlUi.basePath"
        );
    }
    assert_eq!(
        err(json!({"gateway": {"controlUi": {"allowedOrigins": "https://a.example"}}})).0,
        "gateway.controlUi.allowedOrigins"
    );
    for bad in [
        json!("example.com"),
        json!("ftp://example.com"),
        json!("https://example.com/path"),
        json!("https://"),
        json!("https://user@example.com"),
        json!("https://example.com:99999"),
        json!("https://exa mple.com"),
        json!("https://example.com?x=1"),
        json!(5),
        json!("null"),
    ] {
        let (key, msg) = err(json!({"gateway": {"controlUi": {"allowedOrigins": ["*", bad]}}}));
        assert_eq!(key, "gateway.controlUi.allowedOrigins[1]", "{msg}");
    }
}

#[test]
fn nodes_and_trusted_proxies() {
    let cfg = ok(json!({"gateway": {
        "nodes": {"pairing": {"autoApproveLocal": false}},
        "trustedProxies": ["10.0.0.1", "::1"]
    }}));
    assert!(!cfg.auto_approve_local);
    assert_eq!(
        cfg.trusted_proxies,
        vec![
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );

    assert_eq!(
        err(json!({"gateway": {"nodes": {"pairing": {"autoApproveLocal": 1}}}})).0,
        "gateway.nodes.pairing.autoApproveLocal"
    );
    let cfg = ok(
        json!({"gateway": {"trustedProxies": ["10.0.0.1", "10.9.9.9/8", "::ffff:172.16.0.0/108", "fd00::/8"]}}),
    );
    assert_eq!(
        cfg.trusted_proxies,
        vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
    );
    let r = &cfg.trusted_proxy_ranges;
    assert_eq!(r.len(), 3);
    assert!(r[0].contains("10.1.2.3".parse().unwrap()));
    assert!(
        r[0].contains("::ffff:10.1.2.3".parse().unwrap()),
        "mapped peers match IPv4 ranges"
    );
    assert!(!r[0].contains("11.0.0.1".parse().unwrap()));
    assert!(
        r[1].contains("172.16.5.5".parse().unwrap()),
        "a mapped range is its IPv4 range"
    );
    assert!(!r[1].contains("172.32.0.1".parse().unwrap()));
    assert!(r[2].contains("fd12::1".parse().unwrap()));
    assert!(!r[2].contains("10.1.2.3".parse().unwrap()));
    for bad in [
        "10.0.0.0/33",
        "10.0.0.0/x",
        "::ffff:10.0.0.0/64",
        "host.example/8",
    ] {
        let (key, msg) = err(json!({"gateway": {"trustedProxies": ["10.0.0.1", bad]}}));
        assert_eq!(key, "gateway.trustedProxies[1]", "{bad}: {msg}");
    }
    assert_eq!(
        err(json!({"gateway": {"trustedProxies": ["10.0.0.1", 7]}})).0,
        "gateway.trustedProxies[1]"
    );
    assert_eq!(
        err(json!({"gateway": {"trustedProxies": "10.0.0.1"}})).0,
        "gateway.trustedProxies"
    );
}

#[test]
fn allowed_hosts_values_and_errors() {
    assert!(ok(json!({})).allowed_hosts.is_empty());
    let cfg = ok(json!({"gateway": {
        "allowedHosts": ["Gateway.Example.", "gateway.example", "[::1]", "10.0.0.5", "*"]
    }}));
    assert_eq!(
        cfg.allowed_hosts,
        vec!["gateway.example", "::1", "10.0.0.5", "*"]
    );
    for bad in [
        json!("gateway.example:18789"),
        json!("http://gateway.example"),
        json!("gateway.example/ui"),
        json!("a..b"),
        json!(""),
        json!(5),
    ] {
        let (key, msg) = err(json!({"gateway": {"allowedHosts": ["ok.example", bad]}}));
        assert_eq!(key, "gateway.allowedHosts[1]", "{msg}");
    }
    assert_eq!(
        err(json!({"gateway": {"allowedHosts": "gateway.example"}})).0,
        "gateway.allowedHosts"
    );
}

#[test]
fn tick_interval_values_and_errors() {
    for ms in [1000, 1500, 30_000, 300_000] {
        let cfg = ok(json!({"gateway": {"tickIntervalMs": ms}}));
        assert_eq!(cfg.tick_interval, Duration::from_millis(ms));
    }
    for bad in [
        json!(0),
        json!(999),
        json!(300_001),
        json!(-1000),
        json!(1500.5),
        json!("30000"),
        json!(true),
        json!([1000]),
    ] {
        let (key, msg) = err(json!({"gateway": {"tickIntervalMs": bad}}));
        assert_eq!(key, "gateway.tickIntervalMs", "{msg}");
        assert!(
            msg.contains("from 1000 to 300000")
                && msg.contains("clawgate config set gateway.tickIntervalMs 30000"),
            "{msg}"
        );
    }
}

#[test]
fn resolve_all_reports_every_problem() {
    let (file, d) = file_with(json!({"gateway": {
        "port": "x", "bind": "nowhere",
        "auth": {"rateLimit": {"windowMs": 0}},
        "trustedProxies": ["bad"]
    }}));
    let errors = resolve_all(
        &file,
        d.path(),
        &RunOverrides::default(),
        &EnvOverrides::default(),
    )
    .unwrap_err();
    let keys: Vec<_> = errors.iter().filter_map(|e| e.key()).collect();
    assert_eq!(
        keys,
        [
            "gateway.port",
            "gateway.bind",
            "gateway.auth.token",
            "gateway.auth.rateLimit.windowMs",
            "gateway.trustedProxies[0]"
        ]
    );
    let first = resolve(
        &file,
        d.path(),
        &RunOverrides::default(),
        &EnvOverrides::default(),
    )
    .unwrap_err();
    assert_eq!(first.key(), Some("gateway.port"));
}

#[test]
fn null_values_count_as_unset() {
    let cfg = ok(json!({"gateway": {"port": null, "bind": null, "controlUi": null}}));
    assert_eq!(cfg.port, DEFAULT_PORT);
    assert_eq!(cfg.bind, BindMode::Loopback);
}

#[test]
fn tls_section_defaults_flag_and_refusals() {
    let cfg = ok(json!({}));
    assert!(!cfg.tls.enabled && cfg.tls.auto_generate && cfg.tls.cert_path.is_none());
    let flag = RunOverrides {
        tls: true,
        ..RunOverrides::default()
    };
    let cfg = resolve_doc(with_token(json!({})), &flag).unwrap();
    assert!(cfg.tls.enabled, "--tls turns it on");
    let cfg = ok(
        json!({"gateway": {"tls": {"enabled": true, "certPath": "/c.pem", "keyPath": "/k.pem", "caPath": "/ca.pem"}}}),
    );
    assert_eq!(
        cfg.tls.cert_path.as_deref(),
        Some(std::path::Path::new("/c.pem"))
    );
    assert_eq!(
        cfg.tls.ca_path.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );

    let none = RunOverrides::default();
    for (doc, key) in [
        (
            json!({"enabled": true, "certPath": "/c.pem"}),
            "gateway.tls.keyPath",
        ),
        (
            json!({"enabled": true, "keyPath": "/k.pem"}),
            "gateway.tls.certPath",
        ),
        (
            json!({"enabled": true, "autoGenerate": false}),
            "gateway.tls.autoGenerate",
        ),
        (
            json!({"enabled": true, "caPath": "/ca.pem"}),
            "gateway.tls.caPath",
        ),
        (json!({"enabled": "yes"}), "gateway.tls.enabled"),
        (json!({"certPath": 5}), "gateway.tls.certPath"),
        (json!("on"), "gateway.tls"),
    ] {
        let (got, message) = err_with(with_token(json!({"gateway": {"tls": doc}})), &none);
        assert_eq!(got, key, "{message}");
        assert!(
            message.contains("clawgate config"),
            "names the fix: {message}"
        );
    }
}

// ---- resolve: password strength and passwordHash (issue 22) ----

#[test]
fn a_weak_password_is_refused_off_loopback_and_warned_on_it() {
    let (key, msg) = err(
        json!({"gateway": {"bind": "lan", "auth": {"mode": "password", "password": "hunter22"}}}),
    );
    assert_eq!(key, "gateway.auth.password", "{msg}");
    assert!(msg.contains("zxcvbn score"), "{msg}");
    assert!(
        msg.contains("clawgate gateway set-password --generate"),
        "{msg}"
    );
    assert!(msg.contains("openssl rand -base64 24"), "{msg}");
    assert!(!msg.contains("hunter22"), "{msg}");
    let cfg = ok(json!({"gateway": {"auth": {"mode": "password", "password": "hunter22"}}}));
    let warnings = cfg.auth.startup_warnings().join("\n");
    assert!(warnings.contains("zxcvbn score"), "{warnings}");
    assert!(
        warnings.contains("clawgate gateway set-password"),
        "{warnings}"
    );
    assert!(!warnings.contains("hunter22"), "{warnings}");
    // A strong one is fine anywhere (still warned about: plain text).
    let cfg = ok(
        json!({"gateway": {"bind": "lan", "auth": {"mode": "password", "password": "tusk-Marble-quietly-47-orbit"}}}),
    );
    assert_eq!(cfg.auth.startup_warnings().len(), 1);
}

#[test]
fn password_hash_is_an_argon2id_phc_string() {
    let hash = crate::password::hash_password("tusk-Marble-quietly-47-orbit");
    let cfg = ok(
        json!({"gateway": {"bind": "lan", "auth": {"mode": "password", "passwordHash": hash.as_str()}}}),
    );
    assert_eq!(cfg.auth.mode, AuthMode::Password);
    assert_eq!(cfg.auth.password, None);
    assert_eq!(cfg.auth.password_hash.as_ref(), Some(&hash));
    assert!(cfg.auth.startup_warnings().is_empty());

    let (key, msg) = err(
        json!({"gateway": {"auth": {"mode": "password", "passwordHash": "not-a-hash-secret"}}}),
    );
    assert_eq!(key, "gateway.auth.passwordHash", "{msg}");
    assert!(!msg.contains("not-a-hash-secret"), "{msg}");
    assert!(msg.contains("clawgate gateway set-password"), "{msg}");
    let (key, msg) = err(json!({"gateway": {"auth": {"mode": "password", "passwordHash": 5}}}));
    assert_eq!(key, "gateway.auth.passwordHash", "{msg}");

    let (key, msg) = err(
        json!({"gateway": {"auth": {"mode": "password", "passwordHash": hash.as_str(), "password": "x"}}}),
    );
    assert_eq!(key, "gateway.auth.password", "{msg}");
    assert!(
        msg.contains("clawgate config unset gateway.auth.password"),
        "{msg}"
    );
}

// ---- trusted-proxy ----

fn tp_doc(tp: Value) -> Value {
    json!({"gateway": {"trustedProxies": ["10.0.0.1"], "auth": {"mode": "trusted-proxy", "trustedProxy": tp}}})
}

fn tp_err(doc: Value) -> (String, String) {
    err_with(doc, &RunOverrides::default())
}

#[test]
fn trusted_proxy_resolves_with_the_reference_keys() {
    let doc = json!({"gateway": {
        "trustedProxies": ["10.0.0.1"],
        "auth": {
            "mode": "trusted-proxy",
            "password": PASSWORD,
            "identityScopes": {"Admin@Example.com": ["operator.admin"]},
            "trustedProxy": {
                "userHeader": "X-Forwarded-User",
                "requiredHeaders": ["x-forwarded-proto"],
                "allowUsers": ["nick@example.com"],
                "allowLoopback": true,
                "deviceAutoApprove": {"enabled": true},
                "jwt": {
                    "header": "x-pomerium-jwt-assertion",
                    "jwksUrl": "https://auth.example.com/.well-known/pomerium/jwks.json",
                    "issuer": "auth.example.com",
                    "audience": "gateway.example.com",
                    "algorithms": ["ES256"],
                    "clockSkewSeconds": 30,
                },
            },
        },
    }});
    let cfg = resolve_doc(doc, &RunOverrides::default()).expect("resolves");
    assert_eq!(cfg.auth.mode, AuthMode::TrustedProxy);
    assert!(cfg.auth.password.is_some(), "the local password is kept");
    let tp = cfg.auth.trusted_proxy.expect("trusted proxy");
    assert_eq!(tp.user_header, "x-forwarded-user");
    assert_eq!(tp.required_headers, vec!["x-forwarded-proto"]);
    assert!(tp.allow_loopback);
    let auto = tp.device_auto_approve.expect("enabled");
    assert!(!auto.explicit);
    assert_eq!(auto.scopes.len(), 4);
    let jwt = tp.jwt.expect("jwt");
    assert_eq!(jwt.audience, vec!["gateway.example.com"]);
    assert_eq!(jwt.user_claim, "email");
    assert_eq!(jwt.clock_skew_secs, 30);
    assert_eq!(
        cfg.auth.identity_scopes,
        vec![(
            "admin@example.com".to_string(),
            vec!["operator.admin".to_string()]
        )]
    );
}

#[test]
fn trusted_proxy_refusals_name_the_key() {
    // A shared token is a second way in: refused, as in the reference.
    let (key, msg) = err(tp_doc(json!({"userHeader": "x-forwarded-user"})));
    assert_eq!(key, "gateway.auth.token", "{msg}");
    assert!(msg.contains("mutually exclusive"), "{msg}");
    let (key, msg) = tp_err(
        json!({"gateway": {"trustedProxies": ["10.0.0.1"], "auth": {"mode": "trusted-proxy"}}}),
    );
    assert_eq!(key, "gateway.auth.trustedProxy", "{msg}");
    let (key, _) = tp_err(tp_doc(json!({})));
    assert_eq!(key, "gateway.auth.trustedProxy.userHeader");
    let (key, _) = tp_err(tp_doc(json!({"userHeader": "bad header"})));
    assert_eq!(key, "gateway.auth.trustedProxy.userHeader");
    let (key, msg) = tp_err(
        json!({"gateway": {"auth": {"mode": "trusted-proxy", "trustedProxy": {"userHeader": "x-u"}}}}),
    );
    assert_eq!(key, "gateway.trustedProxies", "{msg}");
    let (key, _) = tp_err(tp_doc(
        json!({"userHeader": "x-u", "requiredHeaders": ["ok", ""]}),
    ));
    assert_eq!(key, "gateway.auth.trustedProxy.requiredHeaders[1]");
    let (key, _) = tp_err(tp_doc(
        json!({"userHeader": "x-u", "deviceAutoApprove": {"enabled": true, "scopes": ["operator.root"]}}),
    ));
    assert_eq!(key, "gateway.auth.trustedProxy.deviceAutoApprove.scopes[0]");
    let mut doc = tp_doc(json!({"userHeader": "x-u"}));
    doc["gateway"]["auth"]["identityScopes"] = json!({"a@b.c": ["nope"]});
    let (key, _) = tp_err(doc);
    assert_eq!(key, "gateway.auth.identityScopes[\"a@b.c\"][0]");
}

#[test]
fn trusted_proxy_jwt_refusals() {
    let jwt = |j: Value| tp_doc(json!({"userHeader": "x-u", "jwt": j}));
    let base = json!({"header": "cf-access-jwt-assertion", "jwksUrl": "https://t.cloudflareaccess.com/cdn-cgi/access/certs", "issuer": "https://t.cloudflareaccess.com", "audience": ["aud1"]});
    assert!(resolve_doc(jwt(base.clone()), &RunOverrides::default()).is_ok());
    for (field, value, key) in [
        (
            "algorithms",
            json!(["none"]),
            "gateway.auth.trustedProxy.jwt.algorithms[0]",
        ),
        (
            "algorithms",
            json!(["HS256"]),
            "gateway.auth.trustedProxy.jwt.algorithms[0]",
        ),
        (
            "algorithms",
            json!([]),
            "gateway.auth.trustedProxy.jwt.algorithms",
        ),
        (
            "jwksUrl",
            json!("ftp://x"),
            "gateway.auth.trustedProxy.jwt.jwksUrl",
        ),
        (
            "jwksFile",
            json!("/tmp/x.json"),
            "gateway.auth.trustedProxy.jwt.jwksUrl",
        ),
        (
            "clockSkewSeconds",
            json!(3600),
            "gateway.auth.trustedProxy.jwt.clockSkewSeconds",
        ),
        ("issuer", json!(""), "gateway.auth.trustedProxy.jwt.issuer"),
        (
            "audience",
            json!([]),
            "gateway.auth.trustedProxy.jwt.audience",
        ),
        (
            "header",
            json!(null),
            "gateway.auth.trustedProxy.jwt.header",
        ),
    ] {
        let mut j = base.clone();
        j[field] = value;
        let (k, msg) = tp_err(jwt(j));
        assert_eq!(k, key, "{field}: {msg}");
        assert!(msg.contains("clawgate config"), "{msg}");
    }
    let mut j = base.clone();
    j["algorithms"] = json!(["none"]);
    assert!(tp_err(jwt(j)).1.contains("unsigned"));
}

#[test]
fn store_url_from_file_environment_and_flag() {
    // Default: the SQLite file in the state directory.
    assert_eq!(ok(json!({})).store, StoreConfig::default());
    let pw = tempfile::tempdir().unwrap();
    let (file_pw, env_pw) = (pw.path().join("file-pw"), pw.path().join("env-pw"));
    std::fs::write(&file_pw, "from-file\n").unwrap();
    std::fs::write(&env_pw, "from-env\n").unwrap();
    let file_url = "postgres://cg@db.internal:5432/reg";
    let cfg = ok(json!({"gateway": {"store": {"url": file_url, "passwordFile": file_pw}}}));
    assert_eq!(cfg.store.url.as_ref().map(|u| u.expose()), Some(file_url));
    assert_eq!(cfg.store.password_file.as_deref(), Some(file_pw.as_path()));
    let target = cfg.store.postgres().unwrap().unwrap();
    assert_eq!(target.display(), "db.internal:5432/reg");

    // A password file that cannot be read stops the start, naming it.
    let missing = pw.path().join("missing");
    let (key, message) =
        err(json!({"gateway": {"store": {"url": file_url, "passwordFile": missing}}}));
    assert_eq!(key, "gateway.store.url");
    assert!(
        message.contains("missing") && message.contains("cannot be read"),
        "{message}"
    );

    // The environment beats the file, the flag beats both.
    let (file, dir) = file_with(with_token(json!({"gateway": {"store": {"url": file_url}}})));
    let env = EnvOverrides {
        store_url: Some(Secret::new("postgres://cg@env-host/reg")),
        store_password_file: Some(env_pw.clone()),
        ..Default::default()
    };
    let cfg = resolve(&file, dir.path(), &RunOverrides::default(), &env).unwrap();
    assert_eq!(
        cfg.store.url.as_ref().map(|u| u.expose()),
        Some("postgres://cg@env-host/reg")
    );
    assert_eq!(cfg.store.password_file.as_deref(), Some(env_pw.as_path()));
    let flag = RunOverrides {
        store: Some(Secret::new("postgres://cg@flag-host/reg")),
        ..Default::default()
    };
    let cfg = resolve(&file, dir.path(), &flag, &env).unwrap();
    assert_eq!(
        cfg.store.url.as_ref().map(|u| u.expose()),
        Some("postgres://cg@flag-host/reg")
    );
}

#[test]
fn a_bad_store_url_is_refused_naming_where_it_came_from_and_never_echoed() {
    let (key, message) = err(json!({"gateway": {"store": {"url": "mysql://u:hunter2-pw@h/d"}}}));
    assert_eq!(key, "gateway.store.url");
    assert!(message.contains("postgres://"), "{message}");
    assert!(!message.contains("hunter2-pw"), "{message}");
    let (key, message) = err(json!({"gateway": {"store": {"url": 5432}}}));
    assert_eq!(key, "gateway.store.url");
    assert!(
        message.contains("clawgate config unset gateway.store.url"),
        "{message}"
    );
    let flag = RunOverrides {
        store: Some(Secret::new("postgres://u:hunter2-pw@h:notaport/d")),
        ..Default::default()
    };
    let (key, message) = err_with(with_token(json!({})), &flag);
    assert_eq!(key, "--store");
    assert!(!message.contains("hunter2-pw"), "{message}");
    let (key, _) = err(json!({"gateway": {"store": "postgres://u@h/d"}}));
    assert_eq!(key, "gateway.store");
}
