//! Image references: `host[:port]/repository[:tag|@digest]`.
//!
//! Docker Hub names are understood as the Docker CLI understands them: a
//! reference whose first component is not a host (no `.` or `:`, not
//! `localhost`) is on Docker Hub, `docker.io` and `index.docker.io` mean
//! Docker Hub's registry `registry-1.docker.io`, and a single-component
//! Docker Hub name lives under `library/` (`python:3.12` is
//! `registry-1.docker.io/library/python:3.12`).

use std::fmt;

use crate::cache::Digest;
use crate::registry::RegistryError;

/// Docker Hub's registry, where `docker.io/...` names and names without a
/// host live (the Docker CLI's default; required by berth's design contract).
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// The host a registry name means: Docker Hub's aliases become
/// [`DOCKER_HUB`]; every other host stays as written.
pub fn normalize_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" | DOCKER_HUB => DOCKER_HUB,
        other => other,
    }
}

/// A repository on a registry: `host[:port]/path/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ImageRef {
    /// `host[:port]`, as written, except that Docker Hub's names become
    /// [`DOCKER_HUB`].
    pub host: String,
    /// The repository path inside the registry, e.g. `library/debian`.
    pub repository: String,
}

/// A repository plus what names one manifest in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub image: ImageRef,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses `host[:port]/repository` (no tag, no digest), as in the
    /// `repository` attribute of `oci_pull_image`.
    pub fn parse(text: &str) -> Result<ImageRef, RegistryError> {
        let reference = Reference::parse(text)?;
        if reference.tag.is_some() || reference.digest.is_some() {
            return Err(bad(text, "a repository takes no tag or digest here; give the digest in `digest`"));
        }
        Ok(reference.image)
    }
}

impl Reference {
    /// Parses `host[:port]/repository[:tag][@sha256:...]`.
    pub fn parse(text: &str) -> Result<Reference, RegistryError> {
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|error| bad(text, &error.to_string()))?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // As the Docker CLI: the first component is a host only if it looks
        // like one; otherwise the whole name is on Docker Hub.
        let (host, path) = match rest.split_once('/') {
            Some((host, path)) if looks_like_host(host) => (normalize_host(host), path),
            Some((first, _)) if first.contains(|c: char| c.is_ascii_uppercase()) => {
                return Err(bad(text, &format!("`{first}` is neither a registry host nor a lowercase repository name")))
            }
            _ => (DOCKER_HUB, rest),
        };
        // A tag is after the last `:` of the last path component.
        let last_slash = path.rfind('/').map_or(0, |index| index + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&path[..colon], Some(path[colon + 1..].to_owned()))
            }
            None => (path, None),
        };
        validate_repository(text, repository)?;
        if let Some(tag) = &tag {
            validate_tag(text, tag)?;
        }
        // Docker Hub's official images are `library/<name>`.
        let repository = if host == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        Ok(Reference { image: ImageRef { host: host.to_owned(), repository }, tag, digest })
    }

    /// What to ask the registry for: the digest if there is one, else the tag.
    pub fn manifest_reference(&self) -> Option<String> {
        self.digest.map(|digest| digest.to_string()).or_else(|| self.tag.clone())
    }
}

/// Validates a tag against the distribution spec's
/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(text: &str, tag: &str) -> Result<(), RegistryError> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || tag.len() > 128 || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(bad(text, &format!("`{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)")));
    }
    Ok(())
}

fn looks_like_host(host: &str) -> bool {
    !host.is_empty()
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The distribution spec's repository grammar: lowercase path components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn validate_repository(text: &str, repository: &str) -> Result<(), RegistryError> {
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
            && !component.contains("._")
            && !component.contains("_.")
    };
    if repository.is_empty() || repository.len() > 255 || !repository.split('/').all(component_ok) {
        return Err(bad(
            text,
            &format!(
                "`{repository}` is not a valid repository name (lowercase letters and digits, separated by `/`, `.`, `_` or `-`)"
            ),
        ));
    }
    Ok(())
}

fn bad(text: &str, reason: &str) -> RegistryError {
    RegistryError::BadReference { text: text.to_owned(), reason: reason.to_owned() }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.image)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_hosts_ports_tags_and_digests() {
        let r = Reference::parse("127.0.0.1:5000/team/app:v1.2").unwrap();
        assert_eq!((r.image.host.as_str(), r.image.repository.as_str()), ("127.0.0.1:5000", "team/app"));
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.digest, None);

        let r = Reference::parse(&format!("localhost/app@{D}")).unwrap();
        assert_eq!(r.digest.unwrap().to_string(), D);
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), format!("localhost/app@{D}"));

        let r = Reference::parse(&format!("127.0.0.1:443/a/b:t@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.manifest_reference().unwrap()), (Some("t"), D.to_owned()));
        assert_eq!(ImageRef::parse("127.0.0.1:5000/a_b/c-d").unwrap().to_string(), "127.0.0.1:5000/a_b/c-d");
    }

    #[test]
    fn docker_hub_names_mean_registry_1_and_library() {
        for (text, host, repository, tag) in [
            ("python:3.12", DOCKER_HUB, "library/python", Some("3.12")),
            ("python", DOCKER_HUB, "library/python", None),
            ("docker.io/busybox", DOCKER_HUB, "library/busybox", None),
            ("docker.io/library/busybox:1.36", DOCKER_HUB, "library/busybox", Some("1.36")),
            ("index.docker.io/team/app:v1", DOCKER_HUB, "team/app", Some("v1")),
            ("registry-1.docker.io/debian", DOCKER_HUB, "library/debian", None),
            ("team/app:v1", DOCKER_HUB, "team/app", Some("v1")),
            ("localhost/app", "localhost", "app", None),
            ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None),
        ] {
            let reference = Reference::parse(text).unwrap();
            assert_eq!(
                (reference.image.host.as_str(), reference.image.repository.as_str(), reference.tag.as_deref()),
                (host, repository, tag),
                "{text}"
            );
        }
        assert_eq!(normalize_host("docker.io"), DOCKER_HUB);
        assert_eq!(normalize_host("index.docker.io"), DOCKER_HUB);
        assert_eq!(normalize_host("quay.example.com"), "quay.example.com");
    }

    #[test]
    fn refuses_bad_names() {
        for text in ["Debian", "Team/app", "127.0.0.1:5000/UPPER", "127.0.0.1:5000/a:b:c", "127.0.0.1:5000/a:-x"] {
            assert!(matches!(Reference::parse(text), Err(RegistryError::BadReference { .. })), "{text}");
        }
        assert!(Reference::parse("127.0.0.1:5000/a@sha256:abc").is_err());
        assert!(ImageRef::parse("127.0.0.1:5000/a:1").is_err(), "a repository attribute takes no tag");
    }
}
