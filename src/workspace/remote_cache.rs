//! `remote_cache(url, read_only = False)` / `--remote-cache URL`: where the
//! remote cache is, as plain data (the `remote` module talks to it).

use std::fmt;

/// `remote_cache(url, read_only = False)` of `WORKSPACE.star`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCacheSetting {
    pub url: RemoteCacheUrl,
    /// Look up only; never upload.
    pub read_only: bool,
}

/// A parsed remote cache address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteCacheUrl {
    /// `grpc://host:port[/instance]` (plain HTTP/2) or `grpcs://...` (TLS,
    /// the system's roots): a REAPI v2 server.
    Grpc { tls: bool, host: String, port: u16, instance: String },
    /// `oci://host[:port]/repo`: an OCI registry used as a cache.
    Oci { registry: String, repository: String },
}

impl RemoteCacheUrl {
    /// Parses a URL; the error is a whole message naming the URL, what is
    /// wrong and what is accepted.
    pub fn parse(url: &str) -> Result<RemoteCacheUrl, String> {
        let bad = |reason: &str| {
            format!(
                "Remote cache URL `{url}` is not valid: {reason} \
                 (use grpc://host:port[/instance], grpcs://host:port[/instance] or oci://host[:port]/repo)"
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("it has no scheme"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(bad("it has no host"));
        }
        if authority.contains(['@', '?', '#', ' ']) || path.contains(['?', '#', ' ']) {
            return Err(bad("user names, queries and fragments are not supported"));
        }
        match scheme {
            "grpc" | "grpcs" => {
                let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("it has no port (host:port)"))?;
                let port = port.parse::<u16>().map_err(|_| bad("its port is not a number from 1 to 65535"))?;
                if host.is_empty() || port == 0 {
                    return Err(bad("it has no host or port"));
                }
                let instance = path.trim_end_matches('/').to_owned();
                Ok(RemoteCacheUrl::Grpc { tls: scheme == "grpcs", host: host.to_owned(), port, instance })
            }
            "oci" => {
                let repository = path.trim_end_matches('/');
                if repository.is_empty() {
                    return Err(bad("it names no repository (oci://host[:port]/repo)"));
                }
                Ok(RemoteCacheUrl::Oci { registry: authority.to_owned(), repository: repository.to_owned() })
            }
            _ => Err(bad(&format!("scheme `{scheme}` is not one of grpc, grpcs, oci"))),
        }
    }

    /// The `http(s)://host:port` a gRPC channel connects to.
    pub fn endpoint(&self) -> Option<String> {
        match self {
            RemoteCacheUrl::Grpc { tls, host, port, .. } => {
                Some(format!("{}://{host}:{port}", if *tls { "https" } else { "http" }))
            }
            RemoteCacheUrl::Oci { .. } => None,
        }
    }
}

impl fmt::Display for RemoteCacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteCacheUrl::Grpc { tls, host, port, instance } => {
                write!(f, "{}://{host}:{port}", if *tls { "grpcs" } else { "grpc" })?;
                if !instance.is_empty() {
                    write!(f, "/{instance}")?;
                }
                Ok(())
            }
            RemoteCacheUrl::Oci { registry, repository } => write!(f, "oci://{registry}/{repository}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        assert_eq!(
            RemoteCacheUrl::parse("grpc://127.0.0.1:8980").unwrap(),
            RemoteCacheUrl::Grpc { tls: false, host: "127.0.0.1".into(), port: 8980, instance: String::new() }
        );
        let url = RemoteCacheUrl::parse("grpcs://cache.example:443/main/ci").unwrap();
        assert_eq!(
            url,
            RemoteCacheUrl::Grpc { tls: true, host: "cache.example".into(), port: 443, instance: "main/ci".into() }
        );
        assert_eq!(url.to_string(), "grpcs://cache.example:443/main/ci");
        assert_eq!(url.endpoint().unwrap(), "https://cache.example:443");
        assert_eq!(
            RemoteCacheUrl::parse("oci://127.0.0.1:5000/berth/cache").unwrap(),
            RemoteCacheUrl::Oci { registry: "127.0.0.1:5000".into(), repository: "berth/cache".into() }
        );
    }

    #[test]
    fn refuses_what_it_cannot_reach() {
        for url in [
            "127.0.0.1:8980",
            "http://h:1",
            "grpc://h",
            "grpc://h:x",
            "grpc://:1",
            "grpc://h:0",
            "oci://h",
            "oci://h/",
            "grpc://u@h:1",
        ] {
            let error = RemoteCacheUrl::parse(url).unwrap_err();
            assert!(error.starts_with(&format!("Remote cache URL `{url}` is not valid: ")), "{url}: {error}");
        }
    }
}
