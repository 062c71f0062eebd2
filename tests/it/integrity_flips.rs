//! The bit-rot campaign: round after round, 1% of the CAS blobs (at least
//! one) get a byte flipped with their committed mtime put back, then one
//! command runs: `build //...`, `export` of every image, `push` of every
//! image to a fresh repository, or `run` of every image. Each round checks
//! that the command succeeded and published nothing corrupt (`berth-out/`,
//! the archives and what the registry holds are byte for byte what a sound
//! cache gives; the containers print what they should), counts the flipped
//! blobs the command detected and healed, and has `berth cache verify`
//! find exactly the flipped blobs the command did not need.
//!
//! CI runs a small seeded sample; `bench/integrity/flips.sh` runs the full
//! campaign through the ignored test below (`BERTH_FLIPS_*` variables).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use berth::cache::Digest;

use crate::util::faults::Rng;
use crate::util::need::{skip, Need};
use crate::util::registry::Registry;
use crate::util::runc::{serial, BUSYBOX, CONTAINER};
use crate::util::workspace::{Output, TestWorkspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Build,
    Export,
    Push,
    Run,
}

struct Campaign {
    images: usize,
    rounds: usize,
    commands: Vec<Command>,
    seed: u64,
}

/// Per command: rounds, blobs flipped, detected and healed by the command,
/// left for `cache verify` (which found every one of them).
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    rounds: usize,
    flipped: usize,
    healed: usize,
    found_by_verify: usize,
}

/// `images` images, each a shared busybox layer and two small layers of its
/// own, whose command prints its two files.
fn workspace(images: usize, registry: Option<&Registry>) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    let mut workspace_star = "workspace(name = \"flips\")\n".to_owned();
    if let Some(registry) = registry {
        workspace_star += &format!("registry(\"{}\", insecure = True)\n", registry.host());
    }
    workspace.file("WORKSPACE.star", &workspace_star);
    workspace.bytes("app/busybox", &fs::read(BUSYBOX).unwrap());
    let mut build = String::from(
        r#"oci_layer(
    name = "busybox_layer",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/sh": "busybox", "/bin/cat": "busybox"},
    mode = "0755",
)
"#,
    );
    for image in 0..images {
        build += &format!(
            r#"oci_layer(name = "a{image}", contents = {{"/a.txt": "a{image}\n" * {}}})
oci_layer(name = "b{image}", contents = {{"/b.txt": "b{image}\n" * {}}})
oci_image_build(
    name = "img{image}",
    layers = [":busybox_layer", ":a{image}", ":b{image}"],
    entrypoint = ["/bin/sh", "-c"],
    cmd = ["cat /a.txt /b.txt"],
    repository = "flips.invalid/img{image}",
    tag = "1",
)
"#,
            50 + image,
            70 + 3 * image
        );
    }
    workspace.file("app/BUILD.star", &build);
    workspace
}

/// What `img<image>`'s container prints.
fn expected_run_output(image: usize) -> String {
    format!("a{image}\n").repeat(50 + image) + &format!("b{image}\n").repeat(70 + 3 * image)
}

fn cas_dir(workspace: &TestWorkspace) -> PathBuf {
    workspace.path(".cache/cas/sha256")
}

fn cas_blobs(workspace: &TestWorkspace) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(cas_dir(workspace))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Flips one byte of the blob and puts the committed mtime back, as bit
/// rot does.
fn flip_keeping_mtime(path: &Path, rng: &Rng) {
    let mut bytes = fs::read(path).unwrap();
    let at = rng.below(bytes.len() as u64) as usize;
    bytes[at] ^= 1 << rng.below(8);
    fs::write(path, &bytes).unwrap();
    File::options().write(true).open(path).unwrap().set_modified(UNIX_EPOCH).unwrap();
}

/// Whether the CAS holds `name` with the bytes its name says.
fn sound(workspace: &TestWorkspace, name: &str) -> Option<bool> {
    let bytes = fs::read(cas_dir(workspace).join(name)).ok()?;
    Some(Digest::of(&bytes).hex() == name)
}

/// Every file under `dir`, by relative path, with the digest of its bytes
/// (leaving out `.berth/`, the record of the last build).
fn tree_digests(dir: &Path) -> BTreeMap<PathBuf, Digest> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|name| name == ".berth") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                let digest = Digest::of(&fs::read(&path).unwrap());
                files.insert(path.strip_prefix(dir).unwrap().to_owned(), digest);
            }
        }
    }
    files
}

/// The paths whose digests differ between two trees, or that only one has.
fn differences(now: &BTreeMap<PathBuf, Digest>, before: &BTreeMap<PathBuf, Digest>) -> Vec<PathBuf> {
    let mut paths: BTreeSet<&PathBuf> = now.keys().collect();
    paths.extend(before.keys());
    paths.into_iter().filter(|path| now.get(*path) != before.get(*path)).cloned().collect()
}

fn export_path(workspace: &TestWorkspace, image: usize) -> PathBuf {
    workspace.path(&format!("exports/img{image}.tar"))
}

fn export_all(workspace: &TestWorkspace, images: usize) -> Vec<Digest> {
    fs::create_dir_all(workspace.path("exports")).unwrap();
    (0..images)
        .map(|image| {
            let archive = export_path(workspace, image);
            let label = format!("//app:img{image}");
            let args =
                ["--console", "none", "export", &label, "--format", "oci-archive", "-o", archive.to_str().unwrap()];
            workspace.berth(&args).success();
            Digest::of(&fs::read(&archive).unwrap())
        })
        .collect()
}

/// The manifest digest `berth push` printed for each image.
fn push_all(workspace: &TestWorkspace, registry: &Registry, images: usize, round: usize) -> Vec<String> {
    (0..images)
        .map(|image| {
            let label = format!("//app:img{image}");
            let repository = format!("{}/round{round}/img{image}", registry.host());
            let output = workspace.berth(&["--console", "none", "push", &label, "--repository", &repository]);
            output.success();
            output.stdout.trim().rsplit('@').next().unwrap_or_default().to_owned()
        })
        .collect()
}

/// The blobs `cache verify` calls corrupt, and its whole answer.
fn cache_verify(workspace: &TestWorkspace) -> (BTreeSet<String>, Output) {
    let output = workspace.berth(&["cache", "verify"]);
    let corrupt = output
        .stderr
        .lines()
        .filter_map(|line| line.strip_prefix("corrupt blob `sha256:"))
        .map(|rest| rest.trim_end_matches('`').to_owned())
        .collect();
    (corrupt, output)
}

fn run(campaign: &Campaign) -> BTreeMap<&'static str, Tally> {
    let started = Instant::now();
    let needs_registry = campaign.commands.contains(&Command::Push);
    let registry = needs_registry.then(Registry::start);
    let mut workspace = workspace(campaign.images, registry.as_ref());
    let no_credentials = tempfile::tempdir().unwrap();
    workspace.env("DOCKER_CONFIG", no_credentials.path().to_str().unwrap());

    // What a sound cache publishes.
    workspace.berth(&["--console", "none", "build", "//..."]).success();
    let baseline_out = tree_digests(&workspace.path("berth-out"));
    let baseline_exports =
        if campaign.commands.contains(&Command::Export) { export_all(&workspace, campaign.images) } else { Vec::new() };
    let baseline_pushes = match &registry {
        Some(registry) => push_all(&workspace, registry, campaign.images, 0),
        None => Vec::new(),
    };

    let rng = Rng::new(campaign.seed);
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    for round in 1..=campaign.rounds {
        let command = campaign.commands[(round - 1) % campaign.commands.len()];
        fs::remove_dir_all(workspace.path("berth-out")).unwrap();
        let blobs = cas_blobs(&workspace);
        let count = blobs.len().div_ceil(100);
        let mut flipped = BTreeSet::new();
        while flipped.len() < count {
            flipped.insert(blobs[rng.below(blobs.len() as u64) as usize].clone());
        }
        for name in &flipped {
            flip_keeping_mtime(&cas_dir(&workspace).join(name), &rng);
        }

        let context = format!("round {round} ({command:?}), flipped {flipped:?}");
        match command {
            Command::Build => {
                let output = workspace.berth(&["--console", "none", "build", "//..."]);
                output.success();
                let differs = differences(&tree_digests(&workspace.path("berth-out")), &baseline_out);
                assert!(differs.is_empty(), "{context}: berth-out/ differs: {differs:?}");
            }
            Command::Export => {
                assert_eq!(export_all(&workspace, campaign.images), baseline_exports, "{context}: an archive differs");
            }
            Command::Push => {
                let registry = registry.as_ref().unwrap();
                assert_eq!(push_all(&workspace, registry, campaign.images, round), baseline_pushes, "{context}");
            }
            Command::Run => {
                let _serial = serial();
                for image in 0..campaign.images {
                    let label = format!("//app:img{image}");
                    let output = workspace.berth(&["--console", "none", "run", &label]);
                    output.success();
                    assert_eq!(output.stdout, expected_run_output(image), "{context}: img{image} printed");
                }
            }
        }

        // Detected by the command: removed and rebuilt, sound again. The
        // rest (blobs the command never needed) `cache verify` must find.
        let healed: BTreeSet<String> =
            flipped.iter().filter(|name| sound(&workspace, name) != Some(false)).cloned().collect();
        let left: BTreeSet<String> = flipped.difference(&healed).cloned().collect();
        let (found, verify) = cache_verify(&workspace);
        assert_eq!(found, left, "{context}: `cache verify` finds exactly the flipped blobs left\n{verify:?}");
        assert_eq!(verify.code, if left.is_empty() { 0 } else { 1 }, "{context}: {verify:?}");
        if !left.is_empty() {
            workspace.berth(&["cache", "verify", "--repair"]).success();
        }
        let tally = tallies.entry(name_of(command)).or_default();
        tally.rounds += 1;
        tally.flipped += flipped.len();
        tally.healed += healed.len();
        tally.found_by_verify += found.len();
    }
    for (command, tally) in &tallies {
        eprintln!(
            "flip campaign {command}: {} rounds, {} blobs flipped, {} detected and healed by the command, {} left unused and found by `cache verify`, 0 published",
            tally.rounds, tally.flipped, tally.healed, tally.found_by_verify
        );
    }
    eprintln!(
        "flip campaign: {} images, {} CAS blobs, seed {:#x}, {:.0} s",
        campaign.images,
        cas_blobs(&workspace).len(),
        campaign.seed,
        started.elapsed().as_secs_f64()
    );
    tallies
}

fn name_of(command: Command) -> &'static str {
    match command {
        Command::Build => "build",
        Command::Export => "export",
        Command::Push => "push",
        Command::Run => "run",
    }
}

#[test]
fn a_seeded_sample_of_flipped_blobs_is_detected_healed_and_never_published() {
    if skip(&[Need::Registry]) || skip(CONTAINER) {
        return;
    }
    let campaign = Campaign {
        images: 10,
        rounds: 4,
        commands: vec![Command::Build, Command::Export, Command::Push, Command::Run],
        seed: 0xf11b,
    };
    let tallies = run(&campaign);
    assert_eq!(tallies.len(), 4, "every command ran");
    assert!(tallies.values().map(|tally| tally.healed).sum::<usize>() > 0, "some flipped blob was needed and healed");
}

/// The full campaign, sized by `BERTH_FLIPS_{IMAGES,ROUNDS,SEED}`
/// (`bench/integrity/flips.sh`).
#[test]
#[ignore = "the full flip campaign: bench/integrity/flips.sh"]
fn flip_campaign() {
    if skip(&[Need::Registry]) || skip(CONTAINER) {
        return;
    }
    let setting = |name: &str, default: u64| crate::util::env_number(&format!("BERTH_FLIPS_{name}"), default);
    let campaign = Campaign {
        images: setting("IMAGES", 25) as usize,
        rounds: setting("ROUNDS", 100) as usize,
        commands: vec![Command::Build, Command::Export, Command::Push, Command::Run],
        seed: setting("SEED", 0xf11b),
    };
    run(&campaign);
}
