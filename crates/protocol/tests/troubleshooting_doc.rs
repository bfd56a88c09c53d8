//! `docs/troubleshooting.md` stays in step with the error catalogue: one
//! table row per code, each with the catalogue's `next` text, plus the
//! recovery commands users are told to run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clawgate_protocol::catalogue::{CATALOGUE, entry};

const DOC: &str = "docs/troubleshooting.md";

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One row of the code table.
struct Row {
    line: usize,
    code: String,
    cells: Vec<String>,
}

/// The rows of the table whose header starts with `| Code |`.
fn code_table(doc: &str) -> Vec<Row> {
    let mut lines = doc.lines().enumerate();
    let header = lines
        .by_ref()
        .find(|(_, l)| l.trim_start().starts_with("| Code |"))
        .unwrap_or_else(|| panic!("{DOC}: no table with a `| Code |` header"));
    let columns = split_row(header.1).len();
    assert_eq!(
        split_row(header.1),
        [
            "Code",
            "What the client sent",
            "What it means",
            "What to do"
        ],
        "{DOC}:{}: the code table's columns must be Code | What the client sent | What it means | What to do",
        header.0 + 1
    );
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if !line.starts_with('|') {
            break;
        }
        let cells = split_row(line);
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue; // the separator row
        }
        assert_eq!(
            cells.len(),
            columns,
            "{DOC}:{}: row has {} cells, the table has {columns} columns (a stray `|`?)",
            i + 1,
            cells.len()
        );
        rows.push(Row {
            line: i + 1,
            code: cells[0].trim_matches('`').trim().to_string(),
            cells,
        });
    }
    rows
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

#[test]
fn every_catalogue_code_has_exactly_one_row() {
    let doc = doc();
    let rows = code_table(&doc);
    let mut seen: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for row in &rows {
        seen.entry(row.code.as_str()).or_default().push(row.line);
    }
    for e in CATALOGUE {
        match seen.get(e.code).map(Vec::as_slice) {
            None | Some([]) => panic!(
                "{DOC}: the code table has no row for {}; add `| `{}` | ... | ... | `{}` |`",
                e.code, e.code, e.next
            ),
            Some([_]) => {}
            Some(lines) => panic!(
                "{DOC}: {} has {} rows (lines {lines:?}); keep one",
                e.code,
                lines.len()
            ),
        }
    }
    for row in &rows {
        assert!(
            entry(&row.code).is_some(),
            "{DOC}:{}: `{}` is not a catalogue code; remove the row or add the code to crates/protocol/src/catalogue.rs",
            row.line,
            row.code
        );
    }
    assert_eq!(rows.len(), CATALOGUE.len(), "{DOC}: row count");
}

#[test]
fn each_row_says_what_to_do_with_the_catalogue_next_text() {
    let doc = doc();
    for row in code_table(&doc) {
        let Some(e) = entry(&row.code) else { continue };
        let todo = row.cells.last().expect("rows have cells");
        assert!(
            todo.contains(e.next),
            "{DOC}:{}: the \"What to do\" cell of {} must contain the catalogue's next text verbatim:\n  {}\nbut it is:\n  {todo}\n(edit the doc, or the entry's `next` in crates/protocol/src/catalogue.rs)",
            row.line,
            e.code,
            e.next
        );
        for (i, cell) in row.cells.iter().enumerate().skip(1) {
            assert!(
                !cell.is_empty(),
                "{DOC}:{}: {} has an empty cell in column {}",
                row.line,
                e.code,
                i + 1
            );
        }
    }
}

/// The section that starts at the heading containing `title`, up to the next
/// heading of the same or a higher level.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let start = doc
        .find(&format!("## {title}"))
        .unwrap_or_else(|| panic!("{DOC}: no `## {title}` section"));
    let rest = &doc[start + 3..];
    let end = rest.find("\n## ").map_or(doc.len(), |i| start + 3 + i);
    &doc[start..end]
}

#[test]
fn drift_checklist_names_the_recovery_commands_in_order() {
    let doc = doc();
    let checklist = section(&doc, "Token drift");
    let steps = [
        "clawgate gateway auth-token --show",
        "clawgate devices list",
        "clawgate devices rotate --device <deviceId> --role operator",
        "clawgate devices remove <deviceId>",
        "clawgate devices approve <requestId>",
    ];
    let mut from = 0;
    for step in steps {
        let at = checklist[from..].find(step).unwrap_or_else(|| {
            panic!(
                "{DOC}: the token-drift checklist must name `{step}` after the previous step ({:?})",
                steps
            )
        });
        from += at + step.len();
    }
}

#[test]
fn doc_covers_1008_the_retry_and_the_ssh_tunnel() {
    let doc = doc();
    let unauthorized = section(&doc, "If you see \"unauthorized\" / 1008");
    for needle in [
        "1008",
        "details.code",
        "canRetryWithDeviceToken",
        "recommendedNextStep",
        "clawgate explain <CODE>",
        "clawgate doctor",
    ] {
        assert!(
            unauthorized.contains(needle),
            "{DOC}: the unauthorized / 1008 section must mention `{needle}`"
        );
    }

    let retry = section(&doc, "The one bounded retry");
    for code in clawgate_protocol::catalogue::PAUSE_RECONNECT {
        assert!(
            retry.contains(&format!("`{code}`")),
            "{DOC}: the retry section must list `{code}` among the codes that stop reconnecting"
        );
    }
    for needle in [
        "250 ms",
        "127.evil.com",
        "--tls-fingerprint",
        "hello-ok",
        "retryAfterMs",
    ] {
        assert!(
            retry.contains(needle),
            "{DOC}: the retry section must mention `{needle}`"
        );
    }

    for needle in [
        "~/.clawgate/client/",
        "<state-dir>/client/",
        "identity.json",
        "device-tokens.json",
    ] {
        assert!(
            doc.contains(needle),
            "{DOC}: must say where the client keeps its files (`{needle}`)"
        );
    }

    let tunnel = section(&doc, "Remote access through an SSH tunnel");
    for needle in [
        "ssh -N -L 18789:127.0.0.1:18789 user@host",
        "http://127.0.0.1:18789/",
        "--url ws://127.0.0.1:18789",
    ] {
        assert!(
            tunnel.contains(needle),
            "{DOC}: the SSH tunnel section must show `{needle}`"
        );
    }
}
