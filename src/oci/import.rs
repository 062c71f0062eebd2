//! Images from the workspace (vinci's `ImportSpec`, `oci_import`): an OCI
//! image layout directory, an OCI archive (a layout in a tar) or a
//! docker-archive (`docker save`). [`ImageSource::read`] reads every file;
//! [`ImageSource::describe`] says what images it holds (analysis decides the
//! target's provider from it); [`ImageSource::import`] checks every blob's
//! digest and size against what references it and puts the blobs in the CAS.
//! A docker-archive becomes an OCI manifest over its config and layer files,
//! the layers checked against the config's diff_ids.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use crate::cache::{canonical_json, BlobRef, Cas, Digest};
use crate::oci::{decoder, media_types, Compression, Descriptor, Index, Manifest, OciError, Platform};

/// The files of an image source, by path inside it (`index.json`,
/// `blobs/sha256/<hex>`, `manifest.json`, ...).
#[derive(Debug, Clone, Default)]
pub struct ImageSource {
    files: BTreeMap<String, Vec<u8>>,
    /// What the user named, for messages.
    shown: String,
}

/// One image of a source: its manifest (as stored or made), config and layers.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    pub manifest: BlobRef,
    pub config: BlobRef,
    /// Each layer blob and its media type, base first.
    pub layers: Vec<(BlobRef, String)>,
}

/// What a source holds: one image, or an index of several.
#[derive(Debug, Clone)]
pub enum Imported {
    Image(ImportedImage),
    Index { index: BlobRef, images: Vec<ImportedImage> },
}

impl ImageSource {
    /// Reads the files of a layout directory given one by one: each its
    /// path inside the layout and where it is.
    pub fn from_files(files: &[(String, std::path::PathBuf)], shown: &str) -> Result<ImageSource, OciError> {
        let mut read = BTreeMap::new();
        for (name, path) in files {
            read.insert(name.clone(), fs::read(path).map_err(OciError::read(path))?);
        }
        Ok(ImageSource { files: read, shown: shown.to_owned() })
    }

    /// Reads a layout directory or an archive file at `path`; `shown` names
    /// it in errors.
    pub fn read(path: &Path, shown: &str) -> Result<ImageSource, OciError> {
        let mut files = BTreeMap::new();
        if path.is_dir() {
            read_dir(path, "", &mut files)?;
        } else {
            let file = fs::File::open(path).map_err(OciError::read(path))?;
            let mut archive = tar::Archive::new(file);
            for entry in archive.entries().map_err(OciError::read(path))? {
                let mut entry = entry.map_err(OciError::read(path))?;
                if entry.header().entry_type() != tar::EntryType::Regular {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_owned();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(OciError::read(path))?;
                files.insert(name, bytes);
            }
        }
        Ok(ImageSource { files, shown: shown.to_owned() })
    }

    fn bad(&self, reason: impl Into<String>) -> OciError {
        OciError::BadImport { source_path: self.shown.clone(), reason: reason.into() }
    }

    fn file(&self, name: &str) -> Result<&[u8], OciError> {
        self.files.get(name).map(Vec::as_slice).ok_or_else(|| self.bad(format!("it has no `{name}`")))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str, bytes: &[u8]) -> Result<T, OciError> {
        serde_json::from_slice(bytes).map_err(|error| self.bad(format!("`{name}` is not valid: {error}")))
    }

    /// A blob of an OCI layout, checked against its descriptor.
    fn blob(&self, descriptor: &Descriptor) -> Result<&[u8], OciError> {
        let name = format!("blobs/sha256/{}", descriptor.digest.hex());
        let bytes = self.file(&name)?;
        let actual = Digest::of(bytes);
        if actual != descriptor.digest || bytes.len() as u64 != descriptor.size {
            return Err(self.bad(format!(
                "blob `{name}` has digest `{actual}` and size {}, but is referenced as `{}` of size {}",
                bytes.len(),
                descriptor.digest,
                descriptor.size
            )));
        }
        Ok(bytes)
    }

    fn is_oci(&self) -> bool {
        self.files.contains_key("index.json")
    }

    /// The images of an OCI source: the descriptors of its manifests, and
    /// the index holding them when there are several (or one nested index).
    fn oci_images(&self) -> Result<(Vec<Descriptor>, Option<Vec<u8>>), OciError> {
        let bytes = self.file("index.json")?;
        let index: Index = self.json("index.json", bytes)?;
        match index.manifests.as_slice() {
            [] => Err(self.bad("its `index.json` lists no image")),
            [one] if media_types::is_manifest(&one.media_type) => Ok((vec![one.clone()], None)),
            [one] if media_types::is_index(&one.media_type) => {
                let nested = self.blob(one)?.to_vec();
                let inner: Index = self.json("the nested index", &nested)?;
                Ok((inner.manifests, Some(nested)))
            }
            many => Ok((many.to_vec(), Some(bytes.to_vec()))),
        }
    }

    /// The platform and layer count of each image the source holds, in
    /// order, and whether it is an index (of one image or more).
    pub fn describe(&self) -> Result<(Vec<(Platform, usize)>, bool), OciError> {
        if self.is_oci() {
            let (images, index) = self.oci_images()?;
            let described = images
                .iter()
                .map(|descriptor| {
                    let manifest: Manifest = self.json("a manifest", self.blob(descriptor)?)?;
                    let config: crate::oci::ImageConfig = self.json("a config", self.blob(&manifest.config)?)?;
                    Ok((config.platform(), manifest.layers.len()))
                })
                .collect::<Result<_, OciError>>()?;
            return Ok((described, index.is_some()));
        }
        let (config, layers) = self.docker_parts()?;
        let config: crate::oci::ImageConfig = self.json("the config", config)?;
        Ok((vec![(config.platform(), layers.len())], false))
    }

    /// The config and layer files of a docker-archive's one image.
    fn docker_parts(&self) -> Result<(&[u8], Vec<&[u8]>), OciError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = self.json("manifest.json", self.file("manifest.json")?)?;
        let [entry] = entries.as_slice() else {
            return Err(self.bad(format!(
                "it is neither an OCI layout (no `index.json`) nor a docker-archive of one image ({} images)",
                entries.len()
            )));
        };
        let config = self.file(&entry.config)?;
        let layers = entry.layers.iter().map(|layer| self.file(layer)).collect::<Result<_, _>>()?;
        Ok((config, layers))
    }

    /// Checks and stores the image (`entry = Some(i)`: the `i`-th image of
    /// an index; `None`: the whole source).
    pub fn import(&self, cas: &Cas, entry: Option<usize>) -> Result<Imported, OciError> {
        if !self.is_oci() {
            return self.import_docker(cas).map(Imported::Image);
        }
        let (images, index) = self.oci_images()?;
        match (entry, index) {
            (Some(entry), _) => {
                let descriptor = images.get(entry).ok_or_else(|| self.bad(format!("it has no image {entry}")))?;
                self.import_oci_image(cas, descriptor).map(Imported::Image)
            }
            (None, None) => self.import_oci_image(cas, &images[0]).map(Imported::Image),
            (None, Some(bytes)) => {
                let images =
                    images.iter().map(|descriptor| self.import_oci_image(cas, descriptor)).collect::<Result<_, _>>()?;
                Ok(Imported::Index { index: cas.put_bytes(&bytes)?, images })
            }
        }
    }

    fn import_oci_image(&self, cas: &Cas, descriptor: &Descriptor) -> Result<ImportedImage, OciError> {
        if !media_types::is_manifest(&descriptor.media_type) {
            return Err(
                self.bad(format!("`{}` is a `{}`, not an image manifest", descriptor.digest, descriptor.media_type))
            );
        }
        let bytes = self.blob(descriptor)?;
        let manifest: Manifest = self.json("a manifest", bytes)?;
        let config = cas.put_bytes(self.blob(&manifest.config)?)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            layers.push((cas.put_bytes(self.blob(layer)?)?, layer.media_type.clone()));
        }
        Ok(ImportedImage { manifest: cas.put_bytes(bytes)?, config, layers })
    }

    fn import_docker(&self, cas: &Cas) -> Result<ImportedImage, OciError> {
        let (config_bytes, layer_files) = self.docker_parts()?;
        let config: crate::oci::ImageConfig = self.json("the config", config_bytes)?;
        if config.rootfs.diff_ids.len() != layer_files.len() {
            return Err(self.bad(format!(
                "its config lists {} diff_ids for {} layers",
                config.rootfs.diff_ids.len(),
                layer_files.len()
            )));
        }
        let mut layers = Vec::with_capacity(layer_files.len());
        let mut descriptors = Vec::with_capacity(layer_files.len());
        for (index, (bytes, diff_id)) in layer_files.iter().zip(&config.rootfs.diff_ids).enumerate() {
            let compression = match bytes {
                [0x1f, 0x8b, ..] => Compression::Gzip,
                [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
                _ => Compression::None,
            };
            let mut reader = decoder(*bytes, compression).map_err(|error| self.bad(error.to_string()))?;
            let mut hasher = crate::cache::Sha256Writer::new(std::io::sink());
            std::io::copy(&mut reader, &mut hasher).map_err(|error| self.bad(format!("layer {index}: {error}")))?;
            let (actual, _, _) = hasher.finish();
            if actual != *diff_id {
                return Err(self.bad(format!("layer {index} has diff_id `{actual}`, but its config says `{diff_id}`")));
            }
            let blob = cas.put_bytes(bytes)?;
            descriptors.push(Descriptor::new(compression.media_type(), blob));
            layers.push((blob, compression.media_type().to_owned()));
        }
        let config_blob = cas.put_bytes(config_bytes)?;
        let manifest = Manifest::new(Descriptor::new(media_types::CONFIG, config_blob), descriptors, BTreeMap::new());
        let manifest = cas.put_bytes(&canonical_json(&manifest))?;
        Ok(ImportedImage { manifest, config: config_blob, layers })
    }
}

fn read_dir(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) -> Result<(), OciError> {
    let mut entries: Vec<_> =
        fs::read_dir(dir).map_err(OciError::read(dir))?.collect::<Result<_, _>>().map_err(OciError::read(dir))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let kind = entry.file_type().map_err(OciError::read(&path))?;
        if kind.is_dir() {
            read_dir(&path, &relative, files)?;
        } else if kind.is_file() {
            files.insert(relative, fs::read(&path).map_err(OciError::read(&path))?);
        }
    }
    Ok(())
}

/// The files under a layout directory, relative to it and sorted: the
/// inputs of an import action.
pub fn layout_files(dir: &Path) -> Result<Vec<String>, OciError> {
    let mut files = BTreeMap::new();
    list_dir(dir, "", &mut files)?;
    Ok(files.into_keys().collect())
}

fn list_dir(dir: &Path, prefix: &str, files: &mut BTreeMap<String, ()>) -> Result<(), OciError> {
    for entry in fs::read_dir(dir).map_err(OciError::read(dir))? {
        let entry = entry.map_err(OciError::read(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let kind = entry.file_type().map_err(OciError::read(entry.path()))?;
        if kind.is_dir() {
            list_dir(&entry.path(), &relative, files)?;
        } else if kind.is_file() {
            files.insert(relative, ());
        }
    }
    Ok(())
}
