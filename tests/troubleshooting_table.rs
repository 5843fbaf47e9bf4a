// SPDX-License-Identifier: GPL-2.0-or-later
//! docs/operating.md's troubleshooting table lists every error and warning line
//! the plugin can write. This test reads the plugin's source (src/, without its
//! unit-test modules and without the `jobcomp-kafka` tool, which prints to a
//! terminal, not to slurmctld's log), extracts the format string of every such
//! line, and fails when one has no row in the table.
//!
//! What counts as an error or warning line:
//! - the literal (or the `format!` literal) passed to `log::error`,
//!   `log::warning`, `Problem::Error` or `Problem::Warning`;
//! - every string literal of three words or more in the functions of [`PRODUCERS`]: those build
//!   the text that reaches such a call through a variable (state-file and
//!   spool problems, JobCompLoc errors, the layout guard's lines, librdkafka's
//!   refusals). A call whose argument is neither a literal nor a `format!` must
//!   be listed in [`INDIRECT`], so a new path into the log cannot slip past.
//!
//! A format string is covered by a row when the row's first cell holds all of
//! its literal pieces (the text between `{...}` placeholders), in order; the row
//! may write a placeholder as `<name>` or as an example value.

use std::path::{Path, PathBuf};

/// Calls that write an error or warning line (or queue one: config problems).
const SITES: &[&str] = &["log::error(", "log::warning(", "Problem::Error(", "Problem::Warning("];

/// Calls whose literal argument becomes part of an error or warning line (the
/// `{why}` of the spool's failure line, of a record's failed delivery, of the
/// spool's open failure). Their variable arguments are not traced.
const PARTS: &[&str] = &["failed(", "fail("];

/// Functions whose `format!` literals become error/warning lines through a
/// variable (file, function name). Lines at info level or below inside them
/// (`log::info(...)`, ...) are not taken.
const PRODUCERS: &[(&str, &str)] = &[
    ("src/plugin/lifecycle.rs", "init"),
    ("src/plugin/lifecycle.rs", "set_up_kafka"),
    ("src/config.rs", "read_properties_file"),
    ("src/config.rs", "parse_properties"),
    ("src/config.rs", "readable_secrets_warning"),
    ("src/kafka/mod.rs", "new"),
    ("src/kafka/mod.rs", "conf_set"),
    ("src/kafka/mod.rs", "on_error"),
    ("src/kafka/mod.rs", "result"),
    ("src/slurm/log.rs", "librdkafka_line"),
    ("src/guard.rs", "failure_line"),
    ("src/guard.rs", "report"),
    ("src/state_file.rs", "take_for_replay"),
    ("src/state_file.rs", "load"),
    ("src/spool.rs", "recover"),
    ("src/plugin/hot_spool.rs", "open_spool"),
    ("src/plugin/hot_spool.rs", "failed"),
    ("src/metrics.rs", "open"),
    ("src/state_file.rs", "decode"),
];

/// Calls whose argument is a variable: (file, argument), and where its text
/// comes from (documentation only; the producers above hold the literals).
const INDIRECT: &[(&str, &str, &str)] = &[
    ("src/slurm/entry.rs", "&reason", "plugin::init's Err (lifecycle.rs init)"),
    ("src/slurm/guard.rs", "&guard::failure_line(crate::target::RELEASE, &layout_name(), refusal)", "guard.rs failure_line"),
    ("src/slurm/guard.rs", "&line", "guard.rs NotTaken::note/report"),
    ("src/plugin/hot_spool.rs", "line", "spool.rs recover's errors"),
    ("src/plugin/lifecycle.rs", "problem", "state_file.rs take_for_replay's problems"),
    ("src/plugin/lifecycle.rs", "w", "config.rs secrets_file_warning"),
    ("src/plugin/mod.rs", "text", "config.rs Problem::Warning/Error"),
    ("src/slurm/log.rs", "message", "log.rs itself (the functions every site calls)"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, with string and char literals kept as they are.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' || (b[i] == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && !ident(b, i)) {
            let end = literal_end(src, i).unwrap_or(b.len());
            out.push_str(&src[i..end]);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('"', '\'', 'x') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                src[i + 2..].find('\'').map(|e| i + 2 + e + 1)
            } else {
                let c = src[i + 1..].chars().next();
                c.and_then(|c| (src[i + 1 + c.len_utf8()..].starts_with('\'')).then(|| i + 1 + c.len_utf8() + 1))
            };
            let end = end.unwrap_or(i + 1);
            out.push_str(&src[i..end]);
            i = end;
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// End (exclusive) of the string literal starting at `i` ("..." or r#"..."#).
fn literal_end(src: &str, i: usize) -> Option<usize> {
    let b = src.as_bytes();
    if b[i] == b'r' {
        let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
        let open = i + 1 + hashes;
        if b.get(open) != Some(&b'"') {
            return None;
        }
        let close = format!("\"{}", "#".repeat(hashes));
        return src[open + 1..].find(&close).map(|e| open + 1 + e + close.len());
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The text of a string literal, escapes resolved (a `\` at the end of a line
/// swallows the line break and the next line's leading blanks).
fn literal_text(lit: &str) -> String {
    if lit.starts_with('r') {
        let start = lit.find('"').unwrap() + 1;
        let end = lit.rfind('"').unwrap();
        return lit[start..end].to_string();
    }
    let inner = &lit[1..lit.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\n') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('n') | Some('t') => out.push(' '),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// End (exclusive) of the bracketed group opening at `open` (`(`, `{`).
fn group_end(src: &str, open: usize) -> usize {
    let b = src.as_bytes();
    let (o, c) = (b[open], if b[open] == b'(' { b')' } else { b'}' });
    let mut depth = 0;
    let mut j = open;
    while j < b.len() {
        if b[j] == b'"' || (b[j] == b'r' && matches!(b.get(j + 1), Some(b'"') | Some(b'#')) && !ident(b, j)) {
            if let Some(end) = literal_end(src, j) {
                j = end;
                continue;
            }
        }
        if b[j] == b'\'' && b.get(j + 2) == Some(&b'\'') {
            j += 3;
            continue;
        }
        if b[j] == b'\'' && b.get(j + 1) == Some(&b'\\') {
            j += src[j + 2..].find('\'').map_or(1, |e| e + 3);
            continue;
        }
        if b[j] == o {
            depth += 1;
        } else if b[j] == c {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
        j += 1;
    }
    b.len()
}

/// The source without `#[cfg(test)]` items (the unit-test modules).
fn strip_tests(src: &str) -> String {
    let mut out = src.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let Some(open) = out[at..].find(['{', ';']).map(|e| at + e) else { break };
        let end = if out.as_bytes()[open] == b'{' { group_end(&out, open) } else { open + 1 };
        out.replace_range(at..end, "");
    }
    out
}

/// The literal of `format!("...", ...)` or `"..."` at the start of `arg`.
fn leading_literal(arg: &str) -> Option<String> {
    let arg = arg.trim_start().trim_start_matches('&').trim_start();
    let arg = match arg.strip_prefix("format!(") {
        Some(rest) => rest.trim_start(),
        None => arg,
    };
    if arg.starts_with('"') || arg.starts_with("r\"") || arg.starts_with("r#") {
        literal_end(arg, 0).map(|end| literal_text(&arg[..end]))
    } else {
        None
    }
}

struct Source {
    file: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = repo();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.starts_with(root.join("src/bin")) && !p.starts_with(root.join("src/ops")))
        .map(|p| Source {
            file: p.strip_prefix(&root).unwrap().to_string_lossy().into_owned(),
            code: strip_tests(&strip_comments(&std::fs::read_to_string(&p).unwrap())),
        })
        .collect()
}

/// Every occurrence of `needle` not preceded by an identifier character.
fn find_calls<'a>(code: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(needle).map(|(at, _)| at).filter(move |&at| !ident(code.as_bytes(), at))
}

/// (where, format string) of every error/warning line; errors for call sites
/// whose text cannot be traced.
fn log_formats() -> (Vec<(String, String)>, Vec<String>) {
    let mut formats = Vec::new();
    let mut untraced = Vec::new();
    let sources = sources();
    for source in &sources {
        let code = &source.code;
        for needle in PARTS {
            for at in find_calls(code, needle) {
                let open = at + needle.len() - 1;
                let arg = &code[open + 1..group_end(code, open) - 1];
                // failed(id, "..."): the text is the first literal.
                let arg = match (arg.find("format!("), arg.find('"')) {
                    (Some(f), _) => &arg[f..],
                    (None, Some(q)) => &arg[q..],
                    (None, None) => continue,
                };
                if let Some(text) = leading_literal(arg) {
                    formats.push((format!("{}:{}", source.file, code[..at].lines().count()), text));
                }
            }
        }
        for needle in SITES {
            for at in find_calls(code, needle) {
                let open = at + needle.len() - 1;
                let end = group_end(code, open);
                let arg = &code[open + 1..end - 1];
                // A pattern (`Problem::Error(t) =>`, `matches!(p, Problem::Error(_))`), not a call.
                let after = code[end..].trim_start();
                if ["=>", "|", ")"].iter().any(|p| after.starts_with(p)) {
                    continue;
                }
                let line = code[..at].lines().count();
                match leading_literal(arg) {
                    Some(text) => formats.push((format!("{}:{line}", source.file), text)),
                    None => {
                        let arg = arg.trim();
                        let known = INDIRECT.iter().any(|(file, a, _)| *file == source.file && *a == arg);
                        let in_log_rs = source.file == "src/slurm/log.rs";
                        if !known && !in_log_rs {
                            untraced.push(format!(
                                "{}:{line}: {needle}{arg}) logs a variable: add it to INDIRECT and its producer to PRODUCERS",
                                source.file
                            ));
                        }
                    }
                }
            }
        }
    }
    for (file, function) in PRODUCERS {
        let source = sources.iter().find(|s| s.file == *file).unwrap_or_else(|| panic!("{file} not found"));
        let code = &source.code;
        let mut found = false;
        for (at, _) in code.match_indices(&format!("fn {function}")) {
            let after = &code[at + 3 + function.len()..];
            if !after.starts_with(['(', '<']) {
                continue;
            }
            found = true;
            let open = at + code[at..].find('{').unwrap();
            let body = &code[open..group_end(code, open)];
            // Lines below warning level inside the producer are not taken.
            let mut quiet = Vec::new();
            for needle in ["log::info(", "log::verbose(", "log::debug("] {
                for at in find_calls(body, needle) {
                    let open = at + needle.len() - 1;
                    quiet.push(at..group_end(body, open));
                }
            }
            let b = body.as_bytes();
            let mut j = 0;
            while j < b.len() {
                let starts = b[j] == b'"' || (b[j] == b'r' && matches!(b.get(j + 1), Some(b'"') | Some(b'#')) && !ident(b, j));
                if b[j] == b'\'' && b.get(j + 2) == Some(&b'\'') {
                    j += 3;
                    continue;
                }
                let end = if starts { literal_end(body, j) } else { None };
                let Some(end) = end else {
                    j += 1;
                    continue;
                };
                let text = literal_text(&body[j..end]);
                // A sentence, not a key, a path or a separator.
                if !quiet.iter().any(|r| r.contains(&j)) && text.split_whitespace().count() >= 3 {
                    let line = code[..open].lines().count() + body[..j].lines().count() - 1;
                    formats.push((format!("{file}:{line}"), text));
                }
                j = end;
            }
        }
        assert!(found, "PRODUCERS names {file} fn {function}, which does not exist any more");
    }
    (formats, untraced)
}

/// The literal pieces of a format string, blanks collapsed.
fn pieces(format: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                current.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                current.push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                pieces.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    pieces.push(current);
    // Backticks: the table's code spans lose theirs.
    pieces.into_iter().map(|p| collapse(&p.replace('`', ""))).filter(|p| !p.is_empty()).collect()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first cells of the table under "## Troubleshooting" in docs/operating.md,
/// backticks and markdown escapes removed.
fn table_lines() -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/operating.md")).expect("docs/operating.md");
    let section = doc.split("\n## Troubleshooting").nth(1).expect("a '## Troubleshooting' section in docs/operating.md");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| line"))
        .map(|l| {
            // The first cell: up to the first `|` outside a code span.
            let mut in_code = false;
            let mut cell = String::new();
            for c in l[1..].chars() {
                match c {
                    '`' => in_code = !in_code,
                    '|' if !in_code => break,
                    _ => cell.push(c),
                }
            }
            collapse(&cell.replace("\\|", "|"))
        })
        .collect()
}

fn covered(pieces: &[String], line: &str) -> bool {
    let mut from = 0;
    for piece in pieces {
        match line[from..].find(piece.as_str()) {
            Some(at) => from += at + piece.len(),
            None => return false,
        }
    }
    true
}

#[test]
fn every_error_and_warning_line_has_a_row_in_the_troubleshooting_table() {
    let (formats, untraced) = log_formats();
    assert!(untraced.is_empty(), "log calls whose text this test cannot trace:\n{}", untraced.join("\n"));
    // A floor, so that a broken extraction cannot pass by finding nothing.
    eprintln!("{} format strings", formats.len());
    assert!(formats.len() >= 60, "only {} format strings found: the extraction is broken", formats.len());
    let rows = table_lines();
    let missing: Vec<String> = formats
        .iter()
        .filter(|(_, format)| !rows.iter().any(|row| covered(&pieces(format), row)))
        .map(|(at, format)| format!("{at}: {}", collapse(format)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} error/warning line(s) of the plugin have no row in docs/operating.md's troubleshooting table:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_extraction_finds_literals_in_every_form_the_source_uses() {
    assert_eq!(leading_literal(r#"&format!("job {}: x", id)"#).as_deref(), Some("job {}: x"));
    assert_eq!(leading_literal(r#""plain""#).as_deref(), Some("plain"));
    assert_eq!(leading_literal("&reason"), None);
    assert_eq!(literal_text("\"a \\\n      b\""), "a b");
    assert_eq!(pieces("{why}; kept (at most {MAX}) until"), vec!["; kept (at most", ") until"]);
    assert!(covered(&pieces("cannot write {}: {e}"), "cannot write <dir>: <error>"));
    assert!(!covered(&pieces("b {} a"), "a then b"));
    assert_eq!(strip_tests("fn a() {}\n#[cfg(test)]\nmod tests { fn b() { \"}\"; } }\nfn c() {}"), "fn a() {}\n\nfn c() {}");
}
