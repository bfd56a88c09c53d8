//! The name hints should use for this program: `clawgate` when that name
//! on `PATH` is this very binary, otherwise the path it was started by (a
//! fresh `cargo build` leaves it in `target/release/clawgate`, and
//! `cargo run` has no name on `PATH` at all).

use std::borrow::Cow;

/// `println!` whose command hints name [`command_name`].
#[macro_export]
macro_rules! say {
    () => { println!() };
    ($($arg:tt)*) => {
        println!("{}", $crate::invocation::localize(&format!($($arg)*)))
    };
}

/// `eprintln!` whose command hints name [`command_name`].
#[macro_export]
macro_rules! say_err {
    () => { eprintln!() };
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::invocation::localize(&format!($($arg)*)))
    };
}
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The command a user can type to run this binary again.
pub fn command_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let argv0 = std::env::args_os().next().map(PathBuf::from);
        let path = std::env::var_os("PATH");
        resolve_name(exe.as_deref(), argv0.as_deref(), path.as_deref())
    })
}

/// [`command_name`] from explicit inputs (for tests).
fn resolve_name(
    exe: Option<&Path>,
    argv0: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
) -> String {
    let Some(exe) = exe.and_then(|e| e.canonicalize().ok()) else {
        return "clawgate".into();
    };
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .find_map(|dir| {
            let candidate = dir.join("clawgate");
            candidate
                .is_file()
                .then(|| candidate.canonicalize().ok())
                .flatten()
        });
    if on_path.as_deref() == Some(exe.as_path()) {
        return "clawgate".into();
    }
    // Not on PATH: the path as typed when it names this binary (relative
    // paths stay short), else the absolute one.
    if let Some(argv0) = argv0
        && argv0.components().count() > 1
        && argv0.canonicalize().ok().as_deref() == Some(exe.as_path())
    {
        return shell_word(&argv0.to_string_lossy());
    }
    shell_word(&exe.to_string_lossy())
}

/// Quotes a path for a shell when it needs it.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The top-level subcommands (checked against the clap definitions by a
/// test in main.rs): a `clawgate` followed by one of them is a hint.
pub const SUBCOMMANDS: &[&str] = &[
    "gateway",
    "devices",
    "passkeys",
    "upstream",
    "config",
    "dashboard",
    "explain",
    "doctor",
    "health",
    "status",
    "completions",
    "man",
    "backup",
    "restore",
    "store",
    "pair",
    "help",
];

/// `text` with every command hint (`clawgate <subcommand>`) naming
/// [`command_name`] instead. Text without hints is returned as it is.
pub fn localize(text: &str) -> Cow<'_, str> {
    localize_with(text, command_name())
}

fn localize_with<'a>(text: &'a str, name: &str) -> Cow<'a, str> {
    if name == "clawgate" || !text.contains("clawgate ") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(i) = rest.find("clawgate ") {
        let prev = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        // A hint: `clawgate` as a word, followed by one of its subcommands
        // or a flag (not prose such as "clawgate 0.1.0 listening" or "not
        // a clawgate one").
        let after = &rest[i + "clawgate ".len()..];
        let word = after
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .next()
            .unwrap_or("");
        let is_hint = prev
            .is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '/'))
            && (word.starts_with('-') || SUBCOMMANDS.contains(&word));
        out.push_str(&rest[..i]);
        out.push_str(if is_hint { name } else { "clawgate" });
        out.push(' ');
        rest = &rest[i + "clawgate ".len()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_runnable_command() {
        let name = "target/release/clawgate";
        assert_eq!(
            localize_with("fix it with: clawgate config set gateway.port 18789", name),
            "fix it with: target/release/clawgate config set gateway.port 18789"
        );
        assert_eq!(
            localize_with("run `clawgate devices approve X` or clawgate --help", name),
            "run `target/release/clawgate devices approve X` or target/release/clawgate --help"
        );
        // Prose, versions, paths and other words are left alone.
        for text in [
            "clawgate 0.1.0 listening on ws://127.0.0.1:18789",
            "~/.clawgate/clawgate.json",
            "the clawgate-gateway crate",
            "/usr/bin/clawgate serve",
            "is a SQLite database but not a clawgate one",
        ] {
            assert_eq!(localize_with(text, name), text);
        }
        assert_eq!(
            localize_with("clawgate config get x", "clawgate"),
            "clawgate config get x"
        );
    }

    #[test]
    fn the_name_is_clawgate_only_when_path_finds_this_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = bin.join("clawgate");
        std::fs::write(&exe, b"").unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("clawgate"), b"").unwrap();
        let path_with = std::env::join_paths([other.path(), &bin]).unwrap();
        // Another clawgate comes first on PATH: not this binary.
        let named = resolve_name(Some(&exe), Some(&exe), Some(&path_with));
        assert_eq!(named, exe.canonicalize().unwrap().to_string_lossy());
        let path_only = std::env::join_paths([&bin]).unwrap();
        assert_eq!(
            resolve_name(Some(&exe), Some(Path::new("clawgate")), Some(&path_only)),
            "clawgate"
        );
        assert_eq!(
            resolve_name(Some(&exe), None, None),
            exe.canonicalize().unwrap().to_string_lossy()
        );
    }
}
