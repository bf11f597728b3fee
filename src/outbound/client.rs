//! The outbound HTTP client: one connection per call, HTTP/1.1, one
//! deadline over resolving, connecting, TLS, the request, the answer and
//! any redirect, and a cap on the answer's body. Each caller builds its
//! own with its own address policy and deadline; they share the
//! [`Trust`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::outbound::connect::open;
use crate::outbound::exchange::{Answer, exchange};
use crate::outbound::policy::UrlPolicy;
use crate::outbound::trust::Trust;

/// Longest URL a redirect may lead to: a `Location` is the server's
/// choice.
const MAX_LOCATION_CHARS: usize = 2048;

/// An outbound client for one kind of call.
#[derive(Debug, Clone)]
pub struct Client {
    trust: Trust,
    policy: UrlPolicy,
    /// What the URL a call is made to (not where it redirects) may reach:
    /// `policy` unless the caller trusts the URL it was configured with.
    configured: UrlPolicy,
    timeout: Duration,
    user_agent: &'static str,
}

impl Client {
    /// A client reaching what `policy` allows, every call within `timeout`,
    /// naming itself `user_agent` so a receiver can tell callers apart.
    pub fn new(trust: Trust, policy: UrlPolicy, timeout: Duration, user_agent: &'static str) -> Self {
        Self {
            trust,
            policy,
            configured: policy,
            timeout,
            user_agent,
        }
    }

    /// The same client, reaching any scheme and address for the URL it is
    /// called with, and `policy` only for where that URL redirects: for
    /// URLs the operator configured (list downloads), where refusing what
    /// the operator chose protects nobody, while a redirect is the remote
    /// server's choice.
    pub fn trusting_the_configured_url(mut self) -> Self {
        self.configured = UrlPolicy {
            allow_insecure: true,
            allow_private: true,
        };
        self
    }

    /// What this client may reach.
    pub fn policy(&self) -> UrlPolicy {
        self.policy
    }

    /// POSTs `body` (of `content_type`) with `headers` to `url`, following
    /// no redirect: a POST's receiver is the URL configured, nobody it
    /// points to.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        content_type: &'static str,
        body: Vec<u8>,
        max_body: usize,
    ) -> Result<Answer, String> {
        let call = async {
            let u = url::Url::parse(url).map_err(|e| format!("refused URL: {e}"))?;
            let mut all = vec![("content-type", content_type.to_owned())];
            all.extend(headers.iter().map(|(n, v)| (*n, v.clone())));
            self.once(
                self.configured,
                http::Method::POST,
                &u,
                &all,
                Bytes::from(body),
                max_body,
            )
            .await
        };
        self.within(call).await
    }

    /// GETs `url` with `headers`, following at most `max_redirects`
    /// redirects (the official list hosts hand files out from elsewhere),
    /// each hop's URL checked against the policy again, so a redirect can
    /// neither downgrade to `http://` nor lead onto a private address the
    /// policy does not allow. The headers go to every hop.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        max_body: usize,
        max_redirects: usize,
    ) -> Result<Answer, String> {
        let call = async {
            let mut u = url::Url::parse(url).map_err(|e| format!("refused URL: {e}"))?;
            let mut hops = 0;
            loop {
                let policy = if hops == 0 { self.configured } else { self.policy };
                let answer = self
                    .once(policy, http::Method::GET, &u, headers, Bytes::new(), max_body)
                    .await?;
                let Some(next) = redirect(&u, &answer)? else {
                    return Ok(answer);
                };
                if hops == max_redirects {
                    return Err(format!(
                        "HTTP {}: more than {max_redirects} redirects",
                        answer.status.as_u16()
                    ));
                }
                hops += 1;
                u = next;
            }
        };
        self.within(call).await
    }

    async fn within<T>(&self, call: impl Future<Output = Result<T, String>>) -> Result<T, String> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} ms (timed out)",
                    self.timeout.as_millis()
                ))
            })
    }

    async fn once(
        &self,
        policy: UrlPolicy,
        method: http::Method,
        u: &url::Url,
        headers: &[(&'static str, String)],
        body: Bytes,
        max_body: usize,
    ) -> Result<Answer, String> {
        let io = open(u, policy, &self.trust).await?;
        let authority = &u[url::Position::BeforeHost..url::Position::AfterPort];
        let path = match &u[url::Position::BeforePath..url::Position::AfterQuery] {
            "" => "/",
            p => p,
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, self.user_agent);
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        exchange(io, req, max_body).await
    }
}

/// Where a redirect answer points, resolved against the URL that answered;
/// `None` for any other answer.
fn redirect(from: &url::Url, answer: &Answer) -> Result<Option<url::Url>, String> {
    use http::StatusCode as S;
    if !matches!(
        answer.status,
        S::MOVED_PERMANENTLY | S::FOUND | S::SEE_OTHER | S::TEMPORARY_REDIRECT | S::PERMANENT_REDIRECT
    ) {
        return Ok(None);
    }
    let status = answer.status.as_u16();
    let location = answer
        .header(http::header::LOCATION)
        .ok_or_else(|| format!("HTTP {status}: a redirect without a Location"))?;
    if location.chars().count() > MAX_LOCATION_CHARS {
        return Err(format!("HTTP {status}: the redirect's Location is too long"));
    }
    from.join(location)
        .map(Some)
        .map_err(|e| format!("HTTP {status}: the redirect's Location is not a URL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::exchange::BodyError;

    fn answer(status: u16, location: Option<&str>) -> Answer {
        let mut headers = http::HeaderMap::new();
        if let Some(l) = location {
            headers.insert(http::header::LOCATION, l.parse().unwrap());
        }
        Answer {
            status: http::StatusCode::from_u16(status).unwrap(),
            headers,
            body: Ok(Bytes::new()),
        }
    }

    #[test]
    fn redirects_resolve_against_the_url_that_answered() {
        let from = url::Url::parse("https://lists.example/api/exports/SDN.XML?x=1").unwrap();
        let to = |s, l| redirect(&from, &answer(s, l)).map(|u| u.map(|u| u.to_string()));
        assert_eq!(to(200, None), Ok(None));
        assert_eq!(to(304, Some("/elsewhere")), Ok(None), "304 is no redirect");
        assert_eq!(
            to(302, Some("https://bucket.example/sdn.xml?sig=abc")),
            Ok(Some("https://bucket.example/sdn.xml?sig=abc".into()))
        );
        assert_eq!(
            to(301, Some("../v2/SDN.XML")),
            Ok(Some("https://lists.example/api/v2/SDN.XML".into()))
        );
        assert_eq!(
            to(307, Some("http://lists.example/SDN.XML")),
            Ok(Some("http://lists.example/SDN.XML".into())),
            "the next hop's own check refuses a downgrade"
        );
        assert!(to(302, None).unwrap_err().contains("without a Location"));
        let long = format!("/{}", "a".repeat(MAX_LOCATION_CHARS));
        assert!(to(308, Some(&long)).is_err());
    }

    /// A plain-HTTP server on loopback answering every request with
    /// `response`, then closing.
    async fn answering(response: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(response).await;
                let _ = sock.shutdown().await;
            }
        });
        format!("http://{addr}/list.xml")
    }

    fn client(policy: UrlPolicy) -> Client {
        Client::new(
            Trust::load(None).unwrap(),
            policy,
            Duration::from_secs(10),
            "proctor-test",
        )
    }

    const OPEN: UrlPolicy = UrlPolicy {
        allow_insecure: true,
        allow_private: true,
    };

    #[tokio::test]
    async fn bodies_are_read_up_to_the_cap() {
        let whole = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let a = client(OPEN).get(&whole, &[], 5, 0).await.unwrap();
        assert_eq!(a.body, Ok(Bytes::from_static(b"hello")));
        let a = client(OPEN).get(&whole, &[], 4, 0).await.unwrap();
        assert_eq!(
            a.body,
            Err(BodyError::TooLarge { limit: 4 }),
            "declared too large"
        );
        let no_length = answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world").await;
        let a = client(OPEN).get(&no_length, &[], 5, 0).await.unwrap();
        assert_eq!(a.body, Err(BodyError::TooLarge { limit: 5 }), "found too large");
        let cut = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello").await;
        let a = client(OPEN).get(&cut, &[], 100, 0).await.unwrap();
        assert!(matches!(a.body, Err(BodyError::Broken(_))), "{:?}", a.body);
    }

    #[tokio::test]
    async fn redirects_are_bounded_and_a_post_follows_none() {
        let looping = answering(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n").await;
        let e = client(OPEN).get(&looping, &[], 100, 3).await.unwrap_err();
        assert!(e.contains("more than 3 redirects"), "{e}");
        let a = client(OPEN)
            .post(&looping, &[], "application/json", b"{}".to_vec(), 100)
            .await
            .unwrap();
        assert_eq!(a.status, http::StatusCode::FOUND);
    }

    #[tokio::test]
    async fn the_policy_is_applied_before_connecting() {
        let url = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let e = client(UrlPolicy::default())
            .get(&url, &[], 100, 0)
            .await
            .unwrap_err();
        assert!(e.contains("must be https://"), "{e}");
        let insecure_only = UrlPolicy {
            allow_insecure: true,
            allow_private: false,
        };
        let e = client(insecure_only).get(&url, &[], 100, 0).await.unwrap_err();
        assert!(e.contains("non-public address"), "{e}");
        let by_name = url.replace("127.0.0.1", "localhost");
        let e = client(insecure_only)
            .get(&by_name, &[], 100, 0)
            .await
            .unwrap_err();
        assert!(e.contains("non-public address"), "{e}");
    }
}
