//! `clawgate explain [CODE]`: meaning, likely cause and next command for an
//! error code, from the one catalogue.

use std::io::Write;

use clap::Args;
use clawgate_protocol::catalogue::{self, CATALOGUE, Entry};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// An error code such as AUTH_TOKEN_MISMATCH (case-insensitive; dashes
    /// work too, and so does an authReason such as token_mismatch). Without
    /// one, every code is listed.
    code: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// How many close codes an unknown code suggests at most.
const MAX_SUGGESTIONS: usize = 3;

pub fn run(args: ExplainArgs) -> u8 {
    let Some(raw) = args.code else {
        list(args.json);
        return 0;
    };
    match lookup(&raw) {
        Some(entry) => {
            show(entry, args.json);
            0
        }
        None => {
            unknown(&raw, args.json);
            1
        }
    }
}

/// `auth-token-mismatch`, ` Auth_Token_Mismatch ` -> `AUTH_TOKEN_MISMATCH`.
fn normalize(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A code, or the `authReason` a code travels with.
fn lookup(raw: &str) -> Option<&'static Entry> {
    let code = normalize(raw);
    catalogue::entry(&code).or_else(|| {
        CATALOGUE
            .iter()
            .find(|e| e.auth_reason.is_some_and(|r| r.eq_ignore_ascii_case(&code)))
    })
}

fn entry_json(e: &Entry) -> Value {
    serde_json::to_value(e).expect("catalogue entries serialize")
}

/// Writes to stdout; a closed pipe (`clawgate explain | head`) is not an error.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn print_json(v: &Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    ));
}

fn list(json: bool) {
    if json {
        print_json(&Value::Array(CATALOGUE.iter().map(entry_json).collect()));
        return;
    }
    let width = CATALOGUE.iter().map(|e| e.code.len()).max().unwrap_or(0);
    let mut text = String::new();
    for e in CATALOGUE {
        text.push_str(&format!("{:width$}  {}\n", e.code, e.title));
    }
    text.push_str("\nDetails and the fixing command: clawgate explain <CODE>\n");
    out(&text);
}

fn show(e: &Entry, json: bool) {
    if json {
        print_json(&entry_json(e));
        return;
    }
    let reason = e
        .auth_reason
        .map(|r| format!(", details.authReason \"{r}\""))
        .unwrap_or_default();
    out(&format!(
        "{code}: {title}\n\n\
         meaning: {meaning}\n\
         cause:   {cause}\n\
         sent as: error.code \"{error_code}\", details.code \"{code}\"{reason}\n\
         next:    {next}\n",
        code = e.code,
        title = e.title,
        meaning = e.meaning,
        cause = e.cause,
        error_code = e.error_code,
        next = e.next,
    ));
}

fn unknown(raw: &str, json: bool) {
    let suggestions = suggest(&normalize(raw));
    let message = format!("unknown error code: {}", raw.trim());
    let next = match suggestions.as_slice() {
        [] => "List every code with: clawgate explain".to_string(),
        [one] => {
            format!("Did you mean: clawgate explain {one}? List every code with: clawgate explain")
        }
        many => format!(
            "Did you mean one of: {}? List every code with: clawgate explain",
            many.join(", ")
        ),
    };
    if json {
        print_json(&json!({
            "ok": false,
            "error": {"message": message, "next": next, "suggestions": suggestions},
        }));
    } else {
        crate::say_err!("{message}");
        crate::say_err!("next: {next}");
    }
}

/// The known codes closest to `code`: those containing it (or contained in
/// it) and those within a few edits, nearest first.
fn suggest(code: &str) -> Vec<&'static str> {
    if code.is_empty() {
        return Vec::new();
    }
    let mut scored: Vec<(usize, &'static str)> = CATALOGUE
        .iter()
        .filter_map(|e| {
            let distance = edit_distance(code, e.code);
            let contains = code.len() >= 4 && (e.code.contains(code) || code.contains(e.code));
            let close = distance <= (e.code.len().max(code.len()) / 3).max(2);
            (contains || close).then_some((distance, e.code))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, c)| c)
        .collect()
}

/// Levenshtein distance over bytes (codes are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "ABC"), 3);
        assert_eq!(edit_distance("KITTEN", "SITTING"), 3);
        assert_eq!(
            edit_distance("AUTH_TOKEN_MISMATCH", "AUTH_TOKEN_MISMATCH"),
            0
        );
    }

    #[test]
    fn lookup_accepts_case_dashes_and_auth_reasons() {
        assert_eq!(
            lookup("auth-token-mismatch").map(|e| e.code),
            Some("AUTH_TOKEN_MISMATCH")
        );
        assert_eq!(
            lookup("token_mismatch").map(|e| e.code),
            Some("AUTH_TOKEN_MISMATCH")
        );
        assert!(lookup("MISMATCH").is_none());
    }

    #[test]
    fn suggestions_rank_the_nearest_first() {
        assert_eq!(suggest("AUTH_TOKEN_MISMACH")[0], "AUTH_TOKEN_MISMATCH");
        assert_eq!(suggest("PAIRING")[0], "PAIRING_REQUIRED");
        assert!(suggest("ZZZZZZZZZZZZ").is_empty());
        assert!(suggest("TOKEN_MISMATCH").contains(&"AUTH_DEVICE_TOKEN_MISMATCH"));
    }
}
