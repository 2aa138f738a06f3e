//! A reader over TOML's spanned tables that records every problem and keeps going.
//!
//! serde stops at the first error; operators want all of them with their
//! places, so the loader walks the parsed tree itself. Each accessor marks its
//! key as used, reports a wrong type at the value's line, and returns `None`
//! so the caller can carry on; `finish` reports the keys nobody asked for.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::Collector;
use crate::units::{parse_duration, parse_size};

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A table being read, with the keys consumed so far.
pub(crate) struct Table<'a, 'i> {
    path: String,
    table: &'a DeTable<'i>,
    at: usize,
    used: Vec<String>,
}

/// A value together with where it sits, for errors found after reading.
pub(crate) struct At<T> {
    pub(crate) value: T,
    pub(crate) path: String,
    pub(crate) at: usize,
}

impl<'a, 'i> Table<'a, 'i> {
    pub(crate) fn root(table: &'a Spanned<DeTable<'i>>) -> Self {
        Table {
            path: String::new(),
            table: table.get_ref(),
            at: table.span().start,
            used: Vec::new(),
        }
    }

    /// The dotted path of `key` inside this table.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn at(&self) -> usize {
        self.at
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<&'a Value<'i>> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.get_ref().to_string());
        Some(v)
    }

    fn typed<T>(
        &mut self,
        key: &str,
        errs: &mut Collector<'_>,
        want: &str,
        pick: impl FnOnce(&'a DeValue<'i>) -> Option<T>,
    ) -> Option<At<T>> {
        let value = self.get(key)?;
        let path = self.path_of(key);
        let at = value.span().start;
        match pick(value.get_ref()) {
            Some(v) => Some(At { value: v, path, at }),
            None => {
                let got = value.get_ref().type_str();
                errs.push(&path, Some(at), format!("expected {want}, found {got}"));
                None
            }
        }
    }

    pub(crate) fn string(&mut self, key: &str, errs: &mut Collector<'_>) -> Option<At<&'a str>> {
        self.typed(key, errs, "a string", |v| v.as_str())
    }

    pub(crate) fn bool(&mut self, key: &str, errs: &mut Collector<'_>) -> Option<At<bool>> {
        self.typed(key, errs, "true or false", |v| v.as_bool())
    }

    /// A string, or an array of strings (as `auth = "none"` and `auth = ["jwt"]` both read).
    pub(crate) fn strings(
        &mut self,
        key: &str,
        errs: &mut Collector<'_>,
    ) -> Option<Vec<At<&'a str>>> {
        let value = self.get(key)?;
        let path = self.path_of(key);
        if let Some(s) = value.get_ref().as_str() {
            let at = value.span().start;
            return Some(vec![At { value: s, path, at }]);
        }
        let Some(items) = value.get_ref().as_array() else {
            let got = value.get_ref().type_str();
            let msg = format!("expected a string or an array of strings, found {got}");
            errs.push(&path, Some(value.span().start), msg);
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match item.get_ref().as_str() {
                Some(s) => out.push(At {
                    value: s,
                    path: item_path,
                    at: item.span().start,
                }),
                None => {
                    let got = item.get_ref().type_str();
                    errs.push(
                        &item_path,
                        Some(item.span().start),
                        format!("expected a string, found {got}"),
                    );
                }
            }
        }
        Some(out)
    }

    /// A whole number in `min..=max`.
    pub(crate) fn count(
        &mut self,
        key: &str,
        errs: &mut Collector<'_>,
        min: u64,
        max: u64,
    ) -> Option<At<u64>> {
        let n = self.typed(key, errs, "a whole number", |v| match v {
            DeValue::Integer(i) => Some(i.as_str().parse::<i128>().ok()),
            _ => None,
        })?;
        match n.value {
            Some(v) if (i128::from(min)..=i128::from(max)).contains(&v) => Some(At {
                value: u64::try_from(v).unwrap_or(max),
                path: n.path,
                at: n.at,
            }),
            _ => {
                errs.push(
                    &n.path,
                    Some(n.at),
                    format!("must be a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    pub(crate) fn size(&mut self, key: &str, errs: &mut Collector<'_>) -> Option<At<u64>> {
        let value = self.get(key)?;
        let path = self.path_of(key);
        let at = value.span().start;
        let parsed = match value.get_ref() {
            DeValue::String(s) => parse_size(s),
            DeValue::Integer(i) => i
                .as_str()
                .parse::<u64>()
                .map_err(|_| format!("`{}` is not a byte count", i.as_str())),
            other => Err(format!(
                "expected a size such as \"64KiB\", found {}",
                other.type_str()
            )),
        };
        match parsed {
            Ok(value) => Some(At { value, path, at }),
            Err(msg) => {
                errs.push(&path, Some(at), msg);
                None
            }
        }
    }

    /// A duration, or `None` inside `At` when the operator wrote `"off"`.
    pub(crate) fn duration(
        &mut self,
        key: &str,
        errs: &mut Collector<'_>,
        off_allowed: bool,
    ) -> Option<At<Option<std::time::Duration>>> {
        let text = self.typed(key, errs, "a duration such as \"30s\"", |v| v.as_str())?;
        let parsed = match text.value {
            "off" if off_allowed => Ok(None),
            t => parse_duration(t).and_then(|d| {
                if d.is_zero() {
                    Err(if off_allowed {
                        "a zero duration is ambiguous; write \"off\" to disable".to_owned()
                    } else {
                        "must be greater than zero".to_owned()
                    })
                } else {
                    Ok(Some(d))
                }
            }),
        };
        match parsed {
            Ok(value) => Some(At {
                value,
                path: text.path,
                at: text.at,
            }),
            Err(msg) => {
                errs.push(&text.path, Some(text.at), msg);
                None
            }
        }
    }

    pub(crate) fn table(&mut self, key: &str, errs: &mut Collector<'_>) -> Option<Table<'a, 'i>> {
        let t = self.typed(key, errs, "a table", |v| v.as_table())?;
        Some(Table {
            path: t.path,
            table: t.value,
            at: t.at,
            used: Vec::new(),
        })
    }

    /// An array of tables (`[[route]]`), each with its index in its path.
    pub(crate) fn tables(&mut self, key: &str, errs: &mut Collector<'_>) -> Vec<Table<'a, 'i>> {
        let Some(items) = self.typed(key, errs, "an array of tables", |v| v.as_array()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.value.iter().enumerate() {
            let path = format!("{}[{i}]", items.path);
            match item.get_ref().as_table() {
                Some(table) => out.push(Table {
                    path,
                    table,
                    at: item.span().start,
                    used: Vec::new(),
                }),
                None => {
                    let got = item.get_ref().type_str();
                    errs.push(
                        &path,
                        Some(item.span().start),
                        format!("expected a table, found {got}"),
                    );
                }
            }
        }
        out
    }

    /// Reports keys that were never read: a misspelt or misplaced key is an
    /// error, because a security setting silently ignored is worse than a
    /// gateway that does not start.
    /// The keys written in this table, with where each value starts.
    pub(crate) fn written(&self) -> Vec<(&'a str, usize)> {
        self.table
            .iter()
            .map(|(key, value)| (key.get_ref().as_ref(), span_start(value)))
            .collect()
    }

    pub(crate) fn finish(self, errs: &mut Collector<'_>) {
        for (key, value) in self.table.iter() {
            let key = key.get_ref().as_ref();
            if self.used.iter().any(|u| u == key) {
                continue;
            }
            let path = self.path_of(key);
            errs.push(&path, Some(span_start(value)), "unknown key".to_owned());
        }
    }
}

fn span_start(value: &Value<'_>) -> usize {
    let Range { start, .. } = value.span();
    start
}
