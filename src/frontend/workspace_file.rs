//! `WORKSPACE.star`: evaluated for settings only (`workspace`, `registry`,
//! `source_date_epoch`, `runc`, `remote_cache`, `limits`); it declares no targets.

use std::fs;
use std::path::Path;

use starlark::environment::Module;
use starlark::eval::Evaluator;
use starlark::syntax::AstModule;

use crate::error::Error;
use crate::frontend::context::EvalContext;
use crate::frontend::error::LoadError;
use crate::frontend::globals;
use crate::frontend::limits;
use crate::frontend::loader::dialect;
use crate::workspace::{find_root, Workspace, WorkspaceError, WorkspaceSettings, WORKSPACE_FILE};

/// Finds the workspace holding `cwd` (the nearest ancestor with
/// `WORKSPACE.star`) and opens it.
pub fn discover_workspace(cwd: &Path) -> Result<Workspace, Error> {
    open_workspace(&find_root(cwd)?)
}

/// Opens the workspace rooted at `root`, evaluating its `WORKSPACE.star`.
pub fn open_workspace(root: &Path) -> Result<Workspace, Error> {
    let path = root.join(WORKSPACE_FILE);
    let text =
        fs::read_to_string(&path).map_err(|source| WorkspaceError::Io { path: WORKSPACE_FILE.to_owned(), source })?;
    let settings = evaluate_workspace_file(WORKSPACE_FILE, &text)?;
    Ok(Workspace::new(root, settings)?)
}

/// Evaluates the text of `WORKSPACE.star` (`path` is how errors name it).
pub fn evaluate_workspace_file(path: &str, text: &str) -> Result<WorkspaceSettings, Error> {
    evaluate(path, text).map_err(Error::from)
}

fn evaluate(path: &str, text: &str) -> Result<WorkspaceSettings, LoadError> {
    limits::check_nesting(path, text)?;
    let mut dialect = dialect();
    // Settings need no modules: a `load` here would be a misunderstanding.
    dialect.enable_load = false;
    let ast = AstModule::parse(path, text.to_owned(), &dialect)
        .map_err(|error| LoadError::Starlark(limits::starlark_message(&error)))?;
    let globals = globals::workspace().build();
    let context = EvalContext::for_workspace_file();
    let result = Module::with_temp_heap(|module| {
        let mut eval = Evaluator::new(&module);
        eval.extra = Some(&context);
        limits::apply(&mut eval);
        limits::guarded(path, || eval.eval_module(ast, &globals)).map(|_| ())
    });
    if let Err(error) = result {
        return Err(context.error.take().unwrap_or(error));
    }
    Ok(context.settings.expect("a workspace context has settings").into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::{RegistrySetting, RemoteCacheSetting, RemoteCacheUrl};

    #[test]
    fn reads_every_setting() {
        let settings = evaluate(
            "WORKSPACE.star",
            r#"
workspace(name = "demo")
registry("localhost:5000", insecure = True)
registry("registry.internal", mirrors = ["mirror.internal"], ca = "certs/ca.pem",
         client_cert = "certs/client.pem", client_key = "certs/client-key.pem")
source_date_epoch(1700000000)
runc("/usr/sbin/runc")
workspace_status(command = "tools/status.sh")
remote_cache("grpc://127.0.0.1:8980/main", read_only = True)
"#,
        )
        .unwrap();
        assert_eq!(
            settings,
            WorkspaceSettings {
                name: Some("demo".into()),
                registries: vec![
                    RegistrySetting { host: "localhost:5000".into(), insecure: true, ..RegistrySetting::default() },
                    RegistrySetting {
                        host: "registry.internal".into(),
                        mirrors: vec!["mirror.internal".into()],
                        ca: Some("certs/ca.pem".into()),
                        client_cert: Some("certs/client.pem".into()),
                        client_key: Some("certs/client-key.pem".into()),
                        ..RegistrySetting::default()
                    },
                ],
                source_date_epoch: Some(1_700_000_000),
                runc: Some("/usr/sbin/runc".into()),
                workspace_status: Some("tools/status.sh".into()),
                limits: crate::workspace::LimitSettings::default(),
                remote_cache: Some(RemoteCacheSetting {
                    url: RemoteCacheUrl::parse("grpc://127.0.0.1:8980/main").unwrap(),
                    read_only: true
                }),
            }
        );
        let limits = evaluate("WORKSPACE.star", "limits(memory_bytes = 1 << 30, pids = 512, output_bytes = 4096)");
        assert_eq!(
            limits.unwrap().limits,
            crate::workspace::LimitSettings {
                memory_bytes: Some(1 << 30),
                pids: Some(512),
                output_bytes: Some(4096),
                upper_bytes: None
            }
        );
        let error = evaluate("WORKSPACE.star", "limits(pids = 0)").unwrap_err().to_string();
        assert!(error.contains("`limits(pids = 0)` must be a positive number"), "{error}");
        assert_eq!(evaluate("WORKSPACE.star", "").unwrap(), WorkspaceSettings::default());
    }

    #[test]
    fn refuses_bad_settings_and_rules() {
        for (text, wanted) in [
            ("source_date_epoch(-1)", "must not be negative"),
            ("registry('a')\nregistry('a')", "Registry `a` is declared twice"),
            ("oci_image_build(name = 'x')", "Variable `oci_image_build` not found"),
            ("load('//x:y.star', 'z')", "load"),
            ("registry('a:1', client_cert = 'c.pem')", "sets only one of `client_cert` and `client_key`"),
            ("registry('a:1', insecure = True, ca = 'ca.pem')", "cannot apply"),
            ("remote_cache('cache:8980')", "Remote cache URL `cache:8980` is not valid: it has no scheme"),
            ("remote_cache('grpc://a:1')\nremote_cache('grpc://b:1')", "`remote_cache` is declared twice"),
        ] {
            let error = evaluate("WORKSPACE.star", text).unwrap_err().to_string();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
