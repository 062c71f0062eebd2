//! Files of an image that berth reads on the host: a base whose
//! `/etc/passwd` is a FIFO (which blocked berth forever, leaking a mount)
//! fails at once with a clear error, well within the step's timeout, and
//! leaves no container, mount or root behind.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::actions::{
    Action, ActionContext, ActionId, BaseConfig, ExecutionContext, LayerOutput, ResolvedInput, RunStep, RunStepSpec,
};
use berth::cache::Cas;
use berth::exec::{Runc, RuncRuntime, StackMode};
use berth::oci::LayerStore;

use crate::util::need::skip;
use crate::util::runc::{gzip, serial, BUSYBOX, CONTAINER};

/// busybox with `/etc/passwd` as a FIFO.
fn fifo_passwd_base() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    };
    append("bin", tar::EntryType::Directory, 0o755, b"");
    append("bin/busybox", tar::EntryType::Regular, 0o755, &std::fs::read(BUSYBOX).unwrap());
    append("etc", tar::EntryType::Directory, 0o755, b"");
    append("etc/passwd", tar::EntryType::Fifo, 0o644, b"");
    builder.into_inner().unwrap()
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_fifo_passwd_fails_the_step_at_once_and_leaves_nothing() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cas = Cas::open(&cache).unwrap();
    let base = LayerOutput {
        blob: cas.put_bytes(&gzip(&fifo_passwd_base())).unwrap(),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        diff_id: None,
    }
    .to_result();
    let config = serde_json::json!({"config": {"User": "app"}}).to_string();
    let step = RunStep {
        base_config: BaseConfig::Blob(cas.put_bytes(config.as_bytes()).unwrap()),
        base_layers: vec![ActionId(0)],
        packages: vec![],
        spec: RunStepSpec {
            command: vec!["true".into()],
            outputs: vec!["/out".into()],
            timeout_secs: 30,
            ..RunStepSpec::default()
        },
    };
    let context = ExecutionContext::new(cas.clone(), LayerStore::new(&cache))
        .with_runtime(Arc::new(RuncRuntime::new(None, StackMode::Auto)));
    let scratch = tempfile::tempdir_in(dir.path()).unwrap();
    let start = Instant::now();
    let error = step
        .execute(&ActionContext::new(&context, vec![ResolvedInput::Action(&base)], scratch.path()))
        .unwrap_err()
        .to_string();
    // Not a timing assertion: a read that blocked would never return, and
    // the step's own timeout (30 s) would say "timed out" instead.
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(error.contains("`/etc/passwd` of the image cannot be read: not a regular file"), "{error}");
    assert!(!error.contains("timed out"), "{error}");
    let prefix = format!("berth-{}.", std::process::id());
    let runc = Runc::locate(None).unwrap();
    assert!(runc.list().unwrap().iter().all(|id| !id.starts_with(&prefix)));
    assert_eq!(mounts_below(dir.path()), Vec::<String>::new());
    assert!(!scratch.path().join("rootfs").exists(), "the stacked root was removed");
}
