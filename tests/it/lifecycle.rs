//! A container never outlives berth: berth killed with SIGTERM, SIGINT or
//! SIGKILL while a step runs leaves no container (`runc list`), no mount
//! (`/proc/self/mountinfo`) and no process of the step behind, at once for
//! the catchable signals and after the next command's sweep for SIGKILL;
//! `berth cache gc` and `berth clean --cache` succeed afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::need::{skip, Need};
use crate::util::runc::{serial, sleepers, wait_until, BUSYBOX, CONTAINER};
use crate::util::workspace::TestWorkspace;

/// A workspace whose `//app:long` step sleeps for `marker` seconds (the
/// number marks its processes) and whose `//app:shell` image runs a shell.
fn workspace(marker: u32) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.bytes("app/busybox", &std::fs::read(BUSYBOX).unwrap());
    workspace.file(
        "app/BUILD.star",
        &format!(
            r#"
oci_layer(
    name = "busybox_layer",
    files = {{"/bin/busybox": "busybox"}},
    symlinks = {{"/bin/" + applet: "busybox" for applet in ["sh", "sleep", "mkdir"]}},
    mode = "0755",
)

oci_image_build(
    name = "shell",
    layers = [":busybox_layer"],
    entrypoint = ["/bin/sh", "-c"],
    cmd = ["sleep {marker}"],
)

oci_build_layer(
    name = "long",
    base = ":shell",
    command = ["mkdir -p /out", "sleep {marker}"],
    outputs = ["/out"],
)
"#
        ),
    );
    workspace
}

/// Containers of berth `pid`: what `runc list` shows and the directories
/// of runc's state root (a runc killed while creating one leaves a
/// directory `runc list` skips).
fn containers_of(pid: u32) -> Vec<String> {
    let output = Command::new("runc").args(["list", "--quiet"]).output().unwrap();
    let prefix = format!("berth-{pid}.");
    let mut ids: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    if let Ok(entries) = std::fs::read_dir("/run/runc") {
        ids.extend(entries.flatten().filter_map(|entry| entry.file_name().into_string().ok()));
    }
    ids.sort();
    ids.dedup();
    ids.retain(|id| id.starts_with(&prefix));
    ids
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

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child,
    // not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Starts `berth ARGS` and waits until its container runs the marked sleep.
fn start_step(workspace: &TestWorkspace, args: &[&str], marker: u32) -> Child {
    let mut child = workspace.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let start = Instant::now();
    while containers_of(pid).is_empty() || sleepers(&marker.to_string()).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("berth ended before its container ran: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no container of berth {pid} ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Nothing of berth `pid` left: containers, mounts under the cache, the
/// step's processes.
fn assert_nothing_left(workspace: &TestWorkspace, pid: u32, marker: u32) {
    assert_eq!(containers_of(pid), Vec::<String>::new(), "containers left");
    assert_eq!(mounts_below(workspace.root()), Vec::<String>::new(), "mounts left");
    // Roots of user-namespaced containers are bound under /run/berth.
    let exposed = mounts_below(Path::new("/run/berth"));
    assert!(!exposed.iter().any(|point| point.starts_with(&format!("/run/berth/{pid}."))), "{exposed:?}");
    // A killed process may take a moment to be reaped by init.
    wait_until("the step's processes to go", Duration::from_secs(10), || sleepers(&marker.to_string()).is_empty());
    // Nor its cgroups (the shared parent, and a container's own that a runc
    // killed while creating it left below the parent); a watchdog may still
    // be finishing.
    let cgroups = || -> Vec<String> {
        std::fs::read_dir("/sys/fs/cgroup")
            .map(|hierarchies| {
                hierarchies
                    .flatten()
                    .flat_map(|hierarchy| std::fs::read_dir(hierarchy.path()).into_iter().flatten().flatten())
                    .chain(std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten())
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .filter(|name| name.starts_with(&format!("berth-{pid}.")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let start = Instant::now();
    while !cgroups().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cgroups(), Vec::<String>::new(), "cgroups left");
}

/// gc and clean --cache work on what is left (the issue: "Device or
/// resource busy" forever after one leaked mount).
fn assert_cache_commands_work(workspace: &TestWorkspace) {
    workspace.berth(&["--console", "none", "cache", "gc", "--max-size", "0"]).success();
    workspace.berth(&["--console", "none", "clean", "--cache"]).success();
    assert_eq!(mounts_below(workspace.root()), Vec::<String>::new());
}

#[test]
fn sigterm_during_a_step_deletes_its_container_and_exits_143() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2911;
    let workspace = workspace(marker);
    let child = start_step(&workspace, &["--console", "none", "build", "//app:long"], marker);
    let pid = child.id();
    signal(&child, libc::SIGTERM);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Interrupted by SIGTERM"));
    assert_nothing_left(&workspace, pid, marker);
    assert_cache_commands_work(&workspace);
}

#[test]
fn sigint_during_a_step_deletes_its_container_and_exits_130() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2912;
    let workspace = workspace(marker);
    let child = start_step(&workspace, &["--console", "none", "build", "//app:long"], marker);
    let pid = child.id();
    signal(&child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    assert_nothing_left(&workspace, pid, marker);
}

#[test]
fn sigterm_during_berth_run_deletes_its_container() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2913;
    let workspace = workspace(marker);
    let child = start_step(&workspace, &["--console", "none", "run", "//app:shell"], marker);
    let pid = child.id();
    signal(&child, libc::SIGTERM);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{}", String::from_utf8_lossy(&output.stderr));
    assert_nothing_left(&workspace, pid, marker);
}

#[test]
fn sigkill_during_a_step_is_swept_by_the_next_command() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2914;
    let workspace = workspace(marker);
    let mut child = start_step(&workspace, &["--console", "none", "build", "//app:long"], marker);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    // The cache commands sweep first: the dead berth's container goes, then
    // its root is unmounted and removed.
    assert_cache_commands_work(&workspace);
    assert_nothing_left(&workspace, pid, marker);
}

/// The watchdog berth started with its first container sees berth's end
/// (its pipe closes) and deletes the container and unmounts its root at
/// once: no berth command runs between the SIGKILL and the checks.
#[test]
fn sigkill_during_a_step_is_cleaned_up_by_the_watchdog() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2920;
    let workspace = workspace(marker);
    let mut child = start_step(&workspace, &["--console", "none", "build", "//app:long"], marker);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the watchdog's cleanup", Duration::from_secs(30), || {
        containers_of(pid).is_empty()
            && mounts_below(workspace.root()).is_empty()
            && sleepers(&marker.to_string()).is_empty()
    });
    // The watchdog is gone once it has finished (the cgroup is its last step).
    wait_until("the watchdog to exit", Duration::from_secs(10), || {
        let owner_arg = format!("__berth-watchdog\0{pid}.");
        std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .map(|cmdline| !String::from_utf8_lossy(&cmdline).contains(&owner_arg))
                .unwrap_or(true)
        })
    });
    assert_nothing_left(&workspace, pid, marker);
}

/// `kill -9 -PGID` (a CI runner or a shell killing the job's whole process
/// group) kills berth and runc together; the watchdog is in a session of
/// its own, so it outlives them and cleans up: no berth command runs
/// between the kill and the checks.
#[test]
fn sigkill_of_berths_process_group_is_cleaned_up_by_the_watchdog() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2921;
    let workspace = workspace(marker);
    let mut command = workspace.command(&["--console", "none", "build", "//app:long"]);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    wait_until("the step's container", Duration::from_secs(120), || {
        !containers_of(pid).is_empty() && !sleepers(&marker.to_string()).is_empty()
    });
    // The group is berth's own (process_group(0)): its pgid is its pid.
    // SAFETY: kill has no memory preconditions; the group is our child's.
    assert_eq!(unsafe { libc::kill(-(pid as i32), libc::SIGKILL) }, 0);
    child.wait().unwrap();
    wait_until("the watchdog's cleanup", Duration::from_secs(30), || {
        containers_of(pid).is_empty()
            && mounts_below(workspace.root()).is_empty()
            && sleepers(&marker.to_string()).is_empty()
    });
    assert_nothing_left(&workspace, pid, marker);
}

#[test]
fn a_build_after_sigkill_sweeps_and_rebuilds() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2915;
    let workspace = workspace(marker);
    let mut child = start_step(&workspace, &["--console", "none", "build", "//app:long"], marker);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    // Any command that opens the cache sweeps before it builds.
    workspace.berth(&["--console", "none", "build", "//app:shell"]).success();
    assert_nothing_left(&workspace, pid, marker);
    let scratch = workspace.root().join(".cache/scratch");
    let left: Vec<_> =
        std::fs::read_dir(&scratch).map(|dir| dir.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "scratch dirs of the killed berth left: {left:?}");
}

/// A seeded campaign: berth killed with SIGKILL or SIGTERM at a random
/// moment (extraction, stacking, the step itself, or `berth run`). `BERTH_KILL_LOOPS` sets
/// the count (`bench/lifecycle/kill_loop.sh` runs 50), `BERTH_KILL_SEED`
/// the seed.
#[test]
fn killed_at_random_moments_leaves_nothing() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let loops: u32 = std::env::var("BERTH_KILL_LOOPS").ok().and_then(|text| text.parse().ok()).unwrap_or(4);
    let mut seed: u64 = std::env::var("BERTH_KILL_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or(14);
    let mut random = move |bound: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    let marker = 2916;
    let workspace = workspace(marker);
    for round in 0..loops {
        // A fresh cache half of the time, so extraction is among the moments.
        if random(2) == 0 {
            workspace.berth(&["--console", "none", "clean", "--cache"]).success();
        }
        // A build step or `berth run`, one in three.
        let command: &[&str] = match random(3) {
            0 => &["--console", "none", "run", "//app:shell"],
            _ => &["--console", "none", "build", "//app:long"],
        };
        let mut child = workspace.command(command).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(50 + random(1500)));
        let kill = random(2) == 0;
        if kill {
            child.kill().unwrap();
        } else {
            signal(&child, libc::SIGTERM);
        }
        let status = child.wait().unwrap();
        if !kill {
            // 143 from the handler; a SIGTERM that came before berth
            // installed it killed berth before it started anything.
            use std::os::unix::process::ExitStatusExt;
            assert!(status.code() == Some(143) || status.signal() == Some(libc::SIGTERM), "round {round}: {status}");
        }
        workspace.berth(&["--console", "none", "cache", "gc", "--max-size", "0"]).success();
        assert_nothing_left(&workspace, pid, marker);
    }
    assert_cache_commands_work(&workspace);
}

#[test]
fn berth_run_timeout_kills_and_deletes_the_container() {
    if skip(CONTAINER) {
        return;
    }
    let _serial = serial();
    let marker = 2918;
    let workspace = workspace(marker);
    let output = workspace
        .command(&["--console", "none", "run", "--timeout", "2", "//app:shell"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`berth run` timed out after 2s while running"), "{stderr}");
    assert!(stderr.contains("hint: raise `--timeout`"), "{stderr}");
    assert!(sleepers(&marker.to_string()).is_empty());
    assert_eq!(mounts_below(workspace.root()), Vec::<String>::new());
    let zero = workspace.berth(&["--console", "none", "run", "--timeout", "0", "//app:shell"]);
    assert_eq!(zero.code, 1);
    assert!(zero.stderr.contains("`--timeout 0`"), "{}", zero.stderr);
}

/// The issue's report: gc descended into a live mount under the cache and
/// emptied what was mounted there. A directory bound under the cache's
/// scratch and run areas keeps its files through `cache gc` and
/// `clean --cache`; the mounts are detached.
#[test]
fn gc_and_clean_detach_mounts_and_never_empty_them() {
    if skip(&[Need::Root]) {
        return;
    }
    let workspace = TestWorkspace::new();
    let precious = tempfile::tempdir().unwrap();
    std::fs::write(precious.path().join("canary"), b"keep me").unwrap();
    let cache = workspace.root().join(".cache");
    for (index, command) in [["cache", "gc"], ["clean", "--cache"]].iter().enumerate() {
        let points = [cache.join("scratch/action-x/rootfs/merged"), cache.join("run/1.1-0/rootfs/merged")];
        for point in &points {
            std::fs::create_dir_all(point).unwrap();
            let status = Command::new("mount").arg("--bind").arg(precious.path()).arg(point).status().unwrap();
            assert!(status.success());
        }
        let mut args = vec!["--console", "none", command[0], command[1]];
        if index == 0 {
            args.extend(["--max-size", "0"]);
        }
        workspace.berth(&args).success();
        assert_eq!(mounts_below(workspace.root()), Vec::<String>::new(), "{command:?}");
        assert_eq!(std::fs::read(precious.path().join("canary")).unwrap(), b"keep me", "{command:?}");
        assert!(!points[0].exists(), "{command:?}: the scratch tree is removed once detached");
    }
}
