//! Which tags a row change invalidates.
//!
//! By default a change to a row of `schema.table` invalidates
//! `table:schema.table` and `table:schema.table:<key>`, where `<key>` is the
//! row's replica identity (its primary key unless the table says
//! otherwise) as PostgreSQL writes it as text; a key of several columns is
//! their values, each with `%` and `,` percent-escaped, joined by `,` (so
//! two keys never write alike). A tag that would exceed the 255-byte limit
//! ends in `#<sha256 hex>` of the key instead.
//!
//! A table may instead give its own tags as templates, `{column}` standing
//! for the column's value (`product:{id}`, `category:{category_id}`). A
//! template whose column the change does not carry (a NULL, an unchanged
//! large value, a column a delete does not log) degrades to the table tag:
//! coarser, never a dropped invalidation.

use sha2::{Digest, Sha256};

use super::pgoutput::{Relation, Tuple};
use crate::key::hex;

/// Longest tag name the core accepts.
const MAX_TAG: usize = 255;

/// The tag of every change to `table` (`schema.table`).
pub fn table_tag(table: &str) -> String {
    format!("table:{table}")
}

fn escape(v: &str) -> String {
    v.replace('%', "%25").replace(',', "%2C")
}

/// The tags one row image (`tuple`, the old or the new one) of a change to
/// `rel` invalidates, added to `out`. `key`: the columns of the row's key
/// tag (its primary key); `templates`: the table's own tags, or `None`
/// for the default ones.
pub fn row_tags(
    rel: &Relation,
    key: &[String],
    templates: Option<&[String]>,
    tuple: &Tuple,
    out: &mut Vec<String>,
) {
    let table = format!("{}.{}", rel.schema, rel.name);
    let value = |col: &str| -> Option<String> {
        let i = rel.columns.iter().position(|c| c.name == col)?;
        tuple.get(i)?.clone()
    };
    let keys: Option<Vec<String>> = key.iter().map(|c| value(c)).collect();
    tags_of(&table, keys, templates, &value, out);
}

/// The tags of a change to a row of `table` (`schema.table`): `keys` are
/// the values of its key columns (`None` when one is missing), `value`
/// gives any column's value for templates.
pub fn tags_of(
    table: &str,
    keys: Option<Vec<String>>,
    templates: Option<&[String]>,
    value: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<String>,
) {
    match templates {
        None => {
            out.push(table_tag(table));
            let Some(keys) = keys.filter(|k| !k.is_empty()) else {
                return; // no key: the table tag covers it
            };
            let key = if keys.len() == 1 {
                keys[0].clone()
            } else {
                keys.iter().map(|k| escape(k)).collect::<Vec<_>>().join(",")
            };
            let tag = format!("table:{table}:{key}");
            if tag.len() <= MAX_TAG && !key.starts_with('#') {
                out.push(tag);
            } else {
                out.push(format!(
                    "table:{table}:#{}",
                    hex(&Sha256::digest(key.as_bytes()))
                ));
            }
        }
        Some(templates) => {
            for t in templates {
                match fill(t, value) {
                    Some(tag) if !tag.is_empty() && tag.len() <= MAX_TAG => out.push(tag),
                    _ => out.push(table_tag(table)),
                }
            }
        }
    }
}

/// `template` with each `{column}` replaced by the column's value; `None`
/// when a column has no value in this change.
fn fill(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        out.push_str(&value(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The columns a template names (checked against the table at start).
pub fn template_columns(template: &str) -> Result<Vec<&str>, String> {
    let mut cols = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("tag template {template:?}: an unclosed '{{'"));
        };
        let col = &rest[open + 1..open + close];
        if col.is_empty() {
            return Err(format!("tag template {template:?}: an empty '{{}}'"));
        }
        cols.push(col);
        rest = &rest[open + close + 1..];
    }
    Ok(cols)
}

#[cfg(test)]
mod tests {
    use super::super::pgoutput::Column;
    use super::*;

    fn rel(cols: &[(&str, bool)]) -> Relation {
        Relation {
            id: 1,
            schema: "public".into(),
            name: "items".into(),
            columns: cols
                .iter()
                .map(|(n, k)| Column {
                    name: (*n).into(),
                    key: *k,
                })
                .collect(),
        }
    }

    fn tags(rel: &Relation, t: Option<&[String]>, tuple: &[Option<&str>]) -> Vec<String> {
        let tuple: Tuple = tuple.iter().map(|v| v.map(str::to_owned)).collect();
        let key: Vec<String> = rel
            .columns
            .iter()
            .filter(|c| c.key)
            .map(|c| c.name.clone())
            .collect();
        let mut out = Vec::new();
        row_tags(rel, &key, t, &tuple, &mut out);
        out
    }

    #[test]
    fn default_tags_are_the_table_and_the_key() {
        let r = rel(&[("id", true), ("name", false)]);
        assert_eq!(
            tags(&r, None, &[Some("7"), Some("x")]),
            ["table:public.items", "table:public.items:7"]
        );
        // A delete logging only the key.
        assert_eq!(tags(&r, None, &[Some("7"), None]).len(), 2);
        // Composite keys: escaped, so ("a,b", "c") and ("a", "b,c") differ.
        let c = rel(&[("a", true), ("b", true)]);
        let one = tags(&c, None, &[Some("a,b"), Some("c")]);
        let two = tags(&c, None, &[Some("a"), Some("b,c")]);
        assert_ne!(one[1], two[1]);
        assert_eq!(one[1], "table:public.items:a%2Cb,c");
        // Too long: hashed.
        let long = "x".repeat(300);
        let t = tags(&r, None, &[Some(&long), None]);
        assert!(t[1].starts_with("table:public.items:#") && t[1].len() < 255);
        // A key that itself looks hashed cannot pose as one.
        let fake = tags(&r, None, &[Some("#abc"), None]);
        assert_ne!(fake[1], "table:public.items:#abc");
    }

    #[test]
    fn templates_fill_or_degrade_to_the_table_tag() {
        let r = rel(&[("id", true), ("category_id", false)]);
        let t = vec![
            "product:{id}".to_owned(),
            "category:{category_id}".to_owned(),
        ];
        assert_eq!(
            tags(&r, Some(&t), &[Some("7"), Some("3")]),
            ["product:7", "category:3"]
        );
        assert_eq!(
            tags(&r, Some(&t), &[Some("7"), None]),
            ["product:7", "table:public.items"]
        );
        assert_eq!(template_columns("a:{x}:{y}"), Ok(vec!["x", "y"]));
        assert!(template_columns("a:{x").is_err());
        assert!(template_columns("a:{}").is_err());
    }
}
