//! Stamps the binary with the git commit it was built from and the build
//! date, for `clawgate --version`: `0.1.0 (75469ed 2026-12-03)`, with
//! `-dirty` after the hash when tracked files had uncommitted changes.
//!
//! Outside a git checkout (a source tarball) the commit is `unknown`. The
//! script reruns when HEAD moves (checkout, commit), not on every edit, so
//! `-dirty` and the date describe the tree when it last ran.
//! `SOURCE_DATE_EPOCH` fixes the date for reproducible builds.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&manifest_dir);
    let commit = match git(dir, &["rev-parse", "--short=7", "HEAD"]) {
        Some(hash) => {
            watch_head(dir);
            let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|out| !out.is_empty());
            if dirty { format!("{hash}-dirty") } else { hash }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=CLAWGATE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=CLAWGATE_BUILD_DATE={}", build_date());
}

/// Reruns this script when HEAD or the branch it points at changes. Paths
/// come from git itself, so linked worktrees (HEAD in the worktree's git
/// dir, refs in the common one) and packed refs work too.
fn watch_head(dir: &Path) {
    let mut files = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(branch);
    }
    for file in files {
        if let Some(path) = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &file],
        ) && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// The trimmed standard output of a successful git command.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// Today (UTC) as YYYY-MM-DD, or `SOURCE_DATE_EPOCH`'s day.
fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
