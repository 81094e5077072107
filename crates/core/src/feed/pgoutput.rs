//! PostgreSQL's `pgoutput` logical decoding messages (protocol version 1),
//! as `pg_logical_slot_peek_binary_changes` returns them: one message per
//! row. Only what invalidation needs is kept: transaction bounds, each
//! relation's name and key columns, and the values of changed rows.
//!
//! Every field is read with bounds checks: a message that does not parse
//! is an error naming what was wrong, never a panic.

use std::fmt;

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A transaction starts; `commit_time` in µs since 2000-01-01 UTC.
    Begin { commit_time: i64 },
    /// It committed; the slot may advance to `end_lsn`.
    Commit { end_lsn: u64, commit_time: i64 },
    /// A relation's shape (sent before its first change in a session).
    Relation(Relation),
    /// A row was inserted (`new`), updated (`update`: `old` when its key
    /// changed or the table logs full rows, and `new`) or deleted (`old`).
    Change {
        relation: u32,
        update: bool,
        old: Option<Tuple>,
        new: Option<Tuple>,
    },
    /// These relations were truncated.
    Truncate { relations: Vec<u32> },
    /// Anything else (origin, type, logical message): nothing to do.
    Other,
}

/// A relation: its id, schema, name and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

/// A column: its name and whether it belongs to the replica identity (the
/// primary key unless the table says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub key: bool,
}

/// A row's values, by column position: text, or `None` for a NULL or an
/// unchanged TOASTed value (not sent).
pub type Tuple = Vec<Option<String>>;

/// A message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput message: {}", self.0)
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError(format!("truncated {what}")));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(self.u64(what)? as i64)
    }

    /// A NUL-terminated string.
    fn cstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let end = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| DecodeError(format!("unterminated {what}")))?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.u16("tuple column count")?;
        let mut out = Vec::with_capacity(usize::from(n).min(1024));
        for _ in 0..n {
            match self.u8("tuple column kind")? {
                b'n' | b'u' => out.push(None),
                b't' | b'b' => {
                    let len = self.u32("tuple value length")? as usize;
                    let v = self.take(len, "tuple value")?;
                    out.push(Some(String::from_utf8_lossy(v).into_owned()));
                }
                k => return Err(DecodeError(format!("unknown tuple column kind {k:#04x}"))),
            }
        }
        Ok(out)
    }
}

/// Decode one message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { b: data };
    let kind = r.u8("message kind")?;
    let m = match kind {
        b'B' => {
            let _final_lsn = r.u64("begin lsn")?;
            let commit_time = r.i64("begin timestamp")?;
            let _xid = r.u32("begin xid")?;
            Message::Begin { commit_time }
        }
        b'C' => {
            let _flags = r.u8("commit flags")?;
            let _commit_lsn = r.u64("commit lsn")?;
            let end_lsn = r.u64("commit end lsn")?;
            let commit_time = r.i64("commit timestamp")?;
            Message::Commit {
                end_lsn,
                commit_time,
            }
        }
        b'R' => {
            let id = r.u32("relation id")?;
            let schema = r.cstr("relation schema")?;
            let name = r.cstr("relation name")?;
            let _identity = r.u8("replica identity")?;
            let n = r.u16("relation column count")?;
            let mut columns = Vec::with_capacity(usize::from(n).min(1024));
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                let name = r.cstr("column name")?;
                let _type = r.u32("column type")?;
                let _modifier = r.u32("column type modifier")?;
                columns.push(Column {
                    name,
                    key: flags & 1 == 1,
                });
            }
            Message::Relation(Relation {
                id,
                schema,
                name,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32("insert relation")?;
            match r.u8("insert tuple marker")? {
                b'N' => {}
                k => return Err(DecodeError(format!("insert: unexpected marker {k:#04x}"))),
            }
            Message::Change {
                relation,
                update: false,
                old: None,
                new: Some(r.tuple()?),
            }
        }
        b'U' => {
            let relation = r.u32("update relation")?;
            let mut old = None;
            let mut marker = r.u8("update tuple marker")?;
            if marker == b'K' || marker == b'O' {
                old = Some(r.tuple()?);
                marker = r.u8("update new tuple marker")?;
            }
            if marker != b'N' {
                return Err(DecodeError(format!(
                    "update: unexpected marker {marker:#04x}"
                )));
            }
            Message::Change {
                relation,
                update: true,
                old,
                new: Some(r.tuple()?),
            }
        }
        b'D' => {
            let relation = r.u32("delete relation")?;
            match r.u8("delete tuple marker")? {
                b'K' | b'O' => {}
                k => return Err(DecodeError(format!("delete: unexpected marker {k:#04x}"))),
            }
            Message::Change {
                relation,
                update: false,
                old: Some(r.tuple()?),
                new: None,
            }
        }
        b'T' => {
            let n = r.u32("truncate relation count")?;
            let _options = r.u8("truncate options")?;
            let mut relations = Vec::with_capacity((n as usize).min(1024));
            for _ in 0..n {
                relations.push(r.u32("truncate relation")?);
            }
            Message::Truncate { relations }
        }
        b'O' | b'Y' | b'M' => Message::Other,
        k => return Err(DecodeError(format!("unknown message kind {k:#04x}"))),
    };
    Ok(m)
}

/// An LSN as PostgreSQL writes it (`16/B374D848`).
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// An LSN from PostgreSQL's text (`16/B374D848`); `None` when it is not one.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= 0xffff_ffff && lo <= 0xffff_ffff).then_some((hi << 32) | lo)
}

/// µs since 2000-01-01 UTC (PostgreSQL's epoch) as ms since 1970.
pub fn unix_ms(pg_micros: i64) -> i64 {
    pg_micros / 1000 + 946_684_800_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(vals: &[Option<&str>]) -> Vec<u8> {
        let mut b = (vals.len() as u16).to_be_bytes().to_vec();
        for v in vals {
            match v {
                None => b.push(b'n'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn decodes_each_kind() {
        let mut rel = vec![b'R'];
        rel.extend(7u32.to_be_bytes());
        rel.extend(b"public\0items\0d");
        rel.extend(2u16.to_be_bytes());
        rel.extend([1]);
        rel.extend(b"id\0");
        rel.extend([0u8; 8]);
        rel.extend([0]);
        rel.extend(b"name\0");
        rel.extend([0u8; 8]);
        assert_eq!(
            decode(&rel),
            Ok(Message::Relation(Relation {
                id: 7,
                schema: "public".into(),
                name: "items".into(),
                columns: vec![
                    Column {
                        name: "id".into(),
                        key: true
                    },
                    Column {
                        name: "name".into(),
                        key: false
                    },
                ],
            }))
        );

        let mut upd = vec![b'U'];
        upd.extend(7u32.to_be_bytes());
        upd.push(b'K');
        upd.extend(tuple(&[Some("1"), None]));
        upd.push(b'N');
        upd.extend(tuple(&[Some("2"), Some("x")]));
        assert_eq!(
            decode(&upd),
            Ok(Message::Change {
                relation: 7,
                update: true,
                old: Some(vec![Some("1".into()), None]),
                new: Some(vec![Some("2".into()), Some("x".into())]),
            })
        );

        let mut commit = vec![b'C', 0];
        commit.extend(1u64.to_be_bytes());
        commit.extend(0x16_B374_D848u64.to_be_bytes());
        commit.extend(5_000_000i64.to_be_bytes());
        assert_eq!(
            decode(&commit),
            Ok(Message::Commit {
                end_lsn: 0x16_B374_D848,
                commit_time: 5_000_000
            })
        );
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("1"), None);
        assert_eq!(unix_ms(0), 946_684_800_000);

        let mut trunc = vec![b'T'];
        trunc.extend(2u32.to_be_bytes());
        trunc.push(0);
        trunc.extend(7u32.to_be_bytes());
        trunc.extend(9u32.to_be_bytes());
        assert_eq!(
            decode(&trunc),
            Ok(Message::Truncate {
                relations: vec![7, 9]
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            &b""[..],
            b"Z",
            b"I\0\0\0\x07X",
            b"R\0\0\0\x07public",
            b"U\0\0\0\x07N\0\x01t\0\0\0\x09ab",
            b"C\0",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
