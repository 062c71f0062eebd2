//! The built-ins of each kind of file: `native.<kind>`, `glob` and
//! `package_name` for BUILD and `.star` files; `workspace`, `registry`,
//! `source_date_epoch`, `remote_cache` and `runc` for `WORKSPACE.star`.

use std::path::PathBuf;

use starlark::environment::{GlobalsBuilder, LibraryExtension};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::values::list_or_tuple::UnpackListOrTuple;
use starlark::values::none::NoneType;
use starlark::values::{Heap, Value};

use crate::frontend::context::{call_site, EvalContext};
use crate::frontend::glob::glob_package;
use crate::frontend::limits;
use crate::frontend::native_rule::NativeRule;
use crate::graph::RuleKind;
use crate::workspace::{RegistrySetting, RemoteCacheSetting, RemoteCacheUrl};

/// The standard library plus the extensions BUILD authors expect.
pub(crate) fn standard() -> GlobalsBuilder {
    GlobalsBuilder::extended_by(&[
        LibraryExtension::StructType,
        LibraryExtension::RecordType,
        LibraryExtension::EnumType,
        LibraryExtension::NamespaceType,
        LibraryExtension::Typing,
        LibraryExtension::Print,
        LibraryExtension::Partial,
        LibraryExtension::Map,
        LibraryExtension::Filter,
        LibraryExtension::SetType,
    ])
    // starlark-rust's `json`, with a depth guard: its encoder recurses on
    // the native stack, and a deep value would abort berth.
    .with_namespace("json", json_members)
}

#[starlark_module]
fn json_members(builder: &mut GlobalsBuilder) {
    /// The JSON text of `x` (Bazel's `json.encode`).
    fn encode<'v>(#[starlark(require = pos)] x: Value<'v>, heap: Heap<'v>) -> anyhow::Result<String> {
        limits::check_value_depth(x, heap)?;
        x.to_json()
    }

    /// The value of the JSON text `x` (Bazel's `json.decode`).
    fn decode<'v>(#[starlark(require = pos)] x: &str, heap: Heap<'v>) -> anyhow::Result<Value<'v>> {
        // serde_json refuses input nested more than 128 levels.
        Ok(heap.alloc(serde_json::from_str::<serde_json::Value>(x)?))
    }
}

/// Globals of BUILD and `.star` files before the rule library is added:
/// `native` (one `native.<kind>` per native rule kind), `glob`,
/// `package_name`.
pub(crate) fn base() -> GlobalsBuilder {
    let mut builder = standard().with(build_functions);
    builder.namespace("native", |native| {
        for kind in RuleKind::ALL {
            native.set(kind.name(), NativeRule::new(*kind));
        }
    });
    builder
}

/// Globals of `WORKSPACE.star`.
pub(crate) fn workspace() -> GlobalsBuilder {
    standard().with(workspace_functions)
}

/// Why a Starlark error carries no berth message: the loader reads the real
/// one from `EvalContext::error`.
fn plain_error(message: String) -> starlark::Error {
    starlark::Error::new_other(anyhow::anyhow!(message))
}

#[starlark_module]
fn build_functions(builder: &mut GlobalsBuilder) {
    /// The files of the current package matching `include` and none of
    /// `exclude`, sorted; never files of a subpackage.
    fn glob<'v>(
        include: UnpackListOrTuple<String>,
        #[starlark(default = UnpackListOrTuple::default())] exclude: UnpackListOrTuple<String>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Vec<String>> {
        let context = EvalContext::of(eval);
        let package = context.package_for("glob")?;
        glob_package(&package.dir, &package.package, &include.items, &exclude.items).map_err(|diagnostic| {
            let location = call_site(eval, &package.build_file);
            context.fail(diagnostic.maybe_at(location).into())
        })
    }

    /// The path of the package being loaded (`""` for the root package).
    fn package_name<'v>(eval: &mut Evaluator<'v, '_, '_>) -> starlark::Result<String> {
        let context = EvalContext::of(eval);
        Ok(context.package_for("package_name")?.package.clone())
    }
}

#[starlark_module]
fn workspace_functions(builder: &mut GlobalsBuilder) {
    /// `workspace(name = "...")`: the workspace's name.
    fn workspace<'v>(
        #[starlark(require = named)] name: String,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        settings(eval, "workspace", |settings| {
            settings.name = Some(name);
            Ok(())
        })
    }

    /// `registry(host, mirrors = [], insecure = False, ca = None,
    /// client_cert = None, client_key = None, skip_verify = False)`: how to
    /// reach a registry (certificate paths are relative to the workspace).
    #[allow(clippy::too_many_arguments)]
    fn registry<'v>(
        host: String,
        #[starlark(require = named, default = UnpackListOrTuple::default())] mirrors: UnpackListOrTuple<String>,
        #[starlark(require = named, default = false)] insecure: bool,
        #[starlark(require = named)] ca: Option<String>,
        #[starlark(require = named)] client_cert: Option<String>,
        #[starlark(require = named)] client_key: Option<String>,
        #[starlark(require = named, default = false)] skip_verify: bool,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        settings(eval, "registry", |settings| {
            if host.is_empty() || host.contains('/') {
                return Err(format!("`registry` takes a host such as `registry.example.com:5000`, not `{host}`"));
            }
            if settings.registries.iter().any(|registry| registry.host == host) {
                return Err(format!("Registry `{host}` is declared twice"));
            }
            if client_cert.is_some() != client_key.is_some() {
                return Err(format!(
                    "Registry `{host}` sets only one of `client_cert` and `client_key`; a client certificate needs both"
                ));
            }
            if insecure && (ca.is_some() || client_cert.is_some() || skip_verify) {
                return Err(format!(
                    "Registry `{host}` is `insecure` (plain HTTP), so `ca`, `client_cert` and `skip_verify` cannot apply; remove them or `insecure`"
                ));
            }
            for path in [&ca, &client_cert, &client_key].into_iter().flatten() {
                if path.is_empty() {
                    return Err(format!("Registry `{host}` has an empty certificate path"));
                }
            }
            settings.registries.push(RegistrySetting {
                host,
                mirrors: mirrors.items,
                insecure,
                ca,
                client_cert,
                client_key,
                skip_verify,
            });
            Ok(())
        })
    }

    /// `source_date_epoch(N)`: the timestamp written into layers and configs.
    fn source_date_epoch<'v>(seconds: i64, eval: &mut Evaluator<'v, '_, '_>) -> starlark::Result<NoneType> {
        settings(eval, "source_date_epoch", |settings| {
            let seconds = u64::try_from(seconds)
                .map_err(|_| format!("`source_date_epoch` must not be negative, not {seconds}"))?;
            settings.source_date_epoch = Some(seconds);
            Ok(())
        })
    }

    /// `remote_cache(url, read_only = False)`: the remote cache looked up
    /// after a local miss and fed after a local run (never with `read_only`).
    fn remote_cache<'v>(
        url: String,
        #[starlark(require = named, default = false)] read_only: bool,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        settings(eval, "remote_cache", |settings| {
            if settings.remote_cache.is_some() {
                return Err("`remote_cache` is declared twice".to_owned());
            }
            let url = RemoteCacheUrl::parse(&url)?;
            settings.remote_cache = Some(RemoteCacheSetting { url, read_only });
            Ok(())
        })
    }

    /// `workspace_status(command = "tools/status.sh")`: what `--stamp` runs
    /// for the `KEY VALUE` lines that fill `{KEY}` placeholders.
    fn workspace_status<'v>(
        #[starlark(require = named)] command: String,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        settings(eval, "workspace_status", |settings| {
            if command.trim().is_empty() {
                return Err("`workspace_status` needs a command, e.g. `tools/status.sh`".to_owned());
            }
            if settings.workspace_status.is_some() {
                return Err("`workspace_status` is declared twice".to_owned());
            }
            settings.workspace_status = Some(command);
            Ok(())
        })
    }

    /// `runc(path)`: the runc binary to use instead of the one on `PATH`.
    fn runc<'v>(path: String, eval: &mut Evaluator<'v, '_, '_>) -> starlark::Result<NoneType> {
        settings(eval, "runc", |settings| {
            settings.runc = Some(PathBuf::from(path));
            Ok(())
        })
    }

    /// `limits(memory_bytes = N, pids = N, output_bytes = N, upper_bytes =
    /// N)`: the memory and processes all running containers share, the most
    /// one step may capture, and the most one container may write.
    fn limits<'v>(
        #[starlark(require = named)] memory_bytes: Option<i64>,
        #[starlark(require = named)] pids: Option<i64>,
        #[starlark(require = named)] output_bytes: Option<i64>,
        #[starlark(require = named)] upper_bytes: Option<i64>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        settings(eval, "limits", |settings| {
            let positive = |name: &str, value: Option<i64>| match value {
                None => Ok(None),
                Some(value) if value > 0 => Ok(Some(value as u64)),
                Some(value) => Err(format!("`limits({name} = {value})` must be a positive number")),
            };
            settings.limits = crate::workspace::LimitSettings {
                memory_bytes: positive("memory_bytes", memory_bytes)?,
                pids: positive("pids", pids)?,
                output_bytes: positive("output_bytes", output_bytes)?,
                upper_bytes: positive("upper_bytes", upper_bytes)?,
            };
            Ok(())
        })
    }
}

fn settings(
    eval: &Evaluator,
    function: &str,
    update: impl FnOnce(&mut crate::workspace::WorkspaceSettings) -> Result<(), String>,
) -> starlark::Result<NoneType> {
    let context = EvalContext::of(eval);
    let settings = context
        .settings
        .as_ref()
        .ok_or_else(|| plain_error(format!("`{function}()` may only be called in `WORKSPACE.star`")))?;
    update(&mut settings.borrow_mut()).map_err(plain_error)?;
    Ok(NoneType)
}

#[cfg(test)]
mod tests {
    use starlark::assert::Assert;

    use super::*;
    use crate::frontend::context::PackageContext;
    use crate::frontend::loader::dialect;
    use crate::frontend::prelude::Library;

    /// An `Assert` with the BUILD-file globals, evaluating in package `app`
    /// whose directory holds `files`. Each program gets a fresh context, so
    /// targets declared by one run do not clash with the next.
    fn in_package(files: &[&str]) -> Assert<'static> {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let dir = dir.keep();
        let mut assert = Assert::new();
        assert.dialect(&dialect());
        assert.globals(Library::get().unwrap().globals.clone());
        assert.setup_eval(move |eval| {
            let context = EvalContext::for_package(PackageContext {
                package: "app".into(),
                build_file: "app/BUILD.star".into(),
                dir: dir.clone(),
                targets: Default::default(),
                names: Default::default(),
            });
            // Leaked: the evaluator borrows it for the whole test.
            eval.extra = Some(Box::leak(Box::new(context)));
        });
        assert
    }

    #[test]
    fn package_name_and_glob() {
        let assert = in_package(&["b.txt", "a.txt", "c.py", "sub/BUILD.star", "sub/d.txt", "deep/e.txt"]);
        assert.eq("package_name()", "'app'");
        assert.eq("glob(['*.txt'])", "['a.txt', 'b.txt']");
        assert.eq("glob(['**/*.txt'], exclude = ['b.*'])", "['a.txt', 'deep/e.txt']");
        assert.eq("glob(include = ('*.py',))", "['c.py']");
        assert.fail("glob(['../*'])", "Glob pattern `../*` escapes package `//app`");
        assert.fail("glob('*.txt')", "Type of parameter `include` doesn't match");
    }

    #[test]
    fn natives_check_their_schema() {
        let assert = in_package(&[]);
        assert.pass("native.files(name = 'x', srcs = ['a'])");
        assert.pass("oci_image_build(name = 'img', env = {'A': 'b'})");
        assert.fail("native.files(name = 'x', srcz = ['a'])", "Unknown attribute `srcz` of `files` target `//app:x`");
        assert.fail("native.files(name = 'x')", "Missing required attribute `srcs`");
        assert.fail("native.oci_layer(name = 'x', uid = '0')", "Attribute `uid` must be an int, not `string`");
        assert.fail("native.oci_layer(name = 'x', mode = '9')", "is not a file mode");
        assert.fail("native.oci_layer(name = 'x')\nnative.oci_layer(name = 'x')", "Target `//app:x` is declared twice");
        assert.fail("native.oci_pull_image(name = 'a#b', repository = 'r', digest = 'd')", "`#` is reserved");
        assert.fail("native.files('x', srcs = [])", "positional");
    }

    #[test]
    fn the_dialect_has_types_f_strings_and_keyword_only_arguments() {
        let assert = in_package(&[]);
        assert.eq("(lambda port: f'{port}/tcp')(80)", "'80/tcp'");
        assert.pass("def f(*, name: str) -> str:\n    return name\nf(name = 'x')");
        assert.fail("def f(*, name: str):\n    pass\nf('x')", "Missing named-only parameter `name`");
        assert.fail("def f(name: str):\n    pass\nf(1)", "does not match the type annotation");
    }

    #[test]
    fn workspace_functions_only_in_workspace_star() {
        let mut assert = Assert::new();
        assert.globals(workspace().build());
        assert.setup_eval(|eval| eval.extra = Some(Box::leak(Box::new(EvalContext::for_workspace_file()))));
        assert.pass(
            "workspace(name = 'w')\nregistry('r:5000', mirrors = ['m'], insecure = True)\nruncc = runc('/bin/runc')",
        );
        assert.fail("workspace('w')", "Missing named-only parameter `name`");
        assert.fail("source_date_epoch('now')", "Type of parameter `seconds` doesn't match");
        assert.fail("source_date_epoch(-5)", "must not be negative");
        let mut outside = Assert::new();
        outside.globals(workspace().build());
        outside.setup_eval(|eval| eval.extra = Some(Box::leak(Box::new(EvalContext::for_star_file()))));
        outside.fail("registry('r')", "`registry()` may only be called in `WORKSPACE.star`");
    }
}
