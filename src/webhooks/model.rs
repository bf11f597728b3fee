//! The rules of push delivery, free of I/O: which URLs a webhook may name
//! (the address rules it shares with every outbound call are in
//! [`crate::outbound::policy`]), the secret and the Standard Webhooks
//! signature, the body of a delivery, what an attempt's answer means and
//! when the next attempt is due.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::outbound::policy::{UrlPolicy, check_url};
use crate::validate::Violations;

/// What every secret starts with (Standard Webhooks' convention), so a
/// secret pasted in the wrong place is recognisable.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret: a full HMAC-SHA256 key.
pub const SECRET_BYTES: usize = 32;
/// How long a rotated-out secret keeps signing beside the new one, so a
/// receiver can switch without losing deliveries.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);
/// Longest webhook URL accepted.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest description accepted.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Longest wait between two attempts, however many failed.
pub const MAX_RETRY_DELAY: Duration = Duration::hours(1);
/// Share of a retry delay added at random, so receivers that failed
/// together are not retried together.
pub const JITTER: f64 = 0.1;
/// Most bytes of a receiver's answer read (and thrown away).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest error text kept per delivery.
pub const MAX_ERROR_CHARS: usize = 300;

/// A webhook URL checked against the policy: scheme, host, no credentials,
/// no non-public IP literal.
pub fn parse_url(raw: &str, policy: UrlPolicy) -> Result<url::Url> {
    let raw = raw.trim();
    let bad = |why: &str| Error::invalid("url", why);
    if raw.is_empty() {
        return Err(bad("is required"));
    }
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(bad("is longer than 2048 characters"));
    }
    let u = url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if u.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    check_url(&u, policy).map_err(|why| bad(&why))?;
    Ok(u)
}

/// A validated `SetWebhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetWebhook {
    /// The checked URL.
    pub url: String,
    /// What the tenant calls it.
    pub description: String,
}

impl SetWebhook {
    /// Checks the URL against `policy` and the description's length; every
    /// problem is named by its field.
    pub fn parse(url: &str, description: &str, policy: UrlPolicy) -> Result<Self> {
        let mut v = Violations::new();
        v.max_len("description", description, MAX_DESCRIPTION_CHARS);
        let parsed = parse_url(url, policy);
        if let Err(Error::Invalid(fields)) = &parsed {
            for f in fields {
                v.add(f.field.clone(), f.description.clone());
            }
        }
        v.finish()?;
        Ok(Self {
            url: parsed?.to_string(),
            description: description.trim().to_owned(),
        })
    }
}

/// A signing secret: what the tenant's receiver verifies with.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; SECRET_BYTES]>().to_vec())
    }

    /// Parses the `whsec_` form.
    pub fn parse(text: &str) -> Option<Self> {
        let raw = STANDARD.decode(text.strip_prefix(SECRET_PREFIX)?).ok()?;
        (!raw.is_empty()).then_some(Self(raw))
    }

    /// The `whsec_` form shown to the tenant once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body` (Standard
    /// Webhooks, symmetric signature).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: the current secret's signature, then
/// the previous secret's while it still signs (space separated, as
/// Standard Webhooks allow), so a receiver holding either verifies.
pub fn signature_header(
    current: &Secret,
    previous: Option<&Secret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = current.sign(msg_id, timestamp, body);
    if let Some(p) = previous {
        header.push(' ');
        header.push_str(&p.sign(msg_id, timestamp, body));
    }
    header
}

/// The previous secret while its overlap lasts.
pub fn still_signing(
    previous: Option<Secret>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Secret> {
    previous.filter(|_| until.is_some_and(|u| now < u))
}

/// The JSON body of a delivery: `{"type", "timestamp", "data"}`, the
/// envelope's kind, creation time (RFC 3339) and payload. A payload that is
/// not JSON (none is, today) is sent as a JSON string rather than dropped.
pub fn body(kind: &str, created_at: DateTime<Utc>, payload: &str) -> Vec<u8> {
    let data = serde_json::from_str::<serde_json::Value>(payload)
        .unwrap_or_else(|_| serde_json::Value::String(payload.to_owned()));
    serde_json::json!({
        "type": kind,
        "timestamp": created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
    .into_bytes()
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not acknowledged yet.
    Pending,
    /// A 2xx acknowledged it.
    Delivered,
    /// Given up after the maximum age.
    Failed,
}

impl DeliveryStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Why it failed; `None` when a 2xx acknowledged the delivery.
    pub error: Option<String>,
}

impl Attempt {
    /// The attempt got an answer with `status`: a 2xx acknowledges, a 3xx
    /// is a failure (redirects are not followed: they could lead anywhere,
    /// private addresses included), anything else a failure.
    pub fn answered(status: u16) -> Self {
        let error = match status {
            200..=299 => None,
            300..=399 => Some(format!("HTTP {status}: redirects are not followed")),
            _ => Some(format!("HTTP {status}")),
        };
        Self {
            status: Some(status),
            error,
        }
    }

    /// The attempt got no answer (refused address, connection, TLS,
    /// timeout); `why` is kept, cut to [`MAX_ERROR_CHARS`].
    pub fn no_answer(why: &str) -> Self {
        Self {
            status: None,
            error: Some(why.chars().take(MAX_ERROR_CHARS).collect()),
        }
    }

    /// True when the receiver acknowledged.
    pub fn acknowledged(&self) -> bool {
        self.error.is_none()
    }
}

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Wait after the first failure.
    pub initial: Duration,
    /// How long after its envelope's creation a delivery is retried.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts (1 = the first):
    /// `initial * 2^(failures-1)`, capped at [`MAX_RETRY_DELAY`], plus
    /// `jitter` (0..1) times [`JITTER`] of it.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let base = self.initial.num_milliseconds().max(1);
        let shift = failures.saturating_sub(1).min(30);
        let doubled = base.saturating_mul(1i64 << shift);
        let capped = doubled.min(MAX_RETRY_DELAY.num_milliseconds());
        let extra = (capped as f64 * JITTER * jitter.clamp(0.0, 1.0)) as i64;
        Duration::milliseconds(capped + extra)
    }

    /// After a failed attempt at `now` (the `failures`-th): the next
    /// attempt's time, or `None` when it would fall after `expires_at`
    /// and the delivery is given up.
    pub fn next_attempt(
        &self,
        now: DateTime<Utc>,
        failures: u32,
        expires_at: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let at = now + self.delay(failures, jitter);
        (at <= expires_at).then_some(at)
    }

    /// When a delivery of an envelope created at `created_at` is given up.
    pub fn expires_at(&self, created_at: DateTime<Utc>) -> DateTime<Utc> {
        created_at + self.max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> String {
        match e {
            Error::Invalid(v) => v[0].field.clone(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn urls_must_be_https_public_and_without_credentials() {
        let strict = UrlPolicy::default();
        assert!(parse_url("https://hooks.example.com/in?x=1", strict).is_ok());
        for bad in [
            "",
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://10.0.0.1/hook",
            "https://127.0.0.1:8443/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.1.1/",
            "https://hooks.example.com/#frag",
            "not a url",
        ] {
            let e = parse_url(bad, strict).unwrap_err();
            assert_eq!(field_of(e), "url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long, strict).is_err());
        let tests = UrlPolicy {
            allow_insecure: true,
            allow_private: true,
        };
        assert!(parse_url("http://127.0.0.1:9000/hook", tests).is_ok());
        let insecure_only = UrlPolicy {
            allow_insecure: true,
            allow_private: false,
        };
        assert!(parse_url("http://hooks.example.com/", insecure_only).is_ok());
        assert!(parse_url("http://127.0.0.1:9000/", insecure_only).is_err());
        // A host name is resolved and checked at delivery, not here.
        assert!(parse_url("https://localhost/", strict).is_ok());
    }

    #[test]
    fn set_names_every_bad_field() {
        let e = SetWebhook::parse("http://x.example/", &"d".repeat(501), UrlPolicy::default()).unwrap_err();
        let Error::Invalid(v) = e else { panic!() };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["description", "url"]);
        let ok = SetWebhook::parse(" https://x.example/h ", " mine ", UrlPolicy::default()).unwrap();
        assert_eq!(ok.url, "https://x.example/h");
        assert_eq!(ok.description, "mine");
    }

    #[test]
    fn secrets_have_the_whsec_form_and_round_trip() {
        let s = Secret::generate();
        let text = s.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&text[6..]).unwrap().len(), 32);
        assert_eq!(Secret::parse(&text), Some(s.clone()));
        assert_ne!(Secret::generate(), s);
        assert_eq!(Secret::parse("whsec_"), None);
        assert_eq!(Secret::parse("nope"), None);
        assert!(!format!("{s:?}").contains(&text[6..]));
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification.
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_signature_verifies_with_the_standardwebhooks_crate() {
        let s = Secret::generate();
        let old = Secret::generate();
        let ts = Utc::now().timestamp();
        let body = body("breach.notice", Utc::now(), r#"{"breach_id":"b1"}"#);
        for (signing, verifying) in [(&s, &s), (&s, &old)] {
            let header = signature_header(signing, Some(&old), "env-1", ts, &body);
            assert_eq!(header.split(' ').count(), 2);
            let mut h = http::HeaderMap::new();
            h.insert("webhook-id", "env-1".parse().unwrap());
            h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
            h.insert("webhook-signature", header.parse().unwrap());
            standardwebhooks::Webhook::new(&verifying.expose())
                .unwrap()
                .verify(&body, &h)
                .expect("verifies");
        }
        let alone = signature_header(&s, None, "env-1", ts, &body);
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", "env-1".parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", alone.parse().unwrap());
        assert!(
            standardwebhooks::Webhook::new(&old.expose())
                .unwrap()
                .verify(&body, &h)
                .is_err(),
            "a secret that did not sign does not verify"
        );
    }

    #[test]
    fn the_previous_secret_signs_only_during_the_overlap() {
        let now = Utc::now();
        let p = Secret::generate();
        assert!(still_signing(Some(p.clone()), Some(now + Duration::seconds(1)), now).is_some());
        assert!(still_signing(Some(p.clone()), Some(now), now).is_none());
        assert!(still_signing(Some(p), None, now).is_none());
        assert!(still_signing(None, Some(now + ROTATION_OVERLAP), now).is_none());
    }

    #[test]
    fn the_body_carries_type_timestamp_and_the_payload_as_json() {
        let at = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b: serde_json::Value =
            serde_json::from_slice(&body("breach.notice", at, r#"{"breach_id":"b1"}"#)).unwrap();
        assert_eq!(
            b,
            serde_json::json!({"type": "breach.notice", "timestamp": "2026-03-02T09:00:00.000Z", "data": {"breach_id": "b1"}})
        );
        let odd: serde_json::Value = serde_json::from_slice(&body("k", at, "not json")).unwrap();
        assert_eq!(odd["data"], "not json");
    }

    #[test]
    fn answers_classify() {
        assert!(Attempt::answered(200).acknowledged());
        assert!(Attempt::answered(204).acknowledged());
        let redirect = Attempt::answered(302);
        assert!(!redirect.acknowledged());
        assert!(redirect.error.unwrap().contains("redirect"));
        assert_eq!(Attempt::answered(500).error.as_deref(), Some("HTTP 500"));
        let long = Attempt::no_answer(&"x".repeat(1000));
        assert_eq!(long.error.unwrap().len(), MAX_ERROR_CHARS);
        assert_eq!(long.status, None);
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_and_is_capped() {
        let p = RetryPolicy {
            initial: Duration::seconds(5),
            max_age: Duration::hours(72),
        };
        let secs = |n, j| p.delay(n, j).num_milliseconds() as f64 / 1000.0;
        assert_eq!(secs(1, 0.0), 5.0);
        assert_eq!(secs(2, 0.0), 10.0);
        assert_eq!(secs(3, 0.0), 20.0);
        assert_eq!(secs(1, 1.0), 5.5, "jitter adds at most a tenth");
        assert_eq!(secs(12, 0.0), 3600.0, "capped at an hour");
        assert_eq!(secs(400, 1.0), 3960.0);
        for n in 1..40 {
            assert!(p.delay(n + 1, 0.0) >= p.delay(n, 0.0));
        }
    }

    #[test]
    fn a_delivery_is_given_up_when_the_next_attempt_would_be_too_late() {
        let p = RetryPolicy {
            initial: Duration::seconds(5),
            max_age: Duration::hours(1),
        };
        let created = Utc::now();
        let expires = p.expires_at(created);
        assert_eq!(expires, created + Duration::hours(1));
        assert_eq!(
            p.next_attempt(created, 1, expires, 0.0),
            Some(created + Duration::seconds(5))
        );
        let late = created + Duration::minutes(59);
        assert_eq!(
            p.next_attempt(late, 5, expires, 0.0),
            None,
            "80 s after 59 min is too late"
        );
        assert!(p.next_attempt(late, 3, expires, 0.0).is_some(), "20 s is not");
    }
}
