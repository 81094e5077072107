//! Request signatures the purge APIs ask for: AWS Signature Version 4
//! (CloudFront), Akamai EdgeGrid v1, and the webhook's HMAC of its body.
//! Computed at each attempt (both carry the time).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::key::hex;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// `(year, month, day, hour, minute, second)` in UTC of a Unix time.
pub(crate) fn utc(unix: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days to civil date (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

/// The parts of a URL a signature covers, as reqwest sends them: the host
/// lower-cased, with its port only when not the scheme's default.
pub(crate) struct Target {
    pub(crate) scheme: String,
    pub(crate) host: String,
    /// Path and query (`/a/b?x=1`).
    pub(crate) path_query: String,
}

impl Target {
    pub(crate) fn of(url: &str) -> Target {
        match reqwest::Url::parse(url) {
            Ok(u) => Target {
                scheme: u.scheme().to_owned(),
                host: match (u.host_str(), u.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_owned(),
                    (None, _) => String::new(),
                },
                path_query: match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_owned(),
                },
            },
            Err(_) => Target {
                scheme: String::new(),
                host: String::new(),
                path_query: "/".to_owned(),
            },
        }
    }
}

/// AWS Signature Version 4: the headers to add (`x-amz-date`,
/// `x-amz-security-token` with temporary credentials, `authorization`).
/// Signs `host`, `x-amz-date`, the token and every header in `headers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sigv4(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    key_id: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    service: &str,
    unix: u64,
) -> Vec<(String, String)> {
    let (y, mo, d, h, mi, s) = utc(unix);
    let date = format!("{y:04}{mo:02}{d:02}");
    let stamp = format!("{date}T{h:02}{mi:02}{s:02}Z");
    let t = Target::of(url);
    let (path, query) = t
        .path_query
        .split_once('?')
        .unwrap_or((t.path_query.as_str(), ""));
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    signed.push(("host".into(), t.host.clone()));
    signed.push(("x-amz-date".into(), stamp.clone()));
    if let Some(tok) = token {
        signed.push(("x-amz-security-token".into(), tok.to_owned()));
    }
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut q: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    q.sort_unstable();
    let canonical = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed_names}\n{}",
        q.join("&"),
        hex(&Sha256::digest(body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, to_sign.as_bytes()));
    let mut out = vec![("x-amz-date".to_owned(), stamp)];
    if let Some(tok) = token {
        out.push(("x-amz-security-token".into(), tok.to_owned()));
    }
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
        ),
    ));
    out
}

/// Akamai EdgeGrid v1: the `Authorization` header of a request whose
/// signed headers are none, its body hashed whole when it is a `POST`
/// (bodies here stay under Fast Purge's 50,000 bytes, below EdgeGrid's
/// 131,072-byte hashing limit).
#[allow(clippy::too_many_arguments)]
pub(crate) fn edgegrid(
    method: &str,
    url: &str,
    body: &[u8],
    client_token: &str,
    client_secret: &str,
    access_token: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let prefix = format!(
        "EG1-HMAC-SHA256 client_token={client_token};access_token={access_token};timestamp={timestamp};nonce={nonce};"
    );
    let t = Target::of(url);
    let content_hash = if method == "POST" && !body.is_empty() {
        B64.encode(Sha256::digest(&body[..body.len().min(131_072)]))
    } else {
        String::new()
    };
    let data = format!(
        "{method}\t{}\t{}\t{}\t\t{content_hash}\t{prefix}",
        t.scheme.to_ascii_lowercase(),
        t.host.to_ascii_lowercase(),
        t.path_query
    );
    let signing_key = B64.encode(hmac(client_secret.as_bytes(), timestamp.as_bytes()));
    let signature = B64.encode(hmac(signing_key.as_bytes(), data.as_bytes()));
    format!("{prefix}signature={signature}")
}

/// EdgeGrid's timestamp (`yyyyMMddTHH:mm:ss+0000`) of a Unix time.
pub(crate) fn edgegrid_timestamp(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = utc(unix);
    format!("{y:04}{mo:02}{d:02}T{h:02}:{mi:02}:{s:02}+0000")
}

/// The webhook's `X-Stratacache-Signature` value: `sha256=` and the hex
/// HMAC-SHA256 of the body under the configured secret.
pub(crate) fn webhook(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac(secret.as_bytes(), body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        // 2011-09-09T23:36:00Z and a leap day.
        assert_eq!(utc(1_315_611_360), (2011, 9, 9, 23, 36, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    /// AWS's own example of a signed request (General Reference,
    /// "Signed Signature Version 4 Requests Examples").
    #[test]
    fn sigv4_matches_the_aws_example() {
        let h = sigv4(
            "POST",
            "http://iam.amazonaws.com/",
            &[(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            b"Action=ListUsers&Version=2010-05-08",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            "us-east-1",
            "iam",
            1_315_611_360,
        );
        let auth = &h
            .iter()
            .find(|(k, _)| k == "authorization")
            .expect("auth")
            .1;
        assert_eq!(
            *auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ced6826de92d2bdeed8f846f0bf508e8559e98e4b0199114b84c54174deb456c"
        );
    }

    /// Akamai's own test vector (AkamaiOPEN-edgegrid-python,
    /// `test/testdata.json`, the JSON POST case).
    #[test]
    fn edgegrid_matches_akamais_vector() {
        assert_eq!(edgegrid_timestamp(1_395_430_461), "20140321T19:34:21+0000");
        let auth = edgegrid(
            "POST",
            "https://akaa-baseurl-xxxxxxxxxxx-xxxxxxxxxxxxx.luna.akamaiapis.net/testapi/v1/t3?extended=true",
            br#"{"key": "value"}"#,
            "akab-client-token-xxx-xxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=",
            "akab-access-token-xxx-xxxxxxxxxxxxxxxx",
            "20140321T19:34:21+0000",
            "nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        );
        assert_eq!(
            auth,
            "EG1-HMAC-SHA256 client_token=akab-client-token-xxx-xxxxxxxxxxxxxxxx;\
             access_token=akab-access-token-xxx-xxxxxxxxxxxxxxxx;\
             timestamp=20140321T19:34:21+0000;nonce=nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx;\
             signature=nONuDe50qGrPius4Rg4D2jfi/2zDZWAYRUG6RudJLNM="
        );
    }
}
