//! Envelope v1: the bytes stored in Redis for one entry.
//!
//! Every language binding reads and writes exactly this format, so a JSON or
//! msgpack entry written from Python is readable from Node and vice versa.
//! Golden vectors live in `tests/vectors/envelope_v1.json`.
//!
//! ```text
//! offset size  field
//! 0      1     magic 0xC5
//! 1      1     format version (1)
//! 2      1     flags: bit 0 = payload is zstd-compressed,
//!                     bit 1 = HMAC-SHA256 signature appended;
//!                     any other bit set = unknown format, rejected
//! 3      1     serializer id (see [`Format`])
//! 4      8     created_at      unix ms (writer's clock)
//! 12     8     fresh_until     unix ms, 0 = never goes stale
//! 20     8     stale_until     unix ms, 0 = never expires; the Redis TTL
//! 28     4     load_us         duration of the load that produced it, µs
//! 32     2     tag count N
//! 34     ...   N × { u8 len (1..=255), len bytes UTF-8 name, u64 version }
//! ..     4     payload length L (as stored, i.e. compressed length)
//! ..     L     payload
//! ..     32    HMAC-SHA256(key, every byte above), only if flag bit 1
//! ```
//!
//! All integers are big-endian. Trailing bytes are an error. A reader that
//! holds a signing key rejects unsigned or wrongly signed envelopes; a reader
//! without a key ignores the signature. The signature is checked *before*
//! decompression, and decompression is bounded by `max_value_bytes`, so a
//! forged or hostile entry costs one HMAC and nothing more.
//!
//! **Counter form.** Integers stored with [`Format::INT`] are written to
//! Redis as their bare ASCII decimal (`"42"`), not as an envelope, so that
//! `INCRBY` can update them atomically across processes. [`Codec::decode`]
//! accepts that form (`-?[0-9]{1,19}` that parses as an `i64`) and returns it
//! as an `INT` entry with no freshness metadata (the Redis TTL alone governs
//! it). Such entries never enter L1 when Redis is configured, because other
//! processes change them in place. An integer written *with tags* is stored
//! as a regular envelope instead (the tag versions need it); it reads back
//! the same but cannot be incremented.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Envelope tag name under which an entry records the namespace
/// generation. User tags cannot start with NUL.
pub const GENERATION_TAG: &str = "\0gen";

/// Envelope tag name marking an L1-only copy written while Redis could not
/// be reached. Its value is the recovery count it was written under plus
/// one: the copy is usable until Redis answers again (the circuit breaker
/// counts a recovery), then gone, so a write Redis never saw cannot outlive
/// an invalidation the instance did not hear about. Such copies never
/// reach Redis or the wire.
pub(crate) const LOCAL_TAG: &str = "\0local";

/// First byte of every envelope.
pub const MAGIC: u8 = 0xC5;
/// Current format version.
pub const VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 0b01;
const FLAG_SIGNED: u8 = 0b10;
const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_SIGNED;
const FIXED_HEADER: usize = 34;
const MAC_LEN: usize = 32;

/// How the payload is serialized. The core never interprets payloads
/// (except [`Format::INT`]); bindings pick the id and decode with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format(pub u8);

impl Format {
    /// Opaque bytes.
    pub const RAW: Format = Format(0);
    /// Python pickle.
    pub const PICKLE: Format = Format(1);
    /// UTF-8 JSON (shared between Python and Node).
    pub const JSON: Format = Format(2);
    /// MessagePack (shared between Python and Node).
    pub const MSGPACK: Format = Format(3);
    /// Node's `v8.serialize`.
    pub const V8: Format = Format(4);
    /// A signed 64-bit integer as ASCII decimal; stored bare in Redis.
    pub const INT: Format = Format(5);
    /// A UTF-8 string.
    pub const UTF8: Format = Format(6);
}

/// Metadata carried by every entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Serializer of the payload.
    pub format: Format,
    /// When the value was produced (writer's wall clock, unix ms).
    pub created_at_ms: u64,
    /// Fresh until this instant (unix ms); `0` means forever.
    pub fresh_until_ms: u64,
    /// Servable as stale until this instant (unix ms); `0` means forever.
    /// This is also the entry's Redis TTL.
    pub stale_until_ms: u64,
    /// How long the load that produced the value took, in microseconds.
    pub load_us: u32,
    /// Tag names and the tag versions the value was built against.
    pub tags: Tags,
}

/// Tag names and the tag versions a value was built against. One pointer
/// wide and empty without an allocation: every L1 entry carries one, and
/// most have no tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[expect(
    clippy::box_collection,
    reason = "the box makes the field one pointer wide (a Vec is three)"
)]
pub struct Tags(Option<Box<Vec<(String, u64)>>>);

impl Tags {
    /// Adds a tag and its version.
    pub fn push(&mut self, tag: (String, u64)) {
        self.0.get_or_insert_with(Default::default).push(tag);
    }
}

impl std::ops::Deref for Tags {
    type Target = [(String, u64)];

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl From<Vec<(String, u64)>> for Tags {
    fn from(tags: Vec<(String, u64)>) -> Self {
        Tags((!tags.is_empty()).then(|| Box::new(tags)))
    }
}

impl From<Tags> for Vec<(String, u64)> {
    fn from(tags: Tags) -> Self {
        tags.0.map_or_else(Vec::new, |b| *b)
    }
}

impl FromIterator<(String, u64)> for Tags {
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(iter: I) -> Self {
        Vec::from_iter(iter).into()
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = &'a (String, u64);
    type IntoIter = std::slice::Iter<'a, (String, u64)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Default for Format {
    fn default() -> Self {
        Format::RAW
    }
}

impl Meta {
    /// Fresh at `now_ms`?
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.fresh_until_ms == 0 || now_ms < self.fresh_until_ms
    }

    /// Still servable (fresh or within grace) at `now_ms`?
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.stale_until_ms == 0 || now_ms < self.stale_until_ms
    }
}

/// A decoded, trusted entry: metadata plus the *uncompressed* payload.
/// This is the unit stored in L1, shared by `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Metadata.
    pub meta: Meta,
    /// Uncompressed payload bytes.
    pub payload: Bytes,
    /// A binding's decoded value of `payload`, kept beside the entry
    /// (see [`Cache::memoize`](crate::Cache::memoize)). Not part of the
    /// entry's value: empty in every copy, ignored by `==`.
    pub memo: crate::memo::Memo,
}

/// Why bytes could not be decoded. Every case is counted as a miss by the
/// cache, never surfaced as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not an envelope (and not the counter form).
    #[error("not a stratacache envelope")]
    NotAnEnvelope,
    /// An envelope of a version this build does not understand.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// Unknown flag bits.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// Shorter than its own header says.
    #[error("truncated envelope")]
    Truncated,
    /// Bytes after the end of the envelope.
    #[error("trailing bytes after envelope")]
    Trailing,
    /// A tag name is empty or not UTF-8.
    #[error("malformed tag")]
    BadTag,
    /// This reader requires signatures and the entry has none.
    #[error("unsigned entry rejected (a signing key is configured)")]
    Unsigned,
    /// The signature does not match.
    #[error("signature mismatch")]
    BadSignature,
    /// zstd failed, or the payload would exceed `max_value_bytes`.
    #[error("payload does not decompress within the size limit")]
    BadCompression,
    /// An integer entry whose payload is not a signed 64-bit decimal.
    #[error("integer entry with a non-integer payload")]
    BadInteger,
}

/// Encoder/decoder with the cache's compression and signing settings.
#[derive(Clone)]
pub struct Codec {
    compress_threshold: usize,
    zstd_level: i32,
    max_value_bytes: usize,
    mac: Option<Arc<Hmac<Sha256>>>,
}

/// Whether `buf` is an envelope carrying a signature (checked or not).
pub(crate) fn is_signed(buf: &[u8]) -> bool {
    buf.first() == Some(&MAGIC) && buf.get(2).is_some_and(|f| f & FLAG_SIGNED != 0)
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("compress_threshold", &self.compress_threshold)
            .field("zstd_level", &self.zstd_level)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("signed", &self.mac.is_some())
            .finish()
    }
}

impl Codec {
    /// A codec. `compress_threshold` of `usize::MAX` disables compression;
    /// `signing_key` of `None` disables signing.
    pub fn new(
        compress_threshold: usize,
        zstd_level: i32,
        max_value_bytes: usize,
        signing_key: Option<&[u8]>,
    ) -> Self {
        let mac = signing_key.map(|k| {
            // HMAC accepts keys of any length, so this cannot fail.
            Arc::new(<Hmac<Sha256> as Mac>::new_from_slice(k).unwrap_or_else(|_| unreachable!()))
        });
        Codec {
            compress_threshold,
            zstd_level,
            max_value_bytes,
            mac,
        }
    }

    /// Whether this codec signs and requires signatures.
    pub fn is_signing(&self) -> bool {
        self.mac.is_some()
    }

    /// The bytes to store in Redis for `entry`.
    pub fn encode(&self, entry: &Entry) -> Bytes {
        // Tagged integers keep the envelope: the bare form has nowhere to
        // record tag versions (so they cannot be incremented either).
        let tagged = entry.meta.tags.iter().any(|(n, _)| n != GENERATION_TAG);
        if entry.meta.format == Format::INT && !tagged {
            return entry.payload.clone();
        }
        let compressed;
        let (payload, flags_z) = if entry.payload.len() >= self.compress_threshold {
            match with_compressor(self.zstd_level, |c| c.compress(&entry.payload)) {
                Ok(c) if c.len() < entry.payload.len() => {
                    compressed = c;
                    (&compressed[..], FLAG_ZSTD)
                }
                _ => (&entry.payload[..], 0),
            }
        } else {
            (&entry.payload[..], 0)
        };
        let m = &entry.meta;
        let tags_len: usize = m.tags.iter().map(|(n, _)| 1 + n.len() + 8).sum();
        let mut out =
            BytesMut::with_capacity(FIXED_HEADER + tags_len + 4 + payload.len() + MAC_LEN);
        let flags = flags_z | if self.mac.is_some() { FLAG_SIGNED } else { 0 };
        out.put_u8(MAGIC);
        out.put_u8(VERSION);
        out.put_u8(flags);
        out.put_u8(m.format.0);
        out.put_u64(m.created_at_ms);
        out.put_u64(m.fresh_until_ms);
        out.put_u64(m.stale_until_ms);
        out.put_u32(m.load_us);
        // Tag names are validated (1..=255 bytes) where tags enter the API;
        // clamp defensively so the format can never be corrupted.
        let tags: Vec<_> = m
            .tags
            .iter()
            .filter(|(n, _)| !n.is_empty() && n.len() <= 255)
            .take(u16::MAX as usize)
            .collect();
        out.put_u16(tags.len() as u16);
        for (name, version) in tags {
            out.put_u8(name.len() as u8);
            out.put_slice(name.as_bytes());
            out.put_u64(*version);
        }
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
        if let Some(mac) = &self.mac {
            let mut mac = (**mac).clone();
            mac.update(&out);
            out.put_slice(&mac.finalize().into_bytes());
        }
        out.freeze()
    }

    /// Whether this codec signs what it encodes (and checks what it reads).
    pub fn signs(&self) -> bool {
        self.mac.is_some()
    }

    /// Decode bytes read from Redis into a trusted entry.
    pub fn decode(&self, buf: &[u8]) -> Result<Entry, DecodeError> {
        if buf.first() != Some(&MAGIC) {
            return decode_counter(buf).ok_or(DecodeError::NotAnEnvelope);
        }
        if buf.len() < FIXED_HEADER {
            return Err(DecodeError::Truncated);
        }
        if buf[1] != VERSION {
            return Err(DecodeError::UnsupportedVersion(buf[1]));
        }
        let flags = buf[2];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::UnknownFlags(flags));
        }
        let mut r = Reader { buf, pos: 3 };
        let format = Format(r.u8()?);
        let created_at_ms = r.u64()?;
        let fresh_until_ms = r.u64()?;
        let stale_until_ms = r.u64()?;
        let load_us = r.u32()?;
        let ntags = r.u16()? as usize;
        let mut tags = Vec::with_capacity(ntags.min(64));
        for _ in 0..ntags {
            let len = r.u8()? as usize;
            if len == 0 {
                return Err(DecodeError::BadTag);
            }
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::BadTag)?;
            // NUL-prefixed names are reserved; only the generation and key
            // dependencies are ever written to Redis.
            if name.starts_with('\0')
                && name != GENERATION_TAG
                && !name.starts_with(crate::key::KEY_DEP_PREFIX)
            {
                return Err(DecodeError::BadTag);
            }
            tags.push((name.to_owned(), r.u64()?));
        }
        let plen = r.u32()? as usize;
        let payload = r.take(plen)?;
        let signed_end = r.pos;
        if flags & FLAG_SIGNED != 0 {
            let sig = r.take(MAC_LEN)?;
            if let Some(mac) = &self.mac {
                let mut mac = (**mac).clone();
                mac.update(&buf[..signed_end]);
                mac.verify_slice(sig)
                    .map_err(|_| DecodeError::BadSignature)?;
            }
        } else if self.mac.is_some() {
            return Err(DecodeError::Unsigned);
        }
        if r.pos != buf.len() {
            return Err(DecodeError::Trailing);
        }
        let payload = if flags & FLAG_ZSTD != 0 {
            decompress_bounded(payload, self.max_value_bytes)?.into()
        } else {
            Bytes::copy_from_slice(payload)
        };
        // Bindings parse integer payloads as numbers: never hand them junk.
        if format == Format::INT && decode_counter(&payload).is_none() {
            return Err(DecodeError::BadInteger);
        }
        Ok(Entry {
            meta: Meta {
                format,
                created_at_ms,
                fresh_until_ms,
                stale_until_ms,
                load_us,
                tags: tags.into(),
            },
            payload,
            memo: Default::default(),
        })
    }
}

// zstd contexts are a few hundred KB each: creating one per call (what
// `zstd::bulk::{compress, decompress}` do) cost more than the (de)compression
// itself. One context of each kind per thread is reused instead.
thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(std::io::Error::other)?;
        if !matches!(&*slot, Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => f(c),
            None => Err(std::io::Error::other("no zstd compressor")),
        }
    })
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(std::io::Error::other)?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => f(d),
            None => Err(std::io::Error::other("no zstd decompressor")),
        }
    })
}

/// Decompress a zstd frame into at most `max` bytes.
///
/// Frames we write carry their content size, so the output is allocated
/// exactly once at the right size (allocating `max` up front would cost a
/// 32 MiB page-faulting buffer per read). A frame without a size (written
/// by another encoder) is streamed, and reading stops one byte past `max`.
fn decompress_bounded(frame: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= max as u64 => {
            let out = with_decompressor(|d| d.decompress(frame, n as usize))
                .map_err(|_| DecodeError::BadCompression)?;
            if out.len() as u64 == n {
                Ok(out)
            } else {
                Err(DecodeError::BadCompression)
            }
        }
        Ok(Some(_)) | Err(_) => Err(DecodeError::BadCompression),
        Ok(None) => {
            use std::io::Read;
            let decoder =
                zstd::stream::read::Decoder::new(frame).map_err(|_| DecodeError::BadCompression)?;
            let mut out = Vec::new();
            decoder
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| DecodeError::BadCompression)?;
            if out.len() > max {
                return Err(DecodeError::BadCompression);
            }
            Ok(out)
        }
    }
}

/// The bare-integer counter form (see the module docs).
fn decode_counter(buf: &[u8]) -> Option<Entry> {
    let digits = buf.strip_prefix(b"-").unwrap_or(buf);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(buf).ok()?.parse::<i64>().ok()?;
    Some(Entry {
        meta: Meta {
            format: Format::INT,
            ..Meta::default()
        },
        payload: Bytes::copy_from_slice(buf),
        memo: Default::default(),
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Entry {
        Entry {
            meta: Meta {
                format: Format::JSON,
                created_at_ms: 1_700_000_000_000,
                fresh_until_ms: 1_700_000_060_000,
                stale_until_ms: 1_700_000_120_000,
                load_us: 1234,
                tags: vec![("user:1".into(), 7)].into(),
            },
            payload: Bytes::copy_from_slice(payload),
            memo: Default::default(),
        }
    }

    #[test]
    fn junk_integers_and_reserved_tags_are_rejected() {
        // Found by `make fuzz`: an integer envelope with a non-integer
        // payload decoded, and bindings would have parsed junk as a number.
        let c = Codec::new(usize::MAX, 3, 1 << 20, None);
        let mut junk = entry(b"12x");
        junk.meta.format = Format::INT;
        assert_eq!(c.decode(&c.encode(&junk)), Err(DecodeError::BadInteger));
        let mut ok = entry(b"-42");
        ok.meta.format = Format::INT;
        assert_eq!(c.decode(&c.encode(&ok)).expect("decodes"), ok);
        let mut reserved = entry(b"{}");
        reserved.meta.tags.push(("\0local".into(), 1));
        assert_eq!(c.decode(&c.encode(&reserved)), Err(DecodeError::BadTag));
        let mut generation = entry(b"{}");
        generation.meta.tags.push((GENERATION_TAG.into(), 9));
        assert!(c.decode(&c.encode(&generation)).is_ok());
    }

    #[test]
    fn round_trip_plain_compressed_signed() {
        let big = vec![b'a'; 10_000];
        for key in [None, Some(&b"secret"[..])] {
            let c = Codec::new(1024, 3, 1 << 20, key);
            for p in [&b"{\"x\":1}"[..], &big[..]] {
                let e = entry(p);
                let enc = c.encode(&e);
                if p.len() > 1024 {
                    assert!(enc.len() < p.len() / 10, "compressible payload compressed");
                }
                assert_eq!(c.decode(&enc).expect("decodes"), e);
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected_when_signed() {
        let c = Codec::new(usize::MAX, 3, 1 << 20, Some(b"k"));
        let enc = c.encode(&entry(b"hello world"));
        for n in 0..enc.len() {
            assert!(c.decode(&enc[..n]).is_err(), "prefix {n} rejected");
        }
        for i in 0..enc.len() {
            for bit in 0..8 {
                let mut m = enc.to_vec();
                m[i] ^= 1 << bit;
                assert!(c.decode(&m).is_err(), "flip byte {i} bit {bit} rejected");
            }
        }
        let mut extra = enc.to_vec();
        extra.push(0);
        assert_eq!(c.decode(&extra), Err(DecodeError::Trailing));
    }

    #[test]
    fn signature_policy() {
        let plain = Codec::new(usize::MAX, 3, 1 << 20, None);
        let signer = Codec::new(usize::MAX, 3, 1 << 20, Some(b"k1"));
        let other = Codec::new(usize::MAX, 3, 1 << 20, Some(b"k2"));
        let unsigned = plain.encode(&entry(b"v"));
        let signed = signer.encode(&entry(b"v"));
        assert_eq!(signer.decode(&unsigned), Err(DecodeError::Unsigned));
        assert_eq!(other.decode(&signed), Err(DecodeError::BadSignature));
        assert!(
            plain.decode(&signed).is_ok(),
            "keyless reader ignores signature"
        );
    }

    #[test]
    fn decompression_is_bounded() {
        let writer = Codec::new(0, 3, 1 << 30, None);
        let enc = writer.encode(&entry(&vec![0u8; 100_000]));
        let reader = Codec::new(0, 3, 50_000, None);
        assert_eq!(reader.decode(&enc), Err(DecodeError::BadCompression));
    }

    #[test]
    fn frames_without_content_size_are_streamed_within_the_bound() {
        use std::io::Write;
        let data = vec![b'z'; 50_000];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.include_contentsize(false).expect("flag");
        enc.write_all(&data).expect("write");
        let frame = enc.finish().expect("finish");
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&frame),
            Ok(None)
        ));
        assert_eq!(decompress_bounded(&frame, 50_000).expect("fits"), data);
        assert_eq!(
            decompress_bounded(&frame, 49_999),
            Err(DecodeError::BadCompression)
        );
        assert_eq!(
            decompress_bounded(b"not zstd", 100),
            Err(DecodeError::BadCompression)
        );
    }

    #[test]
    fn counter_form() {
        let c = Codec::new(usize::MAX, 3, 1 << 20, Some(b"k"));
        for ok in [
            "0",
            "-1",
            "42",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            let e = c.decode(ok.as_bytes()).expect("counter");
            assert_eq!(e.meta.format, Format::INT);
            assert_eq!(&e.payload[..], ok.as_bytes());
            assert_eq!(c.encode(&e), Bytes::copy_from_slice(ok.as_bytes()));
        }
        for bad in ["", "-", "1.5", " 1", "9223372036854775808", "abc", "+1"] {
            assert_eq!(
                c.decode(bad.as_bytes()),
                Err(DecodeError::NotAnEnvelope),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn freshness() {
        let m = entry(b"").meta;
        assert!(m.is_fresh(1_700_000_059_999));
        assert!(!m.is_fresh(1_700_000_060_000));
        assert!(m.is_live(1_700_000_119_999));
        assert!(!m.is_live(1_700_000_120_000));
        let forever = Meta::default();
        assert!(forever.is_fresh(u64::MAX - 1) && forever.is_live(u64::MAX - 1));
    }
}
