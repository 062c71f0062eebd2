//! The native rule kinds, declared once: each kind's name, its attributes
//! (name, type, required, default, choices) and the typed struct analysis
//! reads them from.
//!
//! The table at the bottom of this file drives everything else: the
//! front-end registers one `native.<kind>` callable per `RuleKind`, checks
//! calls against `RuleKind::attrs`, and converts the coerced values into
//! `RuleAttrs`; analysis matches on `RuleAttrs` and reads fields, so a
//! misspelt attribute is a compile error. A new kind is one entry here, one
//! analysis function in `analysis/rules/`, and one arm in its dispatch.

use std::fmt;

use crate::graph::{AttrDefault, AttrField, AttrSpec, AttrType, AttrValue, KeyValues};
use crate::oci::Compression;
use crate::workspace::Label;

/// The label of the implicit empty image every `oci_image_build` starts from.
pub const EMPTY_IMAGE: &str = "//:empty";

/// Why coerced values do not make a kind's typed attributes: a bug in
/// berth, as the front-end coerces every value by the same table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Attribute `{attr}` of `{kind}` does not hold what the kinds table declares")]
pub struct AttrShapeError {
    pub kind: RuleKind,
    pub attr: &'static str,
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl RuleKind {
    /// The attribute named `name`, if the kind has one.
    pub fn attr(self, name: &str) -> Option<&'static AttrSpec> {
        self.attrs().iter().find(|attr| attr.name == name)
    }
}

impl RuleAttrs {
    /// Every label the attributes name, with the attribute naming it, in
    /// table order (repeats kept).
    pub fn labels(&self) -> Vec<(&'static str, &Label)> {
        let mut labels = Vec::new();
        self.visit_labels(&mut |attr, label| labels.push((attr, label)));
        labels
    }
}

/// Declares the kinds: for each, a `RuleKind` variant, its Starlark name,
/// and a struct of typed attributes whose fields are the attributes, in
/// order, each with its `AttrSpec`. A field's Rust type must fit its spec
/// (`AttrSpec::fits`), checked when berth compiles.
macro_rules! rule_kinds {
    ($(
        $(#[$kind_meta:meta])*
        $kind:ident = $name:literal, $attrs:ident {
            $( $(#[$field_meta:meta])* $field:ident: $ty:ty = $spec:expr, )*
        }
    )*) => {
        /// A native rule kind: what `native.<kind>(...)` records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleKind {
            $( $(#[$kind_meta])* $kind, )*
        }

        impl RuleKind {
            /// Every native kind, in table order.
            pub const ALL: &'static [RuleKind] = &[$(RuleKind::$kind),*];

            /// The kind's name in Starlark (`native.<name>`), in `query`
            /// output and in a layer's history.
            pub fn name(self) -> &'static str {
                match self {
                    $( RuleKind::$kind => $name, )*
                }
            }

            /// The kind called `name`.
            pub fn from_name(name: &str) -> Option<RuleKind> {
                match name {
                    $( $name => Some(RuleKind::$kind), )*
                    _ => None,
                }
            }

            /// The kind's attributes, in table order (`name` aside, which
            /// every kind has).
            pub fn attrs(self) -> &'static [AttrSpec] {
                match self {
                    $( RuleKind::$kind => $attrs::SPECS, )*
                }
            }
        }

        /// A target's attributes, typed by its kind. Boxed: the structs
        /// range from one field to 25.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum RuleAttrs {
            $( $kind(Box<$attrs>), )*
        }

        impl RuleAttrs {
            pub fn kind(&self) -> RuleKind {
                match self {
                    $( RuleAttrs::$kind(_) => RuleKind::$kind, )*
                }
            }

            /// Builds `kind`'s attributes from one coerced value per
            /// attribute, in `kind.attrs()` order (defaults filled in).
            pub fn from_values(kind: RuleKind, values: Vec<AttrValue>) -> Result<RuleAttrs, AttrShapeError> {
                let mut values = values.into_iter();
                let attrs = match kind {
                    $( RuleKind::$kind => $attrs::from_values(&mut values).map(|attrs| RuleAttrs::$kind(Box::new(attrs))), )*
                };
                let attrs = attrs.map_err(|attr| AttrShapeError { kind, attr })?;
                match values.next() {
                    None => Ok(attrs),
                    Some(_) => Err(AttrShapeError { kind, attr: "(more values than attributes)" }),
                }
            }

            fn visit_labels<'a>(&'a self, visit: &mut dyn FnMut(&'static str, &'a Label)) {
                match self {
                    $( RuleAttrs::$kind(attrs) => attrs.visit_labels(visit), )*
                }
            }
        }

        $(
            $(#[$kind_meta])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub struct $attrs {
                $( $(#[$field_meta])* pub $field: $ty, )*
            }

            impl $attrs {
                /// The kind's attributes, in table order.
                pub const SPECS: &'static [AttrSpec] = &[$( $spec.named(stringify!($field)), )*];

                /// The first attribute whose value has the wrong shape, if any.
                fn from_values(values: &mut impl Iterator<Item = AttrValue>) -> Result<$attrs, &'static str> {
                    Ok($attrs {
                        $( $field: values
                            .next()
                            .and_then(<$ty as AttrField>::from_value)
                            .ok_or(stringify!($field))?, )*
                    })
                }

                fn visit_labels<'a>(&'a self, visit: &mut dyn FnMut(&'static str, &'a Label)) {
                    $( self.$field.visit_labels(&mut |label| visit(stringify!($field), label)); )*
                }
            }

            // Every field's Rust type fits its attribute's spec.
            const _: () = {
                let mut index = 0;
                $(
                    assert!(
                        $attrs::SPECS[index].fits::<$ty>(),
                        concat!("`", stringify!($attrs), "::", stringify!($field), "` does not fit its attribute spec")
                    );
                    index += 1;
                )*
                let _ = index;
            };
        )*
    };
}

use AttrSpec as A;
use AttrType as T;

rule_kinds! {
    /// `files`: a group of source files usable as a package.
    Files = "files", FilesAttrs {
        srcs: Vec<Label> = A::required(T::Labels),
        prefix: Option<String> = A::optional(T::String),
        strip_prefix: Option<String> = A::optional(T::String),
    }

    /// `oci_layer`: a declarative layer from files, inline contents,
    /// symlinks and directories.
    OciLayer = "oci_layer", OciLayerAttrs {
        srcs: Vec<Label> = A::optional(T::Labels),
        /// `"/dest": "src"`.
        files: Vec<(String, Label)> = A::optional(T::LabelDict),
        contents: Vec<(String, String)> = A::optional(T::StringDict),
        symlinks: Vec<(String, String)> = A::optional(T::StringDict),
        directories: Vec<String> = A::optional(T::Strings),
        prefix: Option<String> = A::optional(T::String),
        strip_prefix: Option<String> = A::optional(T::String),
        mode: Option<i64> = A::optional(T::Mode),
        uid: Option<i64> = A::optional(T::Int),
        gid: Option<i64> = A::optional(T::Int),
        mtime: Option<i64> = A::optional(T::Int),
    }

    /// `oci_image_empty`: an image with no layers.
    OciImageEmpty = "oci_image_empty", OciImageEmptyAttrs {
        os: Option<String> = A::optional(T::String),
        architecture: Option<String> = A::optional(T::String),
        variant: Option<String> = A::optional(T::String),
    }

    /// `oci_image_build` (and the `oci_python_image` macro): base +
    /// packages and layers + config.
    OciImageBuild = "oci_image_build", OciImageBuildAttrs {
        base: Label = A::with_default(T::Label, AttrDefault::Label(EMPTY_IMAGE)),
        packages: Vec<Label> = A::optional(T::Labels),
        layers: Vec<Label> = A::optional(T::Labels),
        entrypoint: Vec<String> = A::optional(T::Strings),
        cmd: Vec<String> = A::optional(T::Strings),
        env: KeyValues = A::optional(T::KeyValues),
        workdir: Option<String> = A::optional(T::String),
        user: Option<String> = A::optional(T::String),
        exposed_ports: Vec<String> = A::optional(T::Strings),
        volumes: Vec<String> = A::optional(T::Strings),
        labels: KeyValues = A::optional(T::KeyValues),
        annotations: KeyValues = A::optional(T::KeyValues),
        stop_signal: Option<String> = A::optional(T::String),
        healthcheck: Vec<(String, AttrValue)> = A::optional(T::Dict),
        author: Option<String> = A::optional(T::String),
        comment: Option<String> = A::optional(T::String),
        os: Option<String> = A::optional(T::String),
        architecture: Option<String> = A::optional(T::String),
        variant: Option<String> = A::optional(T::String),
        platform: Option<String> = A::optional(T::String),
        os_version: Option<String> = A::optional(T::String),
        os_features: Vec<String> = A::optional(T::Strings),
        /// Which image of an index `base` to build on (BuildStream's
        /// `parent: image: N`).
        base_index: Option<i64> = A::optional(T::Int),
        repository: Option<String> = A::optional(T::String),
        tag: Option<String> = A::optional(T::String),
        /// Registry tags (rules_oci's spelling); `tags` are target tags.
        remote_tags: Vec<String> = A::optional(T::Strings),
        compression: Compression =
            A::with_default(T::String, AttrDefault::String("gzip")).choices(&["gzip", "zstd", "none"]),
        /// Set by `oci_python_image`.
        python_main: Option<String> = A::optional(T::String),
    }

    /// `oci_build_layer`: runs `command` in `base` with `packages` staged and
    /// captures `outputs` as a layer.
    OciBuildLayer = "oci_build_layer", OciBuildLayerAttrs {
        base: Label = A::required(T::Label),
        packages: Vec<Label> = A::optional(T::Labels),
        env: Vec<(String, String)> = A::optional(T::Env),
        command: Vec<String> = A::optional(T::Strings),
        argv: Vec<String> = A::optional(T::Strings),
        outputs: Vec<String> = A::required(T::Strings),
        exclude: Vec<String> = A::optional(T::Strings),
        workdir: Option<String> = A::optional(T::String),
        output_path: Option<String> = A::optional(T::String),
        /// Seconds.
        timeout: i64 = A::with_default(T::Int, AttrDefault::Int(600)),
        network: bool = A::optional(T::Bool),
    }

    /// `oci_dockerfile`: a Dockerfile evaluated into actions, one per
    /// instruction that changes the filesystem.
    OciDockerfile = "oci_dockerfile", OciDockerfileAttrs {
        dockerfile: Label = A::required(T::Label),
        srcs: Vec<Label> = A::optional(T::Labels),
        build_args: Vec<(String, String)> = A::optional(T::StringDict),
        target: Option<String> = A::optional(T::String),
        bases: Vec<(String, Label)> = A::optional(T::LabelDict),
        labels: Vec<(String, String)> = A::optional(T::StringDict),
        secrets: Vec<(String, Label)> = A::optional(T::LabelDict),
        add_hosts: Vec<(String, String)> = A::optional(T::StringDict),
        network: bool = A::optional(T::Bool),
        platform: Option<String> = A::optional(T::String),
        repository: Option<String> = A::optional(T::String),
        tag: Option<String> = A::optional(T::String),
        /// Registry tags (rules_oci's spelling); `tags` are target tags.
        remote_tags: Vec<String> = A::optional(T::Strings),
    }

    /// `oci_image_index`: a multi-platform index of images.
    OciImageIndex = "oci_image_index", OciImageIndexAttrs {
        images: Vec<Label> = A::required(T::Labels),
        annotations: Vec<(String, String)> = A::optional(T::StringDict),
        repository: Option<String> = A::optional(T::String),
        tag: Option<String> = A::optional(T::String),
        /// Registry tags (rules_oci's spelling); `tags` are target tags.
        remote_tags: Vec<String> = A::optional(T::Strings),
    }

    /// `oci_pull_image`: a base image pinned by digest.
    OciPullImage = "oci_pull_image", OciPullImageAttrs {
        repository: String = A::required(T::String),
        sha: Option<String> = A::optional(T::String),
        digest: Option<String> = A::optional(T::String),
        anonymous: bool = A::optional(T::Bool),
        platform: Option<String> = A::optional(T::String),
    }

    /// `oci_push` (rules_oci): `berth run` pushes `image` to `repository`
    /// with `remote_tags`; `berth build` builds the image.
    OciPush = "oci_push", OciPushAttrs {
        image: Label = A::required(T::Label),
        repository: Option<String> = A::optional(T::String),
        remote_tags: Vec<String> = A::optional(T::Strings),
    }

    /// `oci_load` (rules_oci): `berth run` streams `image` as a
    /// docker-archive named `repo_tags` into `docker load` (or `podman load`).
    OciLoad = "oci_load", OciLoadAttrs {
        image: Label = A::required(T::Label),
        repo_tags: Vec<String> = A::optional(T::Strings),
    }

    /// `oci_import`: an image (or index) from an OCI layout directory, an
    /// OCI archive or a docker-archive in the package; `src` is its path.
    OciImport = "oci_import", OciImportAttrs {
        src: String = A::required(T::String),
    }

    /// `deb_layer`: a layer from the data archives of `.deb` files.
    DebLayer = "deb_layer", DebLayerAttrs {
        debs: Vec<Label> = A::required(T::Labels),
        sha256s: Vec<String> = A::optional(T::Strings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of `spec`'s type with something in it.
    fn sample(spec: &AttrSpec) -> AttrValue {
        let label = || AttrValue::Label(Label::new("app", "x"));
        let string = || AttrValue::String(spec.choices.first().unwrap_or(&"text").to_string());
        match spec.ty {
            AttrType::Label => label(),
            AttrType::Labels => AttrValue::List(vec![label(), label()]),
            AttrType::String => string(),
            AttrType::Strings => AttrValue::List(vec![string()]),
            AttrType::Int | AttrType::Mode => AttrValue::Int(0o644),
            AttrType::Bool => AttrValue::Bool(true),
            AttrType::Env | AttrType::StringDict => AttrValue::Dict(vec![("k".into(), string())]),
            AttrType::LabelDict => AttrValue::Dict(vec![("/k".into(), label())]),
            AttrType::Dict => AttrValue::Dict(vec![("k".into(), AttrValue::List(vec![AttrValue::Int(1)]))]),
            AttrType::KeyValues => AttrValue::Label(Label::new("app", "env.txt")),
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in RuleKind::ALL {
            assert_eq!(RuleKind::from_name(kind.name()), Some(*kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!(RuleKind::from_name("oci_image"), None, "aliases are macros, not kinds");
    }

    #[test]
    fn every_kind_takes_a_value_of_each_attribute_type() {
        for kind in RuleKind::ALL {
            let values = kind.attrs().iter().map(sample).collect();
            let attrs = RuleAttrs::from_values(*kind, values).unwrap();
            assert_eq!(attrs.kind(), *kind);
        }
    }

    #[test]
    fn every_kind_takes_its_defaults() {
        for kind in RuleKind::ALL {
            let values = kind
                .attrs()
                .iter()
                .map(|spec| if spec.required { sample(spec) } else { spec.default_value() })
                .collect();
            RuleAttrs::from_values(*kind, values).unwrap();
        }
    }

    #[test]
    fn every_choice_converts() {
        for spec in RuleKind::ALL.iter().flat_map(|kind| kind.attrs()) {
            for choice in spec.choices {
                assert!(Compression::from_value(AttrValue::String(choice.to_string())).is_some(), "{choice}");
            }
        }
    }

    #[test]
    fn a_value_of_the_wrong_shape_names_its_attribute() {
        let mut values: Vec<AttrValue> = RuleKind::Files.attrs().iter().map(sample).collect();
        values[1] = AttrValue::Int(1);
        let error = RuleAttrs::from_values(RuleKind::Files, values.clone()).unwrap_err();
        assert_eq!(error, AttrShapeError { kind: RuleKind::Files, attr: "prefix" });
        values.truncate(2);
        assert_eq!(RuleAttrs::from_values(RuleKind::Files, values).unwrap_err().attr, "prefix");
    }

    /// The type names of the architecture document's kinds table.
    fn doc_type(ty: AttrType) -> &'static str {
        match ty {
            AttrType::Label => "label",
            AttrType::Labels => "labels",
            AttrType::String => "string",
            AttrType::Strings => "strings",
            AttrType::Int => "int",
            AttrType::Bool => "bool",
            AttrType::Mode => "mode",
            AttrType::Env => "env",
            AttrType::StringDict => "string_dict",
            AttrType::LabelDict => "label_dict",
            AttrType::Dict => "dict",
            AttrType::KeyValues => "key_values",
        }
    }

    /// Removes the `(...)` notes of a table cell.
    fn without_notes(cell: &str) -> String {
        let mut depth = 0;
        let mut kept = String::new();
        for c in cell.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => kept.push(c),
                _ => {}
            }
        }
        kept
    }

    #[test]
    fn the_architecture_document_lists_every_kind_and_attribute() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ARCHITECTURE.md");
        let text = std::fs::read_to_string(path).unwrap();
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("| kind | attributes"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .collect();
        let documented: Vec<(String, Vec<String>)> = rows
            .iter()
            .map(|row| {
                let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
                let attrs = without_notes(cells[1]).split(", ").map(|item| item.trim().to_owned()).collect();
                (cells[0].trim_matches('`').to_owned(), attrs)
            })
            .collect();
        let declared: Vec<(String, Vec<String>)> = RuleKind::ALL
            .iter()
            .map(|kind| {
                let attrs = kind
                    .attrs()
                    .iter()
                    .map(|attr| match attr.required {
                        true => format!("**`{}`** {}", attr.name, doc_type(attr.ty)),
                        false => format!("`{}` {}", attr.name, doc_type(attr.ty)),
                    })
                    .collect();
                (kind.name().to_owned(), attrs)
            })
            .collect();
        assert_eq!(documented, declared);
    }

    #[test]
    fn labels_in_table_order_with_their_attribute() {
        let attrs = RuleAttrs::OciLayer(Box::new(OciLayerAttrs {
            srcs: vec![Label::new("app", "a")],
            files: vec![("/b".into(), Label::new("app", "b")), ("/a".into(), Label::new("app", "a"))],
            contents: vec![],
            symlinks: vec![],
            directories: vec![],
            prefix: None,
            strip_prefix: None,
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
        }));
        let labels: Vec<(&str, String)> =
            attrs.labels().into_iter().map(|(attr, label)| (attr, label.to_string())).collect();
        assert_eq!(labels, [("srcs", "//app:a".into()), ("files", "//app:b".into()), ("files", "//app:a".into())]);
    }
}
