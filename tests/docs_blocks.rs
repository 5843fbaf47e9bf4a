// SPDX-License-Identifier: GPL-2.0-or-later
//! Every fenced block of README.md and docs/*.md says what runs it, and the
//! configuration blocks are run here. Each docs/*.md opens with the question
//! it answers, and README.md's table of contents lists every one of them.
//!
//! Each block is preceded by a marker line:
//! - `<!-- docs-block: jobcomploc -->`: a JobCompLoc file. Parsed by the
//!   plugin's own parser (config::parse_properties), and every property set
//!   with librdkafka's rd_kafka_conf_set (the librdkafka the plugin is built
//!   with), which refuses an unknown property or a bad value. No client is
//!   created: nothing is resolved or connected.
//! - `<!-- docs-block: slurm.conf -->`: slurm.conf lines. `JobCompType` must be
//!   jobcomp/kafka, `JobCompParams` parses with no warning or error for the
//!   newest supported release (config::parse_params).
//! - `<!-- secured-example: NAME -->`: a JobCompLoc file that
//!   tests/e2e_secured/ (make e2e-secured) reads from docs/securing-kafka.md
//!   and runs against a real slurmctld; checked here as `jobcomploc` as well.
//! - `<!-- docs-block: run-by PATH... -->`: commands the named test scripts
//!   run (each must exist and name the document, so the two are changed
//!   together). When one of them is the Makefile, every `make TARGET` line
//!   of the block must be a target `make test` reaches; for other scripts
//!   what they run is their own claim, not checked here.
//! - `<!-- docs-block: not-run REASON -->`: commands that cannot run here
//!   (RHEL, a site's own machines); the reason is said in the text as well.
//! - `<!-- docs-block: output -->`: not a command: an example of what the
//!   plugin or a tool prints.

use jobcomp_kafka::config;
use jobcomp_kafka::release::Release;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![repo().join("README.md")];
    docs.extend(docs_files());
    docs
}

/// The files under docs/, sorted.
fn docs_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// A file's path relative to the repository, as links in the docs write it.
fn relative(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap().to_string_lossy().into_owned()
}

struct Block {
    doc: String,
    line: usize,
    marker: Option<String>,
    text: String,
}

/// The fenced blocks of a document, each with the marker of the line before
/// its opening fence (blank lines skipped).
fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = relative(path);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with("```") {
            i += 1;
            continue;
        }
        let fence = lines[i].trim_start();
        let ticks = fence.len() - fence.trim_start_matches('`').len();
        let marker = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .filter(|l| l.trim_start().starts_with("<!--"))
            .map(|l| l.trim().trim_start_matches("<!--").trim_end_matches("-->").trim().to_string());
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && !lines[end].trim_start().starts_with(&"`".repeat(ticks)) {
            end += 1;
        }
        out.push(Block { doc: doc.clone(), line: i + 1, marker, text: lines[start..end.min(lines.len())].join("\n") + "\n" });
        i = end + 1;
    }
    out
}

fn newest_release() -> Release {
    Release::parse("26.05.5").unwrap()
}

fn check_jobcomploc(text: &str) -> Result<(), String> {
    let properties = config::parse_properties(text, "example").map_err(|e| e.to_string())?;
    let mut conf = rdkafka::ClientConfig::new();
    for p in &properties {
        conf.set(&p.key, &p.value);
    }
    conf.create_native_config().map(|_| ()).map_err(|e| format!("librdkafka refuses it: {e}"))
}

fn check_slurm_conf(text: &str) -> Result<(), String> {
    let mut found = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        let Some((key, value)) = line.split_once('=') else { continue };
        match key.trim() {
            "JobCompType" if value.trim() != "jobcomp/kafka" => return Err(format!("JobCompType={value}")),
            "JobCompParams" => {
                let (_, problems) = config::parse_params(Some(value.trim()), newest_release());
                if !problems.is_empty() {
                    return Err(format!("JobCompParams={value}: {problems:?}"));
                }
                found = true;
            }
            "JobCompType" | "JobCompLoc" => found = true,
            other if other.starts_with("JobComp") => return Err(format!("unknown setting {other}")),
            _ => {}
        }
    }
    if found {
        Ok(())
    } else {
        Err("no JobComp setting in a slurm.conf block".into())
    }
}

fn check(block: &Block) -> Result<(), String> {
    let Some(marker) = &block.marker else {
        return Err("no <!-- docs-block: ... --> marker before the block".into());
    };
    if let Some(name) = marker.strip_prefix("secured-example:") {
        let secured = std::fs::read_to_string(repo().join("tests/e2e_secured/secured.py")).unwrap();
        if !secured.contains(&block.doc) {
            return Err(format!("secured example {name}: tests/e2e_secured/secured.py does not read {}", block.doc));
        }
        return check_jobcomploc(&block.text);
    }
    // The broker-side blocks of docs/apache-kafka-security.md: the secured
    // suite reads them by these markers and starts its broker with them.
    for kind in ["kafka-broker:", "kafka-jvm:", "kafka-acls:", "kafka-configs:"] {
        if marker.starts_with(kind) {
            let secured = std::fs::read_to_string(repo().join("tests/e2e_secured/secured.py")).unwrap();
            let name = kind.trim_end_matches(':');
            if !secured.contains(&block.doc) || !secured.contains(&format!("\"{name}\"")) {
                return Err(format!("{marker}: tests/e2e_secured/secured.py does not read {name} blocks of {}", block.doc));
            }
            // And the block itself is named by the suite ("plugin-prefixed"
            // in test_acl.py, "plain" in secured.py's list of broker blocks).
            let block_name = marker[kind.len()..].trim();
            let suite = std::fs::read_dir(repo().join("tests/e2e_secured")).unwrap();
            let named = suite.filter_map(Result::ok).any(|f| {
                f.path().extension().is_some_and(|e| e == "py")
                    && std::fs::read_to_string(f.path()).unwrap_or_default().contains(&format!("\"{block_name}\""))
            });
            if !named {
                return Err(format!("{marker}: no test of tests/e2e_secured names the block \"{block_name}\""));
            }
            return Ok(());
        }
    }
    let Some(spec) = marker.strip_prefix("docs-block:").map(str::trim) else {
        return Err(format!("unknown marker <!-- {marker} -->"));
    };
    let (kind, arg) = spec.split_once(' ').map_or((spec, ""), |(k, a)| (k, a.trim()));
    match kind {
        "jobcomploc" => check_jobcomploc(&block.text),
        "slurm.conf" => check_slurm_conf(&block.text),
        "output" => Ok(()),
        "not-run" if !arg.is_empty() => Ok(()),
        "run-by" if !arg.is_empty() => {
            for script in arg.split_whitespace() {
                let text = std::fs::read_to_string(repo().join(script)).map_err(|e| format!("run-by {script}: {e}"))?;
                if !text.contains(&block.doc) {
                    return Err(format!("run-by {script}: that file does not name {} (say there which block it runs)", block.doc));
                }
                if script == "Makefile" {
                    check_make_commands_run_by_make_test(&block.text, &text)?;
                }
            }
            Ok(())
        }
        _ => Err(format!("unknown or incomplete marker <!-- {marker} -->")),
    }
}

/// The targets `make test` reaches in a Makefile's text: `test` itself, its
/// prerequisites, and every target a recipe runs with `$(MAKE)`, followed
/// through the targets they reach in turn.
fn targets_reached_by_make_test(makefile: &str) -> std::collections::BTreeSet<String> {
    let mut rules = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut current: Option<String> = None;
    for line in makefile.lines() {
        if let Some(recipe) = line.strip_prefix('\t') {
            if let (Some(target), Some(at)) = (&current, recipe.find("$(MAKE)")) {
                let called = recipe[at + "$(MAKE)".len()..]
                    .split_whitespace()
                    .take_while(|w| !w.starts_with(['&', '|', ';', '#']))
                    .filter(|w| !w.starts_with('-') && !w.contains('=') && !w.contains('$'))
                    .map(str::to_string);
                rules.entry(target.clone()).or_default().extend(called);
            }
            continue;
        }
        current = None;
        let Some((target, prerequisites)) = line.split_once(':') else { continue };
        if target.is_empty() || target.contains(char::is_whitespace) || target.contains('$') || prerequisites.starts_with('=') {
            continue;
        }
        rules.entry(target.to_string()).or_default().extend(prerequisites.split_whitespace().map(str::to_string));
        current = Some(target.to_string());
    }
    let mut reached = std::collections::BTreeSet::new();
    let mut todo = vec!["test".to_string()];
    while let Some(target) = todo.pop() {
        if reached.insert(target.clone()) {
            todo.extend(rules.get(&target).into_iter().flatten().cloned());
        }
    }
    reached
}

/// A block said to be run by the Makefile: each `make TARGET` line in it must
/// name a target that `make test` reaches.
fn check_make_commands_run_by_make_test(block: &str, makefile: &str) -> Result<(), String> {
    let reached = targets_reached_by_make_test(makefile);
    for line in block.lines() {
        let Some(command) = line.split('#').next().unwrap().trim().strip_prefix("make ") else { continue };
        let Some(target) = command.split_whitespace().find(|w| !w.starts_with('-') && !w.contains('=')) else { continue };
        if !reached.contains(target) {
            return Err(format!("run-by Makefile: `make {target}` is not run by `make test`"));
        }
    }
    Ok(())
}

#[test]
fn a_make_command_that_make_test_does_not_run_fails_a_run_by_makefile_block() {
    let makefile = "test: deps\n\t$(MAKE) unit\n\t$(MAKE) -j3 -Oline lane-a lane-b\nlane-a:\n\t$(MAKE) e2e SLURM_VERSION=1\nlane-b:\n\tci/x.sh\nbench: build\n\tci/bench.sh\n";
    let reached = targets_reached_by_make_test(makefile);
    assert_eq!(reached.into_iter().collect::<Vec<_>>(), ["deps", "e2e", "lane-a", "lane-b", "test", "unit"]);
    assert!(check_make_commands_run_by_make_test("make e2e   # a comment\nmake test\n", makefile).is_ok());
    assert!(check_make_commands_run_by_make_test("make e2e\nmake bench\n", makefile).is_err());
}

#[test]
fn every_block_of_the_docs_is_run_or_says_why_not() {
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for doc in documents() {
        for block in blocks(&doc) {
            let kind = block.marker.clone().unwrap_or_default().split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            *counts.entry(kind).or_default() += 1;
            if let Err(e) = check(&block) {
                failures.push(format!("{}:{}: {e}", block.doc, block.line));
            }
        }
    }
    eprintln!("blocks by marker: {counts:?}");
    assert!(failures.is_empty(), "{} block(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_misspelt_property_or_token_in_a_block_fails() {
    assert!(check_jobcomploc("bootstrap.servers=k:9092\n").is_ok());
    assert!(check_jobcomploc("bootstrap.servers=k:9092\nmesage.timeout.ms=1\n").is_err());
    assert!(check_jobcomploc("bootstrap.servers=k:9092\nsecurity.protocol=TLS\n").is_err());
    assert!(check_slurm_conf("JobCompType=jobcomp/kafka\nJobCompParams=topic=a,poll_intervall=2\n").is_err());
    assert!(check_slurm_conf("JobCompType=jobcomp/kafka\nJobCompParams=topic=a,tick_ms=0\n").is_err());
    assert!(check_slurm_conf("JobCompType=jobcomp/kafka\nJobCompParams=topic=a,poll_interval=2\n").is_ok());
}

/// Documents other branches add (issues #21-#25); the README's table of
/// contents names them already. Remove a name once its file is merged.
const WRITTEN_ELSEWHERE: &[&str] =
    &[];

/// The anchors GitHub makes of a document's headings.
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_link_of_the_docs_leads_to_a_file_of_the_repository() {
    let mut failures = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = relative(&doc);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let link = &rest[..rest.find(')').unwrap_or(rest.len())];
            if link.contains("://") || link.starts_with("mailto:") {
                failures.push(format!("{name}: {link} leads outside the repository"));
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if path.is_empty() { doc.clone() } else { doc.parent().unwrap().join(path) };
            let Ok(target) = target.canonicalize() else {
                let relative = std::path::Path::new(&name).parent().unwrap().join(path);
                let relative = relative.to_string_lossy().replace("docs/../", "");
                if !WRITTEN_ELSEWHERE.contains(&relative.as_str()) {
                    failures.push(format!("{name}: {link}: no such file"));
                }
                continue;
            };
            if !target.starts_with(repo().canonicalize().unwrap()) {
                failures.push(format!("{name}: {link} leads outside the repository"));
            } else if !fragment.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&target).unwrap());
                if !heads.iter().any(|a| a == fragment) {
                    failures.push(format!("{name}: {link}: no heading makes the anchor #{fragment}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 26: each file under docs/ starts with the question it answers, in
/// the form the files share: a level-1 heading `# Topic: question?`, the
/// question starting with an asking word.
fn opening_question(text: &str) -> Result<(), String> {
    const ASKING: &[&str] = &["how", "what", "which", "why", "when", "where", "who", "is", "are", "do", "does", "can", "should"];
    let first = text.lines().next().unwrap_or("");
    let Some(title) = first.strip_prefix("# ") else {
        return Err(format!("the first line is not a `# ` heading: {first:?}"));
    };
    let Some((topic, question)) = title.split_once(": ") else {
        return Err(format!("the heading is not `# Topic: question?`: {first:?}"));
    };
    let word = question.split_whitespace().next().unwrap_or("");
    if topic.trim().is_empty() || !ASKING.contains(&word) || !question.trim_end().ends_with('?') {
        return Err(format!("the heading does not end with the question the file answers: {first:?}"));
    }
    Ok(())
}

#[test]
fn every_docs_file_starts_with_the_question_it_answers() {
    let failures: Vec<String> = docs_files()
        .iter()
        .filter_map(|d| opening_question(&std::fs::read_to_string(d).unwrap()).err().map(|e| format!("{}: {e}", relative(d))))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_title_without_its_question_fails() {
    assert!(opening_question("# Installing: how do I get the plugin onto my controller?\n\ntext\n").is_ok());
    assert!(opening_question("# Performance\n").is_err());
    assert!(opening_question("# Apache Kafka: what is tested against it, and how\n").is_err());
    assert!(opening_question("# Consuming the records: the contract, the waiter, the sink?\n").is_err());
    assert!(opening_question("## Installing: how do I get it?\n").is_err());
    assert!(opening_question("\n# Installing: how do I get it?\n").is_err());
}

/// Every file under docs/ has its line in the README's table of contents.
#[test]
fn the_readme_lists_every_docs_file() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let missing: Vec<String> = docs_files()
        .iter()
        .map(|d| relative(d))
        .filter(|name| !readme.contains(&format!("]({name})")))
        .collect();
    assert!(missing.is_empty(), "not in README.md's table of contents: {}", missing.join(", "));
}
