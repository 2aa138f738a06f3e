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
            // Masked: the audit log says which rule failed where, not what
            // the client wrote (a message may carry anything, and may be
            // as large as `max_message`).
            let detail = format!("schema: {} at {}", masked(&e), e.instance_path());
            return Err((Reason::SchemaViolation, capped(detail)));
        }
        Ok(())
    }
}

/// What a schema violation broke, without what the client wrote:
/// jsonschema's masked form, except where that still quotes the client
/// (the names of unexpected properties; a property name's own error, which
/// it prints unmasked).
fn masked(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    match e.kind() {
        Kind::AdditionalProperties { unexpected } | Kind::UnevaluatedProperties { unexpected } => {
            let n = unexpected.len();
            let noun = if n == 1 { "property" } else { "properties" };
            format!("{n} {noun} not allowed ({})", e.kind().keyword())
        }
        Kind::PropertyNames { .. } => "a property name not allowed (propertyNames)".to_owned(),
        _ => e.masked_with("the value").to_string(),
    }
}

/// Longest violation detail kept: what is left of a client's content in
/// it (the path to the value, which may name the client's own keys) is the
/// client's to choose.
const MAX_DETAIL: usize = 256;

fn capped(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(schema: serde_json::Value) -> MessageRules {
        let messages = Messages {
            schema: Some(("chat.json".into(), schema)),
            ..Messages::default()
        };
        MessageRules::new(&messages).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// What the client wrote stays out of the detail: a value too long, a
    /// value not in an enum, an unexpected property with a long name.
    #[test]
    fn a_violation_says_which_rule_failed_where_and_not_what_was_sent() {
        let rules = rules(serde_json::json!({
            "type": "object",
            "properties": {
                "text": { "type": "string", "maxLength": 3 },
                "kind": { "enum": ["a", "b"] },
            },
            "additionalProperties": false,
        }));
        let secret = "s3cret-".repeat(10_000);
        let cases = [
            (serde_json::json!({ "text": secret }), "/text"),
            (serde_json::json!({ "kind": { "k": secret } }), "/kind"),
        ];
        for (message, at) in cases {
            let payload = serde_json::to_vec(&message).unwrap_or_default();
            let Err((reason, detail)) = rules.check_text(&payload) else {
                unreachable!("{message} passed");
            };
            assert_eq!(reason, Reason::SchemaViolation);
            assert!(!detail.contains("s3cret"), "{detail}");
            assert!(detail.ends_with(&format!("at {at}")), "{detail}");
        }
        let payload = br#"{"text": "four"}"#;
        assert_eq!(
            rules.check_text(payload).map_err(|(_, d)| d),
            Err("schema: the value is longer than 3 characters at /text".to_owned())
        );
        let long_name = serde_json::json!({ secret.as_str(): 1 });
        let payload = serde_json::to_vec(&long_name).unwrap_or_default();
        let Err((_, detail)) = rules.check_text(&payload) else {
            unreachable!("an unexpected property passed");
        };
        assert_eq!(
            detail,
            "schema: 1 property not allowed (additionalProperties) at "
        );
        // A path through the client's own keys is capped.
        let rules_of_maps = self::rules(serde_json::json!({
            "type": "object",
            "additionalProperties": { "type": "integer" },
        }));
        let payload = serde_json::to_vec(&long_name_holding("x")).unwrap_or_default();
        let Err((_, detail)) = rules_of_maps.check_text(&payload) else {
            unreachable!("a string where integers go passed");
        };
        assert!(
            detail.starts_with("schema: the value is not of type"),
            "{detail}"
        );
        assert!(
            detail.len() <= MAX_DETAIL + '…'.len_utf8(),
            "{}",
            detail.len()
        );
    }

    fn long_name_holding(value: &str) -> serde_json::Value {
        serde_json::json!({ "s3cret-".repeat(10_000): value })
    }

    /// A property name that breaks `propertyNames`: jsonschema prints that
    /// error unmasked, name and all.
    #[test]
    fn a_property_name_that_breaks_property_names_is_not_quoted() {
        let rules = rules(serde_json::json!({
            "type": "object",
            "propertyNames": { "pattern": "^[a-z]+$" },
        }));
        for name in ["s3cret-1", "S3CRET"] {
            let payload = serde_json::to_vec(&serde_json::json!({ name: 1 })).unwrap_or_default();
            assert_eq!(
                rules.check_text(&payload).map_err(|(_, d)| d),
                Err("schema: a property name not allowed (propertyNames) at ".to_owned()),
            );
        }
    }
}
