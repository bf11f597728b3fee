//! Lists that refresh themselves, the pure part: what `--list-url
//! SOURCE=URL[,URL...]` means, the file name each download is imported
//! under, and the validators (ETag, Last-Modified) that make the next
//! download a conditional one. The downloading and importing loop is in
//! [`crate::screening::jobs`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lists::SOURCES;
use crate::outbound::policy::{UrlPolicy, check_url};

/// What a configured list URL itself may name: any scheme `check_url`
/// knows and any address.
const CONFIGURED: UrlPolicy = UrlPolicy {
    allow_insecure: true,
    allow_private: true,
};

/// One configured source and where its files are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUrl {
    /// One of [`SOURCES`].
    pub source: String,
    /// Its files' addresses, in the order given (a multi-file source such
    /// as the OFAC CSV set has several).
    pub urls: Vec<String>,
}

impl ListUrl {
    /// Parses `SOURCE=URL[,URL...]`. The addresses are operator
    /// configuration (API.md: `http://` and any address are allowed), so
    /// only what can never work is refused: a scheme other than `http` or
    /// `https`, credentials in the URL, a source proctor does not know, and
    /// two addresses with the same file name (they would be imported as one
    /// file). Where a server redirects a download is its choice, not the
    /// operator's, and is held to the `--list-allow-*` policy at each hop.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (source, urls) = s
            .split_once('=')
            .ok_or_else(|| format!("--list-url {s:?}: expected SOURCE=URL[,URL...]"))?;
        let source = source.trim();
        if !SOURCES.contains(&source) {
            return Err(format!(
                "--list-url: unknown source {source:?}; expected one of {}",
                SOURCES.join(", ")
            ));
        }
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(format!("--list-url {source}: no URL"));
        }
        let mut names = Vec::new();
        for u in &urls {
            let parsed = url::Url::parse(u).map_err(|e| format!("--list-url {source}: {u:?}: {e}"))?;
            check_url(&parsed, CONFIGURED).map_err(|e| format!("--list-url {source}: {u:?} {e}"))?;
            let name = file_name(u);
            if names.contains(&name) {
                return Err(format!(
                    "--list-url {source}: two addresses end in the file name {name:?}"
                ));
            }
            names.push(name);
        }
        Ok(Self {
            source: source.to_owned(),
            urls,
        })
    }
}

/// The file name a download is imported under: the address's last path
/// segment (`.../sdn.csv` -> `sdn.csv`), which is what the parsers of a
/// multi-file source tell the files apart by; `list` when it has none.
pub fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    match path.split_once('/') {
        Some((_, p)) => p.rsplit('/').find(|s| !s.is_empty()).unwrap_or("list").to_owned(),
        None => "list".to_owned(),
    }
}

/// What the server said about one file last time: sent back as
/// `If-None-Match` / `If-Modified-Since`, so an unchanged file costs a 304.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// The `ETag` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The `Last-Modified` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// Validators of a source's files, by address; stored with the source so
/// every replica's next download is conditional.
pub type Validators = BTreeMap<String, Validator>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_parse() {
        let l =
            ListUrl::parse("ofac_sdn=https://lists.example/sdn.csv, https://lists.example/alt.csv").unwrap();
        assert_eq!(l.source, "ofac_sdn");
        assert_eq!(l.urls.len(), 2);
        for bad in [
            "nowhere=https://x/a.csv",
            "ofac_sdn",
            "ofac_sdn=",
            "ofac_sdn=ftp://x/a.csv",
            "ofac_sdn=not a url",
            "ofac_sdn=https://x/a/sdn.csv,https://y/b/sdn.csv",
        ] {
            assert!(ListUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn configured_urls_may_be_plain_http_and_private() {
        for ok in [
            "un_sc=http://lists.example/consolidated.xml",
            "un_sc=https://10.0.0.7:8443/consolidated.xml",
            "un_sc=http://127.0.0.1:8080/consolidated.xml",
        ] {
            assert!(ListUrl::parse(ok).is_ok(), "{ok}");
        }
        assert!(ListUrl::parse("un_sc=https://u:p@lists.example/c.xml").is_err());
    }

    #[test]
    fn file_names_are_the_last_segment() {
        assert_eq!(file_name("http://h/a/b/sdn.csv"), "sdn.csv");
        assert_eq!(file_name("http://h/a/alt.csv?x=1"), "alt.csv");
        assert_eq!(file_name("http://h:80/dir/"), "dir");
        assert_eq!(file_name("http://h"), "list");
    }
}
