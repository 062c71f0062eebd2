//! The HTTP side of the registry client: endpoints (mirrors, plain HTTP),
//! authentication, redirects, retries with backoff.
//!
//! One [`Client`] serves a whole build: it is `Send + Sync`, keeps one
//! connection pool, and caches tokens per host and scope. Redirects are
//! followed by hand so that `Authorization` only ever goes to the registry's
//! own origin (blob GETs redirect to storage hosts that must not see it).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::{Body, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use crate::registry::auth::{self, AuthCache, Challenge};
use crate::registry::credentials;
use crate::registry::reference::normalize_host;
use crate::registry::tls;
use crate::registry::{Credentials, RegistryError};
use crate::report::{Event, NullReporter, Reporter};
use crate::workspace::RegistrySetting;

/// How a [`Client`] reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `registry(...)` settings from `WORKSPACE.star`: mirrors and plain HTTP.
    pub registries: Vec<RegistrySetting>,
    /// Where `config.json` lives, the only credential file then; `None`
    /// means Podman's `auth.json` files, then `$DOCKER_CONFIG` or `~/.docker`.
    pub docker_config: Option<PathBuf>,
    /// Refuse every network access (`--offline`).
    pub offline: bool,
    /// Attempts per request before giving up (408, 429, 5xx, broken
    /// connections, truncated or corrupt bodies).
    pub max_attempts: u32,
    /// The first backoff delay; it doubles after each failed attempt.
    pub backoff: Duration,
    /// Blob uploads running at once during a push.
    pub parallel_uploads: usize,
    /// The fixed part of a blob download's total deadline; the rest is the
    /// blob's size at 256 KiB/s.
    pub download_grace: Duration,
    /// Where relative certificate paths of `registry(...)` start (the
    /// workspace root); `None` means the current directory.
    pub workspace_root: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            registries: Vec::new(),
            docker_config: None,
            offline: false,
            max_attempts: 6,
            backoff: Duration::from_millis(200),
            parallel_uploads: 4,
            workspace_root: None,
            download_grace: Duration::from_secs(60),
        }
    }
}

/// A registry client shared by analysis, `fetch_blob` actions and pushes.
pub struct Client {
    pub(crate) http: reqwest::blocking::Client,
    pub(crate) options: ClientOptions,
    /// Clients of hosts with their own TLS settings (a CA, a client
    /// certificate), made on first use; never used for another host.
    tls_clients: Mutex<HashMap<String, reqwest::blocking::Client>>,
    auth: AuthCache,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    reporter: Arc<dyn Reporter>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("options", &self.options).finish_non_exhaustive()
    }
}

/// One registry origin: `http(s)://host[:port]`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub host: String,
    pub base: Url,
}

/// A request body that can be sent again on retry.
#[derive(Debug, Clone)]
pub(crate) enum CallBody {
    Bytes(Arc<Vec<u8>>),
    File { path: PathBuf, offset: u64, len: u64 },
}

/// One logical request: sent again, from scratch, on every attempt.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<CallBody>,
    /// Token scopes, e.g. `repository:team/app:pull`.
    pub scopes: &'a [String],
    pub anonymous: bool,
    /// The repository, for error messages.
    pub repository: &'a str,
}

/// A failed attempt, and whether another attempt may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Boxed: failures travel through every retry loop by value.
    pub error: Box<RegistryError>,
    pub retriable: bool,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn fatal(error: RegistryError) -> Failure {
        Failure { error: Box::new(error), retriable: false, retry_after: None }
    }

    pub fn retriable(error: RegistryError) -> Failure {
        Failure { error: Box::new(error), retriable: true, retry_after: None }
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Failure {
        Failure::fatal(error)
    }
}

const MAX_REDIRECTS: usize = 10;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upload bodies up to this size are read into memory before sending.
const IN_MEMORY_BODY: u64 = 64 << 20;
/// Per-read timeout: a stalled connection fails, a slow one does not.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, RegistryError> {
        let http = http_builder()
            .build()
            .map_err(|error| RegistryError::Unreachable { host: String::new(), reason: error_chain(&error) })?;
        Ok(Client {
            http,
            options,
            tls_clients: Mutex::new(HashMap::new()),
            auth: AuthCache::default(),
            credentials: Mutex::new(HashMap::new()),
            reporter: Arc::new(NullReporter),
        })
    }

    /// Reports blob bytes moved (`Event::BytesTransferred`) to `reporter`.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Client {
        self.reporter = reporter;
        self
    }

    pub(crate) fn transferred(&self, bytes: u64) {
        if bytes > 0 {
            self.reporter.report(&Event::BytesTransferred { bytes });
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The `registry(...)` entry of `host`; Docker Hub's names
    /// (`docker.io`, `index.docker.io`) all name one entry.
    fn setting(&self, host: &str) -> Option<&RegistrySetting> {
        let host = normalize_host(host);
        self.options.registries.iter().find(|setting| normalize_host(&setting.host) == host)
    }

    /// The HTTP client for `host` (`host[:port]`): the shared one, or, when
    /// the host has TLS settings of its own, one made for it alone.
    pub(crate) fn http_for(&self, host: &str) -> Result<reqwest::blocking::Client, RegistryError> {
        let tls = tls::settings_for(host, self.setting(host), self.options.workspace_root.as_deref())?;
        if tls.is_default() {
            return Ok(self.http.clone());
        }
        let mut clients = self.tls_clients.lock().unwrap();
        if let Some(client) = clients.get(host) {
            return Ok(client.clone());
        }
        let client = tls::configure(host, &tls, http_builder())?.build().map_err(|error| RegistryError::Tls {
            host: host.to_owned(),
            reason: error_chain(&error),
            hint: "check the `ca`, `client_cert` and `client_key` of its `registry(...)`".to_owned(),
        })?;
        clients.insert(host.to_owned(), client.clone());
        Ok(client)
    }

    /// The registry's own origin.
    pub(crate) fn endpoint(&self, host: &str) -> Result<Endpoint, RegistryError> {
        let insecure = self.setting(host).is_some_and(|setting| setting.insecure);
        endpoint_for(host, insecure)
    }

    /// Where to pull from, in order: the mirrors, then the registry itself.
    /// A mirror is plain HTTP when its own `registry(...)` entry, or its
    /// registry's, says `insecure`.
    pub(crate) fn pull_endpoints(&self, host: &str) -> Result<Vec<Endpoint>, RegistryError> {
        let mut endpoints = Vec::new();
        if let Some(setting) = self.setting(host) {
            for mirror in &setting.mirrors {
                let insecure = setting.insecure || self.setting(mirror).is_some_and(|own| own.insecure);
                endpoints.push(endpoint_for(mirror, insecure)?);
            }
        }
        endpoints.push(self.endpoint(host)?);
        Ok(endpoints)
    }

    fn credentials(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(cached) = self.credentials.lock().unwrap().get(host) {
            return Ok(cached.clone());
        }
        let found = match &self.options.docker_config {
            Some(dir) => credentials::lookup(dir, host)?,
            None => credentials::lookup_files(&credentials::default_files(), host)?,
        };
        self.credentials.lock().unwrap().insert(host.to_owned(), found.clone());
        Ok(found)
    }

    /// Runs `attempt` until it succeeds, fails for good, or runs out of
    /// attempts; waits with exponential backoff (or `Retry-After`) between.
    pub(crate) fn retrying<T>(&self, mut attempt: impl FnMut() -> Result<T, Failure>) -> Result<T, RegistryError> {
        self.retrying_n(self.options.max_attempts, &mut attempt)
    }

    pub(crate) fn retrying_n<T>(
        &self,
        attempts: u32,
        attempt: &mut dyn FnMut() -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let mut number = 0;
        loop {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(failure) if failure.retriable && number + 1 < attempts.max(1) => {
                    std::thread::sleep(self.backoff(number, failure.retry_after));
                    number += 1;
                }
                Err(failure) => return Err(*failure.error),
            }
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(delay) = retry_after {
            return delay.min(MAX_RETRY_AFTER);
        }
        let base = self.options.backoff.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
        // Full jitter keeps parallel uploads from retrying in lockstep.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        let fraction = (hasher.finish() % 1000) as u32;
        base / 2 + base / 2 * fraction / 1000
    }

    /// Sends one attempt of `call` to `endpoint`: answers a 401 challenge
    /// (fetching or refreshing a token), follows redirects (without
    /// `Authorization` off the registry's origin), and turns 408, 429, 5xx
    /// and transport errors into retriable failures. Other statuses are
    /// returned for the caller to judge.
    pub(crate) fn send(&self, endpoint: &Endpoint, call: &Call<'_>) -> Result<Response, Failure> {
        let mut url = call.url.clone();
        let mut redirects = 0;
        let mut auth_rounds = 0;
        loop {
            let same_origin = url.origin() == endpoint.base.origin();
            // Off the registry's origin (a storage redirect), that host's own
            // client: a client certificate goes only where it was configured.
            let http = if same_origin { self.http_for(&endpoint.host)? } else { self.http_for(&authority(&url))? };
            let mut request = http.request(call.method.clone(), url.clone());
            for (name, value) in &call.headers {
                request = request.header(*name, value);
            }
            let authorization = if same_origin { self.authorization(endpoint, call)? } else { None };
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            if let Some(body) = &call.body {
                let (body, len) = open_body(body)?;
                request = request.body(body).timeout(READ_TIMEOUT + Duration::from_secs(len >> 20));
            }
            let response = request.send().map_err(|error| self.transport_failure(endpoint, &error))?;
            let status = response.status();
            match status {
                StatusCode::UNAUTHORIZED if same_origin && auth_rounds < 2 => {
                    auth_rounds += 1;
                    self.answer_challenge(endpoint, call, response.headers(), authorization.as_deref())?;
                }
                StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT
                    if matches!(call.method, Method::GET | Method::HEAD) =>
                {
                    redirects += 1;
                    let location = response.headers().get(LOCATION).and_then(|value| value.to_str().ok());
                    let next = location.and_then(|location| url.join(location).ok());
                    match next {
                        Some(next) if redirects <= MAX_REDIRECTS => url = next,
                        _ => {
                            return Err(Failure::retriable(status_error(endpoint, call, &url, response)));
                        }
                    }
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if same_origin => {
                    return Err(Failure::fatal(RegistryError::Denied {
                        host: endpoint.host.clone(),
                        repository: call.repository.to_owned(),
                        reason: format!("{} {} answered {status}", call.method, url.path()),
                    }));
                }
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                    let retry_after = retry_after(response.headers());
                    let error = status_error(endpoint, call, &url, response);
                    return Err(Failure { error: Box::new(error), retriable: true, retry_after });
                }
                status if status.is_server_error() => {
                    let retry_after = retry_after(response.headers());
                    let error = status_error(endpoint, call, &url, response);
                    return Err(Failure { error: Box::new(error), retriable: true, retry_after });
                }
                _ => return Ok(response),
            }
        }
    }

    /// The `Authorization` value to send before any challenge, from what the
    /// host asked for last time.
    fn authorization(&self, endpoint: &Endpoint, call: &Call<'_>) -> Result<Option<String>, Failure> {
        let key = scope_key(call);
        match self.auth.challenge(&endpoint.host) {
            None => Ok(None),
            Some(Challenge::Basic) if call.anonymous => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials(&endpoint.host)?.and_then(|creds| creds.basic_header())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if let Some(token) = self.auth.token(&endpoint.host, &key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let token = self.new_token(endpoint, call, &realm, service.as_deref(), None)?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn answer_challenge(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
        headers: &HeaderMap,
        sent: Option<&str>,
    ) -> Result<(), Failure> {
        let denied = |reason: &str| {
            Failure::fatal(RegistryError::Denied {
                host: endpoint.host.clone(),
                repository: call.repository.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(auth::parse_challenge)
            .ok_or_else(|| denied("401 without a usable `WWW-Authenticate` challenge"))?;
        self.auth.remember_challenge(&endpoint.host, challenge.clone());
        match challenge {
            Challenge::Basic => {
                if call.anonymous {
                    return Err(denied(
                        "the registry wants credentials but the image is pulled with `anonymous = True`",
                    ));
                }
                if sent.is_some_and(|sent| sent.starts_with("Basic ")) {
                    return Err(denied("the registry refused the credentials"));
                }
                match self.credentials(&endpoint.host)? {
                    None => return Err(denied("the registry wants credentials and none are configured")),
                    Some(Credentials::IdentityToken(_)) => {
                        return Err(denied(
                            "the registry wants a password (Basic auth) but only an identity token is configured, which works with token servers only",
                        ))
                    }
                    Some(Credentials::Basic { .. }) => {}
                }
                Ok(())
            }
            Challenge::Bearer { realm, service, scope } => {
                // A refused token has expired or been revoked: get a new one.
                self.auth.forget_token(&endpoint.host, &scope_key(call));
                self.new_token(endpoint, call, &realm, service.as_deref(), scope.as_deref())?;
                Ok(())
            }
        }
    }

    fn new_token(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
        realm: &str,
        service: Option<&str>,
        extra_scope: Option<&str>,
    ) -> Result<String, Failure> {
        let mut scopes: Vec<String> = call.scopes.to_vec();
        if let Some(extra) = extra_scope {
            for scope in extra.split(' ').filter(|scope| !scope.is_empty()) {
                if !scopes.iter().any(|known| known == scope) {
                    scopes.push(scope.to_owned());
                }
            }
        }
        let credentials = if call.anonymous { None } else { self.credentials(&endpoint.host)? };
        auth::check_realm(endpoint, realm, credentials.is_some()).map_err(Failure::fatal)?;
        let realm_host = Url::parse(realm).map(|url| authority(&url)).unwrap_or_default();
        let http = self.http_for(&realm_host)?;
        let (token, lifetime) = auth::fetch_token(&http, &endpoint.host, realm, service, &scopes, credentials.as_ref())
            .map_err(|error| match error {
                RegistryError::Token { .. } => Failure::retriable(error),
                error => Failure::fatal(error),
            })?;
        self.auth.store_token(&endpoint.host, &scope_key(call), token.clone(), lifetime);
        Ok(token)
    }

    pub(crate) fn transport_failure(&self, endpoint: &Endpoint, error: &reqwest::Error) -> Failure {
        // A TLS failure happens again on every attempt: say so at once.
        if let Some(tls_error) = tls::rustls_error(error) {
            return Failure::fatal(tls::handshake_error(&endpoint.host, &tls_error));
        }
        let reason = error_chain(error);
        let error = if error.is_connect() {
            RegistryError::Unreachable { host: endpoint.host.clone(), reason }
        } else {
            RegistryError::Transfer { host: endpoint.host.clone(), reason }
        };
        Failure::retriable(error)
    }
}

/// The shared settings of every HTTP client berth makes.
fn http_builder() -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .timeout(READ_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
}

/// `host[:port]` of a URL, as registry hosts are written.
pub(crate) fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

fn endpoint_for(host: &str, insecure: bool) -> Result<Endpoint, RegistryError> {
    let scheme = if insecure { "http" } else { "https" };
    let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|error| RegistryError::BadReference {
        text: host.to_owned(),
        reason: format!("not a usable host: {error}"),
    })?;
    Ok(Endpoint { host: host.to_owned(), base })
}

impl Endpoint {
    /// `<base>/v2/<path>`.
    pub fn url(&self, path: &str) -> Url {
        self.base.join(&format!("v2/{path}")).expect("registry paths are valid URL paths")
    }
}

/// Tokens are cached per scope set and per anonymity: an anonymous pull must
/// not reuse a token obtained with credentials, nor the other way round.
fn scope_key(call: &Call<'_>) -> String {
    format!("{}|{}", if call.anonymous { "anonymous" } else { "credentials" }, call.scopes.join(" "))
}

fn open_body(body: &CallBody) -> Result<(Body, u64), Failure> {
    match body {
        CallBody::Bytes(bytes) => Ok((Body::from(bytes.as_ref().clone()), bytes.len() as u64)),
        CallBody::File { path, offset, len } => {
            let io_error = |source| Failure::fatal(RegistryError::Io { path: path.display().to_string(), source });
            let mut file = std::fs::File::open(path).map_err(io_error)?;
            file.seek(SeekFrom::Start(*offset)).map_err(io_error)?;
            if *len <= IN_MEMORY_BODY {
                // reqwest streams a reader 8 KiB at a time through a channel;
                // one buffer handed to hyper whole costs far less CPU.
                let mut bytes = Vec::with_capacity(*len as usize);
                file.take(*len).read_to_end(&mut bytes).map_err(io_error)?;
                return Ok((Body::from(bytes), *len));
            }
            Ok((Body::sized(file.take(*len), *len), *len))
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// An unexpected status, with the registry's own error message when it sent
/// one (`{"errors": [{"code": ..., "message": ...}]}`).
pub(crate) fn status_error(endpoint: &Endpoint, call: &Call<'_>, url: &Url, response: Response) -> RegistryError {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let _ = response.take(4096).read_to_end(&mut body);
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let detail = match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) if !errors.errors.is_empty() => {
            let parts: Vec<String> = errors
                .errors
                .iter()
                .map(|entry| format!("{} {}", entry.code, entry.message).trim().to_owned())
                .collect();
            format!(": {}", parts.join("; "))
        }
        _ => String::new(),
    };
    RegistryError::Status {
        host: url.host_str().map_or_else(|| endpoint.host.clone(), |host| host.to_owned()),
        method: call.method.to_string(),
        path: url.path().to_owned(),
        status,
        detail,
    }
}

/// A reqwest error with its causes ("error sending request: connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
