//! What an audit found, and its three renderings: a table for people, JSON
//! with a stable, versioned schema for scripts, and SARIF 2.1.0 for code
//! scanning. docs/auditor.md documents the JSON schema.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::checks::Check;

/// The JSON schema's name and version; bumped on any incompatible change.
pub const SCHEMA: &str = "wsgate-audit/1";

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not a weakness by itself.
    Info,
    /// A hardening gap.
    Low,
    /// Exploitable with help (another bug, a lax browser, a local attacker).
    Medium,
    /// Exploitable by a hostile page or client.
    High,
    /// A hostile page acts with the user's credentials.
    Critical,
}

impl Severity {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses `--fail-on`.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.name() == s)
    }

    /// SARIF's level.
    fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Low | Severity::Medium => "warning",
            Severity::High | Severity::Critical => "error",
        }
    }

    /// GitHub's `security-severity` (CVSS-like, 0.0 to 10.0).
    fn security_severity(self) -> &'static str {
        match self {
            Severity::Info => "0.0",
            Severity::Low => "3.0",
            Severity::Medium => "5.5",
            Severity::High => "8.0",
            Severity::Critical => "9.5",
        }
    }
}

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// The endpoint behaved as it should.
    Pass {
        /// What was seen.
        evidence: String,
    },
    /// A weakness, with what shows it.
    Finding {
        /// What was sent and seen.
        evidence: String,
    },
    /// Not run, and why (not asked for, needs `--aggressive`, does not apply).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Could not decide (the endpoint did not answer as a WebSocket server).
    Error {
        /// What went wrong.
        reason: String,
    },
}

/// One check and its outcome.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The check.
    pub check: &'static Check,
    /// What it concluded.
    pub outcome: Outcome,
}

/// A whole audit.
#[derive(Debug, Clone)]
pub struct Report {
    /// The URL audited.
    pub target: String,
    /// The origin used as legitimate.
    pub origin: String,
    /// Whether the stressing checks ran.
    pub aggressive: bool,
    /// Every check, in catalog order.
    pub entries: Vec<Entry>,
}

impl Report {
    /// The findings, worst first.
    pub fn findings(&self) -> Vec<&Entry> {
        let mut f: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Finding { .. }))
            .collect();
        f.sort_by_key(|e| std::cmp::Reverse(e.check.severity));
        f
    }

    /// The worst finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings().first().map(|e| e.check.severity)
    }

    fn count(&self, status: &str) -> usize {
        self.entries
            .iter()
            .filter(|e| outcome_status(&e.outcome) == status)
            .count()
    }

    /// The JSON document (schema [`SCHEMA`]).
    pub fn json(&self) -> Value {
        let mut by_severity = serde_json::Map::new();
        for s in ["critical", "high", "medium", "low", "info"] {
            let n = self
                .findings()
                .iter()
                .filter(|e| e.check.severity.name() == s)
                .count();
            by_severity.insert(s.to_owned(), json!(n));
        }
        let checks: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut v = json!({
                    "id": e.check.id,
                    "title": e.check.title,
                    "category": e.check.category,
                    "severity": e.check.severity,
                    "aggressive": e.check.aggressive,
                });
                let outcome = serde_json::to_value(&e.outcome).unwrap_or(Value::Null);
                if let (Some(obj), Value::Object(o)) = (v.as_object_mut(), outcome) {
                    obj.extend(o);
                }
                if matches!(e.outcome, Outcome::Finding { .. }) {
                    v["remediation"] = json!(e.check.remediation);
                    v["wsgate_config"] = json!(e.check.config);
                }
                v
            })
            .collect();
        json!({
            "schema": SCHEMA,
            "tool": { "name": "wsgate audit", "version": env!("CARGO_PKG_VERSION") },
            "target": self.target,
            "origin": self.origin,
            "aggressive": self.aggressive,
            "summary": {
                "findings": by_severity,
                "passed": self.count("pass"),
                "skipped": self.count("skipped"),
                "errors": self.count("error"),
            },
            "checks": checks,
        })
    }

    /// A SARIF 2.1.0 log: every check a rule, every finding a result
    /// located at the endpoint's URL.
    pub fn sarif(&self) -> Value {
        let rules: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let c = e.check;
                json!({
                    "id": c.id,
                    "name": c.id.replace('-', "_"),
                    "shortDescription": { "text": c.title },
                    "fullDescription": { "text": c.why },
                    "help": {
                        "text": format!("{}\n\nwsgate:\n{}", c.remediation, c.config),
                        "markdown": format!("{}\n\nwsgate:\n\n```toml\n{}\n```", c.remediation, c.config),
                    },
                    "defaultConfiguration": { "level": c.severity.sarif_level() },
                    "properties": {
                        "tags": ["security", "websocket", c.category],
                        "security-severity": c.severity.security_severity(),
                    },
                })
            })
            .collect();
        let results: Vec<Value> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.outcome {
                Outcome::Finding { evidence } => Some(json!({
                    "ruleId": e.check.id,
                    "ruleIndex": i,
                    "level": e.check.severity.sarif_level(),
                    "message": { "text": format!("{}: {evidence}", e.check.title) },
                    "locations": [{
                        "physicalLocation": { "artifactLocation": { "uri": self.target } }
                    }],
                    "partialFingerprints": {
                        "wsgateAudit/v1": format!("{}|{}", e.check.id, self.target),
                    },
                })),
                _ => None,
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "wsgate-audit",
                        "semanticVersion": env!("CARGO_PKG_VERSION"),
                        "informationUri": "https://example.invalid/wsgate/docs/auditor.md",
                        "rules": rules,
                    }
                },
                "results": results,
            }],
        })
    }

    /// The terminal table; `colour` adds ANSI colours.
    pub fn table(&self, colour: bool) -> String {
        let paint = |code: &str, text: &str| {
            if colour {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_owned()
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "wsgate audit of {} (origin {})",
            self.target, self.origin
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<26} {:<9} {:<8} EVIDENCE",
            "CHECK", "SEVERITY", "RESULT"
        );
        for e in &self.entries {
            let (result, text, code) = match &e.outcome {
                Outcome::Finding { evidence } => (
                    "FINDING",
                    evidence.as_str(),
                    severity_colour(e.check.severity),
                ),
                Outcome::Pass { evidence } => ("pass", evidence.as_str(), "32"),
                Outcome::Skipped { reason } => ("skipped", reason.as_str(), "2"),
                Outcome::Error { reason } => ("error", reason.as_str(), "35"),
            };
            let _ = writeln!(
                out,
                "{:<26} {:<9} {} {}",
                e.check.id,
                e.check.severity.name(),
                paint(code, &format!("{result:<8}")),
                one_line(text, 100)
            );
        }
        let findings = self.findings();
        let _ = writeln!(out);
        if findings.is_empty() {
            let _ = writeln!(out, "{}", paint("32", "No findings."));
        } else {
            let _ = writeln!(out, "{} finding(s). How to fix:", findings.len());
            for e in findings {
                let _ = writeln!(out);
                let head = format!(
                    "[{}] {} ({})",
                    e.check.severity.name(),
                    e.check.title,
                    e.check.id
                );
                let _ = writeln!(out, "{}", paint(severity_colour(e.check.severity), &head));
                let _ = writeln!(out, "  {}", e.check.remediation);
                for line in e.check.config.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        out
    }
}

fn outcome_status(o: &Outcome) -> &'static str {
    match o {
        Outcome::Pass { .. } => "pass",
        Outcome::Finding { .. } => "finding",
        Outcome::Skipped { .. } => "skipped",
        Outcome::Error { .. } => "error",
    }
}

fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "1;31",
        Severity::Medium => "33",
        Severity::Low => "36",
        Severity::Info => "2",
    }
}

/// Control characters from the endpoint never reach the terminal.
fn one_line(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > max {
        let mut s: String = clean.chars().take(max - 1).collect();
        s.push('…');
        s
    } else {
        clean
    }
}
