//! Shell completions, man pages, `--version` and plain logs, with the real
//! binary.

mod common;

use std::process::Command;

use common::*;

fn exe() -> String {
    assert_cmd::cargo::cargo_bin("clawgate")
        .display()
        .to_string()
}

fn bash(script: &str) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("CLAWGATE_BIN", exe())
        .output()
        .expect("bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bash_completion_registers_and_completes_subcommands() {
    let (code, out, err) =
        bash(r#"source <("$CLAWGATE_BIN" completions bash) && complete -p clawgate"#);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("-F _clawgate") && out.trim_end().ends_with(" clawgate"),
        "{out}"
    );

    let complete = |words: &str, cword: usize| {
        let (code, out, err) = bash(&format!(
            r#"source <("$CLAWGATE_BIN" completions bash)
COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}
_clawgate clawgate "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
echo "${{COMPREPLY[@]}}""#
        ));
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    assert_eq!(complete("clawgate gat", 1), "gateway");
    let gateway = complete("clawgate gateway ''", 2);
    for sub in [
        "run",
        "install",
        "uninstall",
        "start",
        "stop",
        "restart",
        "status",
    ] {
        assert!(
            gateway.split(' ').any(|w| w == sub),
            "{sub} not in {gateway}"
        );
    }
    assert_eq!(complete("clawgate completions z", 2), "zsh");
}

#[test]
fn every_shell_gets_a_script() {
    for (shell, marker) in [
        ("bash", "_clawgate()"),
        ("zsh", "#compdef clawgate"),
        ("fish", "complete -c clawgate"),
        ("elvish", "edit:completion:arg-completer[clawgate]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker}");
        assert!(script.contains("gateway"), "{shell}");
    }
    let out = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_command_and_render() {
    let out = bin().arg("man").output().unwrap();
    assert!(out.status.success());
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(
        top.starts_with(".ie \\n(.g .ds Aq") || top.contains(".TH clawgate 1"),
        "{top}"
    );
    assert!(top.contains(".TH clawgate 1"), "{top}");
    for sub in ["gateway", "devices", "config", "completions", "man"] {
        assert!(top.contains(sub), "top page lacks {sub}");
    }

    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "clawgate.1",
        "clawgate-gateway.1",
        "clawgate-gateway-run.1",
        "clawgate-gateway-install.1",
        "clawgate-devices-approve.1",
        "clawgate-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {name} 1")), "{page}");
    }
    let install = std::fs::read_to_string(dir.path().join("clawgate-gateway-install.1")).unwrap();
    assert!(
        install.contains("token\\-file") || install.contains("token-file"),
        "{install}"
    );

    // Rendered by man itself where it is installed.
    let rendered = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("clawgate-gateway-run.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output();
    if let Ok(r) = rendered {
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert!(
            text.contains("NAME") && text.contains("clawgate-gateway-run"),
            "{text}"
        );
    }
}

#[test]
fn version_names_the_commit_and_build_date() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // clawgate 0.1.0 (75469ed 2026-12-03), -dirty after the hash when the
    // tree had changes; `unknown` outside a git checkout.
    let rest = line
        .strip_prefix(&format!("clawgate {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let inner = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = inner.split_once(' ').unwrap_or_else(|| panic!("{line}"));
    let bytes = date.as_bytes();
    assert!(
        date.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && date.chars().filter(|c| c.is_ascii_digit()).count() == 8,
        "{line}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(hash) => assert_eq!(commit.trim_end_matches("-dirty"), hash, "{line}"),
        None => assert_eq!(commit, "unknown", "{line}"),
    }
    // Subcommands say the same.
    let out = bin().args(["gateway", "--version"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(inner));
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &[], &[("CLAWGATE_LOG", "debug")]);
    let (code, stderr) = stop(running);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("gateway listening"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "ANSI codes in piped logs: {stderr:?}"
    );
}
