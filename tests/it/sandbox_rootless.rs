//! Rootless berth: run by a user, berth enters a user namespace of its own
//! where it is uid 0 (newuidmap/newgidmap with the user's subordinate
//! range, or a single-id map without one), and builds and runs images as
//! root does, to the same digests.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sandbox_userns::{layer_entries, workspace};
use crate::util::need::{skip, Need};
use crate::util::rootless::{berth_as, hand_over, subordinate_start, user, SINGLE_ID, WITH_RANGE};
use crate::util::runc::{serial, BUSYBOX};
use crate::util::workspace::{project_copy, TestWorkspace};

/// What the rootless tests on the busybox base need.
const ROOTLESS: &[Need] = &[Need::Root, Need::Runc, Need::Busybox, Need::Rootless];

/// The numbers of a `/proc/PID/uid_map` line.
fn map_numbers(text: &str) -> Vec<u64> {
    text.split_whitespace().map(|number| number.parse().unwrap()).collect()
}

/// Nothing of berth's is left in its private directory: no bound root, no
/// runc container state.
fn assert_nothing_left(uid: u32) {
    let private = Path::new("/tmp").join(format!("berth-{uid}"));
    for area in ["roots", "runc"] {
        let left: Vec<_> = std::fs::read_dir(private.join(area))
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {area}: {left:?}");
    }
}

#[test]
fn rootless_berth_builds_every_example_to_the_root_digests_and_runs_one() {
    if skip(&[Need::Debs, Need::Root, Need::Runc, Need::Rootless]) {
        return;
    }
    let _serial = serial();
    let user = user(WITH_RANGE).unwrap();
    let workspace = project_copy();
    hand_over(&workspace, user);
    let build = berth_as(&workspace, user, &["--console", "none", "build", "//examples/..."]);
    build.success();
    let expected = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/expected.digests"))
        .expect("read examples/expected.digests");
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&build.stdout), sorted(&expected), "rootless digests differ from root's");
    assert!(build.stderr.contains("berth runs rootless: steps get no memory or pids limits"), "{}", build.stderr);
    let run = berth_as(&workspace, user, &["--console", "none", "run", "//examples/build_step"]);
    run.success();
    assert_eq!(run.stdout, "      3 berth\n      2 bazel\n      1 buck2\n");
    assert_nothing_left(user.uid);
}

#[test]
fn a_rootless_step_runs_in_a_namespace_of_the_users_range_and_its_layer_records_inside_ids() {
    if skip(ROOTLESS) {
        return;
    }
    let _serial = serial();
    let user = user(WITH_RANGE).unwrap();
    let range = subordinate_start("/etc/subuid", WITH_RANGE).unwrap();
    let workspace = workspace();
    chown_step(&workspace);
    hand_over(&workspace, user);
    berth_as(&workspace, user, &["--console", "none", "build", "//app:ids", "//app:chowned"]).success();
    let entries = layer_entries(&workspace.path("berth-out/app/ids/layer.tar.gz"));
    let body = |name: &str| entries.iter().find(|entry| entry.0 == name).unwrap_or_else(|| panic!("{name}")).3.clone();
    // The container's 0 is id 1 of berth's namespace: the range's start.
    assert_eq!(map_numbers(&body("out/uid_map")), [0, 1, 65536]);
    assert_eq!(body("out/id"), "0\n");
    assert_eq!(body("out/base_owner"), "0:0\n", "the base's root-owned files are root's inside");
    let made = entries.iter().find(|entry| entry.0 == "out/made_by_root").unwrap();
    assert_eq!((made.1, made.2), (0, 0), "the layer records the id inside");
    let chowned = layer_entries(&workspace.path("berth-out/app/chowned/layer.tar.gz"));
    let owned = chowned.iter().find(|entry| entry.0 == "out/owned").unwrap();
    assert_eq!((owned.1, owned.2), (1000, 1000), "another owner inside stays that owner in the layer");
    // On the host, the extracted base belongs to the user's range.
    let busybox = find(&workspace.path(".cache/layers"), "busybox").expect("the base layer is extracted");
    let metadata = std::fs::symlink_metadata(&busybox).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (range, range), "{}", busybox.display());
    assert_nothing_left(user.uid);
}

#[test]
fn a_user_without_a_range_runs_steps_as_its_one_id() {
    if skip(ROOTLESS) {
        return;
    }
    let _serial = serial();
    let user = user(SINGLE_ID).unwrap();
    let workspace = workspace();
    chown_step(&workspace);
    hand_over(&workspace, user);
    berth_as(&workspace, user, &["--console", "none", "build", "//app:ids"]).success();
    let entries = layer_entries(&workspace.path("berth-out/app/ids/layer.tar.gz"));
    let body = |name: &str| entries.iter().find(|entry| entry.0 == name).unwrap_or_else(|| panic!("{name}")).3.clone();
    assert_eq!(map_numbers(&body("out/uid_map")), [0, 0, 1], "one id: berth's 0, the user");
    assert_eq!(body("out/id"), "0\n");
    let made = entries.iter().find(|entry| entry.0 == "out/made_by_root").unwrap();
    assert_eq!((made.1, made.2), (0, 0));
    // Files the step makes belong to the user on the host.
    let busybox = find(&workspace.path(".cache/layers"), "busybox").expect("the base layer is extracted");
    assert_eq!(std::fs::symlink_metadata(&busybox).unwrap().uid(), user.uid);
    // Another owner does not exist here: the step fails, and says why.
    let chowned = berth_as(&workspace, user, &["--console", "plain", "build", "//app:chowned"]);
    chowned.failure(1);
    assert!(chowned.stderr.contains("Invalid argument"), "{}", chowned.stderr);
    assert!(chowned.stderr.contains("single id"), "{}", chowned.stderr);
    assert_nothing_left(user.uid);
}

/// Adds `//app:chowned`, a step that gives a file to uid and gid 1000.
fn chown_step(workspace: &TestWorkspace) {
    let build = std::fs::read_to_string(workspace.path("app/BUILD.star")).unwrap();
    workspace.file(
        "app/BUILD.star",
        &format!(
            r#"{build}
oci_build_layer(
    name = "chowned",
    base = ":shell",
    command = ["mkdir -p /out", "touch /out/owned", "busybox chown 1000:1000 /out/owned"],
    outputs = ["/out"],
)
"#
        ),
    );
    assert!(Path::new(BUSYBOX).is_file());
}

/// The first file named `name` below `dir`.
fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            return Some(path);
        }
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        }
    }
    None
}
