//! Files fetched by URL, for a Dockerfile's `ADD --checksum=sha256:... URL`:
//! one plain GET (redirects followed, transient failures retried), the body
//! streamed through a hasher into an uncommitted CAS file that is committed
//! only when it hashes to the pinned digest. A digest already in the CAS is
//! never fetched again, whatever URL names it (as BuildKit caches by
//! checksum).

use std::io::{self, Read};
use std::time::{Duration, Instant};

use reqwest::header::LOCATION;
use reqwest::{StatusCode, Url};

use crate::cache::{BlobRef, Cas, Digest, Sha256Writer};
use crate::registry::client::{authority, error_chain, Failure};
use crate::registry::pull::Progress;
use crate::registry::{Client, RegistryError};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Attempts in all: a server that is down fails the build within seconds.
const ATTEMPTS: u32 = 3;
/// The largest file `ADD` fetches (it is hashed and stored whole).
const MAX_URL_FILE: u64 = 8 << 30;

impl Client {
    /// The file at `url` whose sha256 is `digest`, from the CAS or fetched
    /// into it. Only `http` and `https` URLs; nothing reaches the CAS unless
    /// it matches `digest`.
    pub fn fetch_url(&self, cas: &Cas, url: &str, digest: Digest) -> Result<BlobRef, RegistryError> {
        if let Ok(metadata) = std::fs::metadata(cas.path(&digest)) {
            let blob = BlobRef { digest, size: metadata.len() };
            if cas.verify(&blob)? {
                return Ok(blob);
            }
        }
        let bad = |reason: String| RegistryError::UrlFetch { url: url.to_owned(), reason };
        let parsed = Url::parse(url).map_err(|error| bad(format!("not a valid URL: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!("the `{}` scheme is not supported (only http and https)", parsed.scheme())));
        }
        if self.options.offline {
            return Err(RegistryError::Offline { what: "File", repository: url.to_owned(), digest });
        }
        let deadline = Instant::now() + self.options.download_grace.max(Duration::from_secs(1)) * 10;
        self.retrying_n(ATTEMPTS, &mut || self.fetch_url_once(cas, &parsed, digest, deadline))
    }

    fn fetch_url_once(&self, cas: &Cas, start: &Url, digest: Digest, deadline: Instant) -> Result<BlobRef, Failure> {
        let failed = |reason: String| RegistryError::UrlFetch { url: start.to_string(), reason };
        let mut url = start.clone();
        let mut redirects = 0;
        let response = loop {
            let host = authority(&url);
            let http = self.http_for(&host)?;
            let response = http.get(url.clone()).send().map_err(|error| {
                let reason = error_chain(&error);
                if error.is_connect() {
                    Failure::retriable(failed(format!("cannot connect to `{host}`: {reason}")))
                } else {
                    Failure::retriable(failed(reason))
                }
            })?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                redirects += 1;
                let location = response.headers().get(LOCATION).and_then(|value| value.to_str().ok());
                match location.and_then(|location| url.join(location).ok()) {
                    Some(next) if redirects <= MAX_REDIRECTS && matches!(next.scheme(), "http" | "https") => {
                        url = next;
                        continue;
                    }
                    _ => return Err(Failure::fatal(failed(format!("{status} without a usable redirect")))),
                }
            }
            if status.is_success() {
                break response;
            }
            let error = failed(format!("the server answered {status}"));
            let retriable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
            return Err(if retriable { Failure::retriable(error) } else { Failure::fatal(error) });
        };
        if response.content_length().is_some_and(|length| length > MAX_URL_FILE) {
            return Err(Failure::fatal(RegistryError::TooLarge {
                what: "The file",
                repository: start.to_string(),
                limit: MAX_URL_FILE,
            }));
        }
        let mut writer = Sha256Writer::new(cas.writer().map_err(RegistryError::from)?);
        let mut body = Progress::new(response.take(MAX_URL_FILE + 1), self, deadline);
        let copied = io::copy(&mut body, &mut writer);
        self.transferred(body.unreported);
        if let Err(error) = copied {
            let reason = format!("the download broke off: {}", error_chain(&error));
            return Err(Failure::retriable(failed(reason)));
        }
        let (actual, size, cas_writer) = writer.finish();
        if size > MAX_URL_FILE {
            return Err(Failure::fatal(RegistryError::TooLarge {
                what: "The file",
                repository: start.to_string(),
                limit: MAX_URL_FILE,
            }));
        }
        if actual != digest {
            // Dropped uncommitted: nothing of it stays in the CAS. Not
            // retried: a server that serves other bytes will do so again.
            return Err(Failure::fatal(RegistryError::UrlDigestMismatch {
                url: start.to_string(),
                expected: digest,
                actual,
                size,
            }));
        }
        Ok(cas_writer.commit().map_err(RegistryError::from)?)
    }
}
