//! Registry authentication: the `WWW-Authenticate` challenge, the Bearer
//! token flow (<https://distribution.github.io/distribution/spec/auth/token/>)
//! and Basic auth, with tokens cached per host and scope until they expire.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use reqwest::Url;

use crate::registry::client::Endpoint;
use crate::registry::{Credentials, RegistryError};

/// Token responses larger than this are refused (real ones are a few KiB).
pub const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Basic,
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm=...`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |key: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
}

/// `key="quoted, value",key2=token` → pairs (commas inside quotes kept).
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_owned();
        }
        params.push((key.trim().to_owned(), value));
    }
}

/// How to authorize the next request to a host for a set of scopes.
#[derive(Debug, Default)]
pub struct AuthCache {
    /// The last challenge each host sent, so a new scope fetches its token
    /// before the first request instead of after a 401.
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    expires: Instant,
}

impl AuthCache {
    pub fn challenge(&self, host: &str) -> Option<Challenge> {
        self.challenges.lock().unwrap().get(host).cloned()
    }

    pub fn remember_challenge(&self, host: &str, challenge: Challenge) {
        self.challenges.lock().unwrap().insert(host.to_owned(), challenge);
    }

    /// A cached token that has not expired yet.
    pub fn token(&self, host: &str, scopes: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        let token = tokens.get(&(host.to_owned(), scopes.to_owned()))?;
        (token.expires > Instant::now()).then(|| token.value.clone())
    }

    pub fn store_token(&self, host: &str, scopes: &str, value: String, lifetime: Duration) {
        let expires = Instant::now() + lifetime;
        self.tokens.lock().unwrap().insert((host.to_owned(), scopes.to_owned()), CachedToken { value, expires });
    }

    /// Forgets a token the registry refused (expired or revoked early).
    pub fn forget_token(&self, host: &str, scopes: &str) {
        self.tokens.lock().unwrap().remove(&(host.to_owned(), scopes.to_owned()));
    }
}

/// Where a Bearer challenge may send berth for a token. The realm comes from
/// the registry's answer, so a compromised or spoofed registry could name any
/// URL: the realm must be https unless the registry itself is plain HTTP
/// (`insecure`), and credentials go only to the registry's own host or an
/// https realm that is not a private, loopback or link-local address when
/// the registry is not one itself (a public registry has no business sending
/// credentials into the build machine's own network).
pub(crate) fn check_realm(endpoint: &Endpoint, realm: &str, with_credentials: bool) -> Result<(), RegistryError> {
    let refuse =
        |reason: String| RegistryError::UnsafeRealm { host: endpoint.host.clone(), realm: realm.to_owned(), reason };
    let url = Url::parse(realm).map_err(|error| refuse(format!("it is not a URL ({error})")))?;
    let insecure_registry = endpoint.base.scheme() == "http";
    match url.scheme() {
        "https" => {}
        "http" if insecure_registry => {}
        "http" => return Err(refuse("it is plain HTTP, and the registry is not `insecure`".to_owned())),
        other => return Err(refuse(format!("`{other}` is not https"))),
    }
    if !with_credentials {
        return Ok(());
    }
    let realm_host = url.host_str().unwrap_or_default();
    let registry_host = endpoint.base.host_str().unwrap_or_default();
    if realm_host.eq_ignore_ascii_case(registry_host) {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(refuse(format!(
            "credentials would go over plain HTTP to `{realm_host}`, which is not the registry's host"
        )));
    }
    if is_internal(realm_host) && !is_internal(registry_host) {
        return Err(refuse(format!(
            "credentials for a public registry would go to `{realm_host}`, a private, loopback or link-local address"
        )));
    }
    Ok(())
}

/// Whether berth would follow a Bearer `realm` from the registry at
/// `registry` (its base URL, `http://host:port/` for an `insecure` one),
/// sending credentials or not: [`check_realm`] for callers outside the
/// client (the `www_authenticate` fuzz target).
pub fn check_realm_of(registry: &str, realm: &str, with_credentials: bool) -> Result<(), RegistryError> {
    let base = Url::parse(registry).map_err(|error| RegistryError::BadReference {
        text: registry.to_owned(),
        reason: format!("not a registry URL: {error}"),
    })?;
    let endpoint = Endpoint { host: crate::registry::client::authority(&base), base };
    check_realm(&endpoint, realm, with_credentials)
}

/// An IP literal of the machine's own or local networks: loopback,
/// private (RFC 1918, unique-local), link-local, unspecified.
fn is_internal(host: &str) -> bool {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified(),
        Ok(IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| is_internal(&v4.to_string()))
        }
        Err(_) => false,
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Asks the token server named by a Bearer challenge for a token covering
/// `scopes`; returns the token and how long to keep it.
pub fn fetch_token(
    http: &reqwest::blocking::Client,
    host: &str,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<(String, Duration), RegistryError> {
    let failed = |reason: String| RegistryError::Token { host: host.to_owned(), reason };
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(service) = service {
        query.push(("service", service));
    }
    for scope in scopes {
        query.push(("scope", scope));
    }
    let request = match credentials {
        // The OAuth2 refresh-token grant of the token spec
        // (<https://distribution.github.io/distribution/spec/auth/oauth/>).
        Some(Credentials::IdentityToken(refresh_token)) => {
            let scope = scopes.join(" ");
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
                ("client_id", "berth"),
                ("scope", scope.as_str()),
            ];
            if let Some(service) = service {
                form.push(("service", service));
            }
            http.post(realm).form(&form)
        }
        Some(basic @ Credentials::Basic { .. }) => {
            let header = basic.basic_header().expect("Basic credentials have a Basic header");
            http.get(realm).query(&query).header(reqwest::header::AUTHORIZATION, header)
        }
        None => http.get(realm).query(&query),
    };
    let request = request.timeout(Duration::from_secs(60));
    let response = request.send().map_err(|error| failed(format!("`{realm}`: {error}")))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegistryError::Denied {
            host: host.to_owned(),
            repository: scopes.join(" "),
            reason: format!("the token server `{realm}` answered {status}"),
        });
    }
    if !status.is_success() {
        return Err(failed(format!("`{realm}` answered {status}")));
    }
    if response.content_length().is_some_and(|length| length > MAX_TOKEN_RESPONSE) {
        return Err(failed(format!("the token response is larger than {MAX_TOKEN_RESPONSE} bytes")));
    }
    let mut body = Vec::new();
    response
        .take(MAX_TOKEN_RESPONSE + 1)
        .read_to_end(&mut body)
        .map_err(|error| failed(format!("reading the token: {error}")))?;
    if body.len() as u64 > MAX_TOKEN_RESPONSE {
        return Err(failed(format!("the token response is larger than {MAX_TOKEN_RESPONSE} bytes")));
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|error| failed(format!("the token response is not JSON: {error}")))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| failed("the token response holds no `token`".to_owned()))?;
    // The spec's default lifetime is 60 s; renew a little early.
    let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(10)).saturating_sub(Duration::from_secs(5));
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_quoted_commas() {
        let header =
            r#"Bearer realm="http://127.0.0.1:5001/token",service="127.0.0.1:5000",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:5001/token".into(),
                service: Some("127.0.0.1:5000".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None, "a Bearer challenge needs a realm");
    }

    fn endpoint(base: &str) -> Endpoint {
        let base = Url::parse(base).unwrap();
        Endpoint { host: crate::registry::client::authority(&base), base }
    }

    #[test]
    fn realms_must_be_https_and_credentials_stay_home() {
        let public = endpoint("https://registry.example.com/");
        let local = endpoint("http://127.0.0.1:5000/");
        let ok = |endpoint: &Endpoint, realm: &str, creds: bool| check_realm(endpoint, realm, creds).is_ok();
        assert!(ok(&public, "https://auth.example.com/token", true));
        assert!(!ok(&public, "http://auth.example.com/token", false), "plain HTTP realm for an https registry");
        assert!(!ok(&public, "https://169.254.169.254/token", true), "link-local realm for a public registry");
        assert!(!ok(&public, "https://10.0.0.1/token", true), "private realm for a public registry");
        assert!(!ok(&public, "https://[fe80::1]/token", true), "link-local v6 realm for a public registry");
        assert!(ok(&public, "https://10.0.0.1/token", false), "no credentials: nothing to leak");
        assert!(!ok(&public, "ftp://auth.example.com/token", false));
        assert!(ok(&local, "http://127.0.0.1:5001/token", true), "the registry's own host, another port");
        assert!(!ok(&local, "http://127.0.0.2:5001/token", true), "credentials over HTTP to another host");
        assert!(ok(&local, "http://127.0.0.2:5001/token", false), "anonymous tokens from an insecure registry's realm");
        assert!(ok(&endpoint("https://10.1.2.3/"), "https://10.1.2.4/token", true), "a private registry");
    }

    #[test]
    fn tokens_expire() {
        let cache = AuthCache::default();
        cache.store_token("h", "s", "t".into(), Duration::from_secs(60));
        assert_eq!(cache.token("h", "s").as_deref(), Some("t"));
        assert_eq!(cache.token("h", "other"), None);
        cache.store_token("h", "s", "t".into(), Duration::ZERO);
        assert_eq!(cache.token("h", "s"), None);
    }
}
