//! Invalidation events from message brokers, in two formats:
//!
//! - **plain**: `{"tags": ["product:7"], "keys": ["home"]}` (either list
//!   may be absent, not both empty);
//! - **Debezium** change events (JSON, with or without the `schema`
//!   envelope: `{"schema": ..., "payload": {...}}` or the payload alone):
//!   `op` (`c`, `u`, `d`, `t`; snapshot reads `r` and messages `m` change
//!   nothing), `source.schema` (or `source.db` for MySQL/MariaDB) and
//!   `source.table`, `before` / `after`. The tags are those of
//!   [`super::tags`]: `table:<schema.table>` and
//!   `table:<schema.table>:<key>`, the key read from the row's key columns
//!   (per table; `id` by default, the row's own field names), or the
//!   table's templates. A column's value is its JSON text (a string's
//!   content, a number as written).
//!
//! Anything else is malformed: an error naming what is wrong, never a
//! panic, never a guess.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::tags;

/// What one message asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidation {
    pub tags: Vec<String>,
    pub keys: Vec<String>,
}

/// How rows of a table map to tags: its key columns and templates.
#[derive(Debug, Clone, Default)]
pub struct TableRule {
    /// Key columns (default `["id"]`).
    pub key: Option<Vec<String>>,
    /// Templates instead of the default tags.
    pub templates: Option<Vec<String>>,
}

/// Decode a message body; `rules` by `schema.table`.
pub fn decode(body: &[u8], rules: &HashMap<String, TableRule>) -> Result<Invalidation, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    if o.contains_key("tags") || o.contains_key("keys") {
        return plain(&o);
    }
    let payload = match o.get("payload") {
        Some(Value::Object(p)) if o.contains_key("schema") => p,
        Some(Value::Null) if o.contains_key("schema") => {
            return Ok(Invalidation::default()); // a tombstone record
        }
        _ => &o,
    };
    debezium(payload, rules)
}

fn strings(o: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(format!("{field}: {other} is not a non-empty string")),
            })
            .collect(),
        Some(other) => Err(format!("{field} must be a list of strings, not {other}")),
    }
}

fn plain(o: &Map<String, Value>) -> Result<Invalidation, String> {
    let inv = Invalidation {
        tags: strings(o, "tags")?,
        keys: strings(o, "keys")?,
    };
    if inv.tags.is_empty() && inv.keys.is_empty() {
        return Err("no tags and no keys".into());
    }
    for t in &inv.tags {
        crate::key::validate_tag(t).map_err(|e| format!("tag {t:?}: {e}"))?;
    }
    for k in &inv.keys {
        crate::key::validate_key(k).map_err(|e| format!("key {k:?}: {e}"))?;
    }
    Ok(inv)
}

/// A column's value as text, as a tag carries it.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn debezium(
    p: &Map<String, Value>,
    rules: &HashMap<String, TableRule>,
) -> Result<Invalidation, String> {
    let op = p
        .get("op")
        .and_then(Value::as_str)
        .ok_or("neither a plain event (tags/keys) nor a Debezium change (op)")?;
    let source = p
        .get("source")
        .and_then(Value::as_object)
        .ok_or("Debezium change without source")?;
    let name = |f: &str| {
        source
            .get(f)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let table = name("table").ok_or("Debezium change without source.table")?;
    let schema = name("schema")
        .or_else(|| name("db"))
        .ok_or("Debezium change without source.schema or source.db")?;
    let table = format!("{schema}.{table}");
    let rule = rules.get(&table);
    let mut out = Invalidation::default();
    match op {
        "r" | "m" => return Ok(out),
        "t" => {
            out.tags.push(tags::table_tag(&table));
            return Ok(out);
        }
        "c" | "u" | "d" => {}
        other => return Err(format!("unknown Debezium op {other:?}")),
    }
    let image = |f: &str| -> Result<Option<&Map<String, Value>>, String> {
        match p.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(format!("{f} must be an object, not {other}")),
        }
    };
    let rows: Vec<&Map<String, Value>> = [image("before")?, image("after")?]
        .into_iter()
        .flatten()
        .collect();
    if rows.is_empty() {
        return Err(format!("Debezium op {op:?} without before or after"));
    }
    // An update without its old row: a template over another column cannot
    // name what the row was, so the table tag stands for it.
    if op == "u" && image("before")?.is_none() && rule.is_some_and(|r| r.templates.is_some()) {
        out.tags.push(tags::table_tag(&table));
    }
    let default_key = vec!["id".to_owned()];
    let key_cols = rule.and_then(|r| r.key.as_ref()).unwrap_or(&default_key);
    for row in rows {
        let value = |col: &str| row.get(col).and_then(text);
        let keys: Option<Vec<String>> = key_cols.iter().map(|c| value(c)).collect();
        tags::tags_of(
            &table,
            keys,
            rule.and_then(|r| r.templates.as_deref()),
            &value,
            &mut out.tags,
        );
    }
    out.tags.sort();
    out.tags.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_rules() -> HashMap<String, TableRule> {
        HashMap::new()
    }

    #[test]
    fn plain_events() {
        let r = decode(br#"{"tags": ["a", "b"], "keys": ["k"]}"#, &no_rules()).expect("ok");
        assert_eq!(r.tags, ["a", "b"]);
        assert_eq!(r.keys, ["k"]);
        for bad in [
            &br#"{"tags": []}"#[..],
            br#"{"tags": "a"}"#,
            br#"{"tags": [1]}"#,
            br#"{"keys": [""]}"#,
            b"[1]",
            b"not json",
            br#"{"x": 1}"#,
        ] {
            assert!(
                decode(bad, &no_rules()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn debezium_changes_with_and_without_the_schema_envelope() {
        let payload = r#"{"op": "u", "before": {"id": 7, "cat": 1}, "after": {"id": 7, "cat": 2},
            "source": {"schema": "public", "table": "products", "db": "shop"}}"#;
        let bare = decode(payload.as_bytes(), &no_rules()).expect("ok");
        assert_eq!(
            bare.tags,
            ["table:public.products", "table:public.products:7"]
        );
        let wrapped = format!(r#"{{"schema": {{"type": "struct"}}, "payload": {payload}}}"#);
        assert_eq!(decode(wrapped.as_bytes(), &no_rules()).expect("ok"), bare);

        // Per-table key columns and templates; MySQL's source.db.
        let mut rules = HashMap::new();
        rules.insert(
            "shop.items".to_owned(),
            TableRule {
                key: Some(vec!["sku".into()]),
                templates: None,
            },
        );
        rules.insert(
            "public.products".to_owned(),
            TableRule {
                key: None,
                templates: Some(vec!["category:{cat}".into()]),
            },
        );
        let d = decode(
            br#"{"op": "d", "before": {"sku": "a-1"}, "after": null, "source": {"db": "shop", "table": "items"}}"#,
            &rules,
        )
        .expect("ok");
        assert_eq!(d.tags, ["table:shop.items", "table:shop.items:a-1"]);
        assert_eq!(
            decode(payload.as_bytes(), &rules).expect("ok").tags,
            ["category:1", "category:2"]
        );

        // Snapshot reads change nothing; truncate is the table; a tombstone nothing.
        let read = br#"{"op": "r", "after": {"id": 1}, "source": {"schema": "s", "table": "t"}}"#;
        assert_eq!(
            decode(read, &no_rules()).expect("ok"),
            Invalidation::default()
        );
        let trunc = br#"{"op": "t", "source": {"schema": "s", "table": "t"}}"#;
        assert_eq!(decode(trunc, &no_rules()).expect("ok").tags, ["table:s.t"]);
        assert_eq!(
            decode(br#"{"schema": {}, "payload": null}"#, &no_rules()).expect("ok"),
            Invalidation::default()
        );
        for bad in [
            &br#"{"op": "u", "source": {"schema": "s", "table": "t"}}"#[..],
            br#"{"op": "x", "source": {"schema": "s", "table": "t"}, "after": {}}"#,
            br#"{"op": "u", "after": {"id": 1}}"#,
            br#"{"op": "u", "source": {"table": "t"}, "after": {"id": 1}}"#,
            br#"{"op": "u", "source": {"schema": "s", "table": "t"}, "after": 3}"#,
        ] {
            assert!(
                decode(bad, &no_rules()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
