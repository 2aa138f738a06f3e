//! Rules on every message a client sends: its type, and for text, JSON and
//! a JSON Schema. The schema is compiled once, when the config loads, with
//! `$ref` resolution off (no fetching of URLs or files a schema names) and
//! the `regex` engine for `pattern` (linear time: no ReDoS from a schema).

use wsgate_config::{Messages, OnViolation};

use crate::reason::Reason;

/// A route's compiled message rules.
pub struct MessageRules {
    text: bool,
    binary: bool,
    json: bool,
    schema: Option<jsonschema::Validator>,
    /// What happens to a message that breaks a rule.
    pub on_violation: OnViolation,
}

impl MessageRules {
    /// Compiles a route's rules; the error names what is wrong with the schema.
    pub fn new(m: &Messages) -> Result<MessageRules, String> {
        let schema = match &m.schema {
            None => None,
            Some((path, value)) => Some(
                jsonschema::options()
                    .with_pattern_options(jsonschema::PatternOptions::regex())
                    .build(value)
                    .map_err(|e| format!("{}: not a usable JSON Schema: {e}", path.display()))?,
            ),
        };
        Ok(MessageRules {
            text: m.text,
            binary: m.binary,
            json: m.json || schema.is_some(),
            schema,
            on_violation: m.on_violation,
        })
    }

    /// Whether a message of this type may pass.
    pub fn allows(&self, text: bool) -> bool {
        if text { self.text } else { self.binary }
    }

    /// Whether text messages are checked whole before any of them is forwarded.
    pub fn assembles_text(&self) -> bool {
        self.json
    }

    /// Checks a whole text message (already valid UTF-8).
    pub fn check_text(&self, payload: &[u8]) -> Result<(), (Reason, String)> {
        if !self.json {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| (Reason::InvalidJson, format!("not JSON: {e}")))?;
        if let Some(schema) = &self.schema
            && let Err(e) = schema.validate(&value)
        {
            return Err((
                Reason::SchemaViolation,
                format!("schema: {e} at {}", e.instance_path()),
            ));
        }
        Ok(())
    }
}
