//! The image configuration
//! (<https://github.com/opencontainers/image-spec/blob/v1.1.0/config.md>) and
//! its Docker-style merge: a base config plus the settings of an
//! `oci_image_build` target plus new layers give the new config.

use std::collections::BTreeMap;

use crate::cache::Digest;
use crate::oci::{OciError, Platform};

/// An image config. Fields berth does not know (Docker's `container_config`,
/// `docker_version`, ...) are dropped when a base config is merged: they
/// describe how the base was built, not the new image.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// "An combined date and time at which the image was created, formatted
    /// as defined by RFC 3339, section 5.6": `SOURCE_DATE_EPOCH` or the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// REQUIRED: "The CPU architecture ... SHOULD use ... GOARCH".
    #[serde(default)]
    pub architecture: String,
    /// REQUIRED: "The name of the operating system ... SHOULD use ... GOOS".
    #[serde(default)]
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "ExecConfig::is_empty", deserialize_with = "null_as_default")]
    pub config: ExecConfig,
    /// REQUIRED: `type` "MUST be set to `layers`"; `diff_ids` "in order from
    /// first to last".
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub history: Vec<History>,
}

/// The execution parameters (`config` of the image config). Maps are
/// `BTreeMap`s: sorted, as the canonical JSON would sort them anyway.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub volumes: BTreeMap<String, EmptyObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker's extension, kept by docker, podman and containerd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Docker's extension: a Dockerfile's `SHELL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Docker's extension: a Dockerfile's `ONBUILD` triggers.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub on_build: Vec<String>,
}

impl ExecConfig {
    pub fn is_empty(&self) -> bool {
        *self == ExecConfig::default()
    }
}

/// `{}`, the value of `ExposedPorts` and `Volumes` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EmptyObject {}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs { kind: "layers".to_owned(), diff_ids: Vec::new() }
    }
}

/// One history entry: "the history of each layer. The array is ordered from
/// first to last"; `empty_layer` marks entries that made no layer.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// Docker's `Healthcheck` (durations in nanoseconds, as Docker stores them).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The settings of an `oci_image_build` target that go into its config, as
/// plain values (analysis converts the attributes). `None` and empty fields
/// keep the base's value.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ConfigSettings {
    /// Replaces the base's entrypoint, and clears the base's `cmd` unless
    /// `cmd` is set too (as a Dockerfile `ENTRYPOINT` does).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs in order; a key of the base is replaced in place,
    /// new keys are appended. Values expand `$VAR` against the env so far
    /// (`expand_env`).
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `8080`, `8080/tcp`, `53/udp`; a bare port means tcp.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// Merged into the base's labels; a key of the base is replaced.
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub author: Option<String>,
    /// Goes into the history entries this image adds.
    pub comment: Option<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    /// `os.version` (BuildStream's `os.version`, Windows builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// `os.features`; empty keeps the base's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// Seconds since the epoch: the config's `created` and the history's.
    pub source_date_epoch: u64,
    /// Add Docker's default `PATH` when the base's env has none, as
    /// `docker build` does at `FROM` (set by `oci_dockerfile`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_path: bool,
    /// Replaces the base's `Shell` (a Dockerfile's `SHELL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Appended to the base's `OnBuild` (a Dockerfile's `ONBUILD`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
}

/// The `PATH` `docker build` gives a stage whose base sets none.
pub const DOCKER_DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A new layer as the config sees it: its diff_id and how it was made (the
/// history's `created_by`, e.g. `berth oci_layer //app:files`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewLayer {
    pub diff_id: Digest,
    pub created_by: String,
}

/// `value` with `$NAME` and `${NAME}` replaced by `NAME`'s value in `env`
/// (`KEY=VALUE` entries: the base's and the earlier keys'), as Docker's `ENV`
/// and rules_oci do: an unknown name expands to nothing, `${NAME:-word}`
/// gives `word` when `NAME` is unset or empty, `${NAME:+word}` gives `word`
/// when it is set and not empty, and `\$` is a literal `$`. A `$` before
/// anything else stays as written.
pub fn expand_env(value: &str, env: &[String]) -> String {
    let lookup = |name: &str| {
        env.iter().rev().find_map(|entry| entry.split_once('=').filter(|(key, _)| *key == name).map(|(_, v)| v))
    };
    let is_name_start = |c: char| c == '_' || c.is_ascii_alphabetic();
    let is_name = |c: char| c == '_' || c.is_ascii_alphanumeric();
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find(['$', '\\']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("\\$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix('\\') {
            out.push('\\');
            rest = after;
            continue;
        }
        let after = &tail[1..];
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(close) = braced.find('}') {
                let inner = &braced[..close];
                let (name, modifier) = match inner.find(":-").or_else(|| inner.find(":+")) {
                    Some(split) => (&inner[..split], Some((&inner[split..split + 2], &inner[split + 2..]))),
                    None => (inner, None),
                };
                if name.starts_with(is_name_start) && name.chars().all(is_name) {
                    let found = lookup(name).filter(|v| !v.is_empty());
                    match modifier {
                        None => out.push_str(found.unwrap_or("")),
                        Some((":-", word)) => out.push_str(found.unwrap_or(word)),
                        Some((_, word)) => out.push_str(if found.is_some() { word } else { "" }),
                    }
                    rest = &braced[close + 1..];
                    continue;
                }
            }
            out.push('$');
            rest = after;
            continue;
        }
        let name_len = match after.chars().next() {
            Some(c) if is_name_start(c) => after.find(|c: char| !is_name(c)).unwrap_or(after.len()),
            _ => 0,
        };
        if name_len == 0 {
            out.push('$');
        } else {
            out.push_str(lookup(&after[..name_len]).unwrap_or(""));
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

impl ImageConfig {
    /// The platform the config describes.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: self.variant.clone(),
        }
    }

    /// The config of `base` (or of an empty image) with `settings` applied
    /// and `layers` stacked on top, Docker-style.
    pub fn derive(
        base: Option<&ImageConfig>,
        settings: &ConfigSettings,
        layers: &[NewLayer],
    ) -> Result<ImageConfig, OciError> {
        let mut config = match base {
            Some(base) => base.clone(),
            None => ImageConfig { os: "linux".to_owned(), ..ImageConfig::default() },
        };
        let created = rfc3339(settings.source_date_epoch);
        config.created = Some(created.clone());
        if let Some(author) = &settings.author {
            config.author = Some(author.clone());
        }
        if let Some(os) = &settings.os {
            config.os = os.clone();
        }
        if let Some(architecture) = &settings.architecture {
            config.architecture = architecture.clone();
            // A variant belongs to its architecture: a new architecture drops the base's.
            if base.is_some_and(|base| base.architecture != *architecture) {
                config.variant = None;
            }
        }
        if let Some(variant) = &settings.variant {
            config.variant = Some(variant.clone()).filter(|variant| !variant.is_empty());
        }
        if let Some(os_version) = &settings.os_version {
            config.os_version = Some(os_version.clone());
        }
        if !settings.os_features.is_empty() {
            config.os_features = settings.os_features.clone();
        }
        if config.architecture.is_empty() {
            return Err(OciError::BadSetting {
                name: "architecture",
                reason: "an image without a base needs an architecture".to_owned(),
            });
        }
        if config.os.is_empty() {
            return Err(OciError::BadSetting { name: "os", reason: "the base config has no `os`".to_owned() });
        }

        let exec = &mut config.config;
        if let Some(entrypoint) = &settings.entrypoint {
            exec.entrypoint = Some(entrypoint.clone());
            exec.cmd = None;
        }
        if let Some(cmd) = &settings.cmd {
            exec.cmd = Some(cmd.clone());
        }
        if settings.default_path && !exec.env.iter().any(|entry| entry.starts_with("PATH=")) {
            exec.env.push(format!("PATH={DOCKER_DEFAULT_PATH}"));
        }
        for (key, value) in &settings.env {
            if key.is_empty() || key.contains('=') {
                return Err(OciError::BadSetting { name: "env", reason: format!("invalid variable name `{key}`") });
            }
            let entry = format!("{key}={}", expand_env(value, &exec.env));
            match exec.env.iter_mut().find(|existing| existing.split('=').next() == Some(key.as_str())) {
                Some(existing) => *existing = entry,
                None => exec.env.push(entry),
            }
        }
        if let Some(workdir) = &settings.workdir {
            exec.working_dir = Some(workdir.clone());
        }
        if let Some(user) = &settings.user {
            exec.user = Some(user.clone());
        }
        for port in &settings.exposed_ports {
            exec.exposed_ports.insert(normalize_port(port)?, EmptyObject {});
        }
        for volume in &settings.volumes {
            exec.volumes.insert(volume.clone(), EmptyObject {});
        }
        for (key, value) in &settings.labels {
            exec.labels.insert(key.clone(), value.clone());
        }
        if let Some(signal) = &settings.stop_signal {
            exec.stop_signal = Some(signal.clone());
        }
        if let Some(healthcheck) = &settings.healthcheck {
            exec.healthcheck = Some(healthcheck.clone());
        }
        if let Some(shell) = &settings.shell {
            exec.shell = Some(shell.clone());
        }
        exec.on_build.extend(settings.on_build.iter().cloned());

        config.rootfs.kind = "layers".to_owned();
        for layer in layers {
            config.rootfs.diff_ids.push(layer.diff_id);
            config.history.push(History {
                created: Some(created.clone()),
                created_by: Some(layer.created_by.clone()),
                author: settings.author.clone(),
                comment: settings.comment.clone(),
                empty_layer: false,
            });
        }
        if layers.is_empty() && (base.is_none() || settings_change_config(settings)) {
            config.history.push(History {
                created: Some(created),
                created_by: Some("berth oci_image_build".to_owned()),
                author: settings.author.clone(),
                comment: settings.comment.clone(),
                empty_layer: true,
            });
        }
        Ok(config)
    }
}

/// Whether the settings change anything but the layers (a config-only image
/// gets one `empty_layer` history entry).
fn settings_change_config(settings: &ConfigSettings) -> bool {
    let layers_only = ConfigSettings { source_date_epoch: settings.source_date_epoch, ..ConfigSettings::default() };
    *settings != layers_only
}

fn normalize_port(port: &str) -> Result<String, OciError> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    if number.parse::<u16>().is_err() || !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(OciError::BadSetting {
            name: "exposed_ports",
            reason: format!("`{port}` is not `PORT`, `PORT/tcp`, `PORT/udp` or `PORT/sctp`"),
        });
    }
    Ok(format!("{number}/{protocol}"))
}

/// Formats seconds since the epoch as RFC 3339 in UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_expand_like_docker() {
        let env = ["PATH=/usr/bin".to_owned(), "EMPTY=".to_owned(), "A=1".to_owned()];
        for (value, expanded) in [
            ("/usr/local/bin:$PATH", "/usr/local/bin:/usr/bin"),
            ("${PATH}:/x", "/usr/bin:/x"),
            ("/test:$ENV", "/test:"),
            ("${NOPE:-dflt} ${A:-dflt} ${EMPTY:-e}", "dflt 1 e"),
            ("${A:+set}${NOPE:+set}", "set"),
            ("\\$PATH $ 5$ $1 ${", "$PATH $ 5$ $1 ${"),
            ("$A$A", "11"),
            ("C:\\dir", "C:\\dir"),
        ] {
            assert_eq!(expand_env(value, &env), expanded, "{value}");
        }
    }

    #[test]
    fn env_expands_against_the_base_and_earlier_keys() {
        let base = ImageConfig {
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            config: ExecConfig { env: vec!["PATH=/usr/bin".to_owned()], ..ExecConfig::default() },
            ..ImageConfig::default()
        };
        let settings = ConfigSettings {
            env: vec![
                ("PATH".to_owned(), "/usr/local/bin:$PATH".to_owned()),
                ("ENV".to_owned(), "x".to_owned()),
                ("ENV2".to_owned(), "/test:$ENV:$UNSET".to_owned()),
            ],
            ..ConfigSettings::default()
        };
        let config = ImageConfig::derive(Some(&base), &settings, &[]).unwrap();
        assert_eq!(config.config.env, ["PATH=/usr/local/bin:/usr/bin", "ENV=x", "ENV2=/test:x:"]);
    }

    fn diff_id(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn base() -> ImageConfig {
        let json = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
            "container_config": {"Hostname": "abc"},
            "config": {"Env": ["PATH=/usr/bin", "LANG=C"], "Entrypoint": null, "Cmd": ["/bin/sh"],
                       "Labels": null, "ExposedPorts": {"80/tcp": {}}, "OnBuild": null},
            "rootfs": {"type": "layers", "diff_ids": [diff_id(1).to_string()]},
            "history": [{"created_by": "base layer"}]
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn merges_docker_style() {
        let settings = ConfigSettings {
            entrypoint: Some(vec!["/app".to_owned()]),
            env: vec![("LANG".to_owned(), "C.UTF-8".to_owned()), ("APP".to_owned(), "1".to_owned())],
            exposed_ports: vec!["8080".to_owned()],
            labels: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
            source_date_epoch: 1_700_000_000,
            ..ConfigSettings::default()
        };
        let layer = NewLayer { diff_id: diff_id(2), created_by: "berth oci_layer //app:files".to_owned() };
        let config = ImageConfig::derive(Some(&base()), &settings, &[layer]).unwrap();
        assert_eq!(config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(config.config.entrypoint, Some(vec!["/app".to_owned()]));
        assert_eq!(config.config.cmd, None, "an entrypoint without cmd clears the base's cmd");
        assert_eq!(config.config.env, ["PATH=/usr/bin", "LANG=C.UTF-8", "APP=1"]);
        assert_eq!(config.config.exposed_ports.keys().collect::<Vec<_>>(), ["80/tcp", "8080/tcp"]);
        assert_eq!(config.rootfs.diff_ids, [diff_id(1), diff_id(2)]);
        assert_eq!(config.history.len(), 2);
        assert!(!config.history[1].empty_layer);
        let json = crate::cache::canonical_json(&config);
        assert!(!String::from_utf8(json).unwrap().contains("container_config"));
    }

    #[test]
    fn config_only_change_is_an_empty_layer_in_history() {
        let settings =
            ConfigSettings { cmd: Some(vec!["true".to_owned()]), source_date_epoch: 0, ..ConfigSettings::default() };
        let config = ImageConfig::derive(Some(&base()), &settings, &[]).unwrap();
        assert_eq!(config.config.cmd, Some(vec!["true".to_owned()]));
        assert!(config.history.last().unwrap().empty_layer);
        assert_eq!(config.created.as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn refuses_bad_settings() {
        let no_arch = ImageConfig::derive(None, &ConfigSettings::default(), &[]);
        assert!(matches!(no_arch, Err(OciError::BadSetting { name: "architecture", .. })));
        let settings = ConfigSettings {
            architecture: Some("amd64".to_owned()),
            exposed_ports: vec!["http".to_owned()],
            ..ConfigSettings::default()
        };
        assert!(matches!(ImageConfig::derive(None, &settings, &[]), Err(OciError::BadSetting { .. })));
    }
}
