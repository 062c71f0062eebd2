//! The engine end to end with fake actions and a fake sandbox: scheduler
//! ordering, the `-j` bound, failure propagation, malformed graphs, cache
//! hits, corrupt blobs, changing sources, two builds sharing one cache at
//! once, and the build log behind `berth explain`.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth::actions::{Action, ActionContext, ActionGraph, ActionId, ActionResult, Input, ResolvedInput};
use berth::cache::{Cache, CanonicalJson, FileMemo, VerifiedReader};
use berth::error::{Error, ErrorKind, Result};
use berth::exec::{explain, ActionStatus, BuildLog, BuildResult, ExecError, ExecSettings, Executor, Reason, Sandbox};
use berth::report::NullReporter;
use berth::workspace::Label;

/// What the fake actions saw, shared by all of them.
#[derive(Debug, Default)]
struct Log {
    executed: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Log {
    fn executed(&self) -> Vec<String> {
        self.executed.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behavior {
    Succeed,
    Fail,
    Panic,
    /// Rewrites its first source input while "reading" it.
    TouchSource,
    /// Rewrites its source inputs after reading them intact: only the
    /// scheduler's stamp check after the action can see it.
    TouchSourceAfterReading,
}

/// Concatenates its name and its inputs' bytes into blob `out`.
#[derive(Debug)]
struct Step {
    name: String,
    inputs: Vec<Input>,
    log: Arc<Log>,
    behavior: Behavior,
    delay: Duration,
}

impl Action for Step {
    fn kind(&self) -> &'static str {
        "test_step"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        CanonicalJson::of(&serde_json::json!({ "name": self.name }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.inputs.clone()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let now = self.log.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.max_running.fetch_max(now, Ordering::SeqCst);
        self.log.executed.lock().unwrap().push(self.name.clone());
        std::thread::sleep(self.delay);
        let result = self.work(ctx);
        self.log.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl Step {
    fn work(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let mut bytes = self.name.clone().into_bytes();
        for input in &ctx.inputs {
            match input {
                ResolvedInput::Source { path, digest, size, .. } => {
                    if self.behavior == Behavior::TouchSource {
                        std::fs::write(path, b"changed under our feet").unwrap();
                    }
                    VerifiedReader::open(path, *digest, *size)
                        .and_then(|mut reader| reader.read_to_end(&mut bytes))
                        .map_err(|error| Error::user(error.to_string()))?;
                    if self.behavior == Behavior::TouchSourceAfterReading {
                        std::fs::write(path, b"changed after it was read").unwrap();
                    }
                }
                ResolvedInput::Action(output) => bytes.extend(ctx.read_blob(&output.blobs["out"])?),
            }
        }
        if self.behavior == Behavior::Panic {
            panic!("step `{}` panicked", self.name);
        }
        if self.behavior == Behavior::Fail {
            return Err(Error::user(format!("Step `{}` exploded", self.name)));
        }
        let blob = ctx.cas().put_bytes(&bytes)?;
        Ok(ActionResult { blobs: BTreeMap::from([("out".to_owned(), blob)]), metadata: serde_json::json!({}) })
    }
}

/// Scratch paths that are never created; tracks which are live.
#[derive(Debug, Default)]
struct FakeSandbox {
    created: AtomicUsize,
    live: Mutex<HashSet<PathBuf>>,
}

impl Sandbox for FakeSandbox {
    fn create_scratch(&self) -> Result<PathBuf, ExecError> {
        let path = PathBuf::from(format!("/fake/scratch/{}", self.created.fetch_add(1, Ordering::SeqCst)));
        self.live.lock().unwrap().insert(path.clone());
        Ok(path)
    }

    fn remove_scratch(&self, dir: &Path) -> Result<(), ExecError> {
        assert!(self.live.lock().unwrap().remove(dir), "removed a scratch dir it never made: {}", dir.display());
        Ok(())
    }
}

struct World {
    cache_dir: PathBuf,
    workspace: PathBuf,
    log: Arc<Log>,
    sandbox: FakeSandbox,
    _temp: Vec<tempfile::TempDir>,
}

impl World {
    fn new() -> World {
        let (cache_dir, workspace) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let world = World::at(cache_dir.path(), workspace.path());
        World { _temp: vec![cache_dir, workspace], ..world }
    }

    /// A world over existing directories (shared with another process).
    fn at(cache_dir: &Path, workspace: &Path) -> World {
        World {
            cache_dir: cache_dir.to_owned(),
            workspace: workspace.to_owned(),
            log: Arc::default(),
            sandbox: FakeSandbox::default(),
            _temp: Vec::new(),
        }
    }

    fn step(&self, name: &str, inputs: Vec<Input>, behavior: Behavior) -> Box<dyn Action> {
        Box::new(Step { name: name.to_owned(), inputs, log: self.log.clone(), behavior, delay: Duration::ZERO })
    }

    fn write(&self, path: &str, bytes: &[u8]) {
        std::fs::write(self.workspace.as_path().join(path), bytes).unwrap();
    }

    fn run(&self, graph: &ActionGraph, wanted: &[ActionId], jobs: usize) -> Result<BuildResult, ExecError> {
        self.run_in(&self.sandbox, graph, wanted, jobs)
    }

    fn run_in(
        &self,
        sandbox: &FakeSandbox,
        graph: &ActionGraph,
        wanted: &[ActionId],
        jobs: usize,
    ) -> Result<BuildResult, ExecError> {
        let cache = Cache::open(self.cache_dir.as_path()).unwrap();
        let memo = FileMemo::load(self.cache_dir.as_path(), self.workspace.as_path()).unwrap();
        let settings = ExecSettings::default();
        let executor =
            Executor { cache: &cache, memo: &memo, sandbox, settings: &settings, reporter: &NullReporter, jobs };
        let result = executor.run(graph, wanted);
        assert!(sandbox.live.lock().unwrap().is_empty(), "every scratch dir is removed");
        result
    }

    fn blob(&self, result: &BuildResult, id: ActionId) -> Vec<u8> {
        let cache = Cache::open(self.cache_dir.as_path()).unwrap();
        cache.cas.read_verified(&result.outputs[&id].blobs["out"].digest).unwrap()
    }

    fn ac_entries(&self) -> usize {
        std::fs::read_dir(self.cache_dir.as_path().join("ac")).unwrap().count()
    }
}

fn label(name: &str) -> Label {
    Label::new("app", name)
}

/// a.txt → layer ─┐
/// b.txt → lib  ──┴→ image
fn diamond(world: &World) -> (ActionGraph, [ActionId; 3]) {
    world.write("a.txt", b"[a]");
    world.write("b.txt", b"[b]");
    let mut graph = ActionGraph::default();
    let layer = graph.add(label("layer"), world.step("layer", vec![Input::Source("a.txt".into())], Behavior::Succeed));
    let lib = graph.add(label("lib"), world.step("lib", vec![Input::Source("b.txt".into())], Behavior::Succeed));
    let image = graph
        .add(label("image"), world.step("image", vec![Input::Action(layer), Input::Action(lib)], Behavior::Succeed));
    (graph, [layer, lib, image])
}

#[test]
fn runs_dependencies_first_and_hands_outputs_on() {
    let world = World::new();
    let (graph, [layer, lib, image]) = diamond(&world);
    let result = world.run(&graph, &[image], 4).unwrap();
    let executed = world.log.executed();
    assert_eq!(executed.len(), 3);
    assert_eq!(executed.last().unwrap(), "image");
    assert_eq!(world.blob(&result, image), b"imagelayer[a]lib[b]");
    assert_eq!(result.outputs.keys().copied().collect::<Vec<_>>(), vec![layer, lib, image]);
    assert_eq!((result.ran(), result.cached()), (3, 0));
    assert!(result.records.values().all(|record| record.status == ActionStatus::Ran));
}

#[test]
fn runs_only_what_the_wanted_actions_need() {
    let world = World::new();
    let (graph, [layer, _, _]) = diamond(&world);
    let result = world.run(&graph, &[layer], 4).unwrap();
    assert_eq!(world.log.executed(), vec!["layer"]);
    assert_eq!(result.outputs.len(), 1);
}

#[test]
fn second_run_is_all_cache_hits_and_a_changed_source_reruns_downstream_only() {
    let world = World::new();
    let (graph, [layer, lib, image]) = diamond(&world);
    let first = world.run(&graph, &[image], 2).unwrap();
    let second = world.run(&graph, &[image], 2).unwrap();
    assert_eq!(world.log.executed().len(), 3, "nothing ran the second time");
    assert_eq!((second.ran(), second.cached()), (0, 3));
    assert_eq!(first.outputs, second.outputs);
    assert_eq!(first.records[&image].key, second.records[&image].key);

    world.write("b.txt", b"[B!]");
    let third = world.run(&graph, &[image], 2).unwrap();
    assert_eq!(world.log.executed()[3..], ["lib", "image"]);
    assert_eq!(third.records[&layer].status, ActionStatus::Cached);
    assert_eq!(third.records[&lib].status, ActionStatus::Ran);
    assert_ne!(third.records[&image].key, first.records[&image].key);
    assert_eq!(world.blob(&third, image), b"imagelayer[a]lib[B!]");
}

#[test]
fn never_runs_more_than_jobs_at_once() {
    for jobs in [1, 3] {
        let world = World::new();
        let mut graph = ActionGraph::default();
        let wanted: Vec<ActionId> = (0..9)
            .map(|i| {
                let name = format!("s{i}");
                let step = Step {
                    name: name.clone(),
                    inputs: vec![],
                    log: world.log.clone(),
                    behavior: Behavior::Succeed,
                    delay: Duration::from_millis(40),
                };
                graph.add(label(&name), Box::new(step))
            })
            .collect();
        world.run(&graph, &wanted, jobs).unwrap();
        assert_eq!(world.log.executed().len(), 9);
        assert_eq!(world.log.max_running.load(Ordering::SeqCst), jobs, "independent actions use all {jobs} slots");
    }
}

#[test]
fn a_failure_names_its_owner_stops_dependents_and_caches_nothing() {
    let world = World::new();
    world.write("a.txt", b"[a]");
    let mut graph = ActionGraph::default();
    let bad = graph.add(label("bad"), world.step("bad", vec![Input::Source("a.txt".into())], Behavior::Fail));
    let after = graph.add(label("after"), world.step("after", vec![Input::Action(bad)], Behavior::Succeed));
    let error = world.run(&graph, &[after], 1).unwrap_err();
    assert_eq!(error.to_string(), "Action `test_step` of `//app:bad` failed: Step `bad` exploded");
    assert_eq!(Error::from(error).kind, ErrorKind::User);
    assert_eq!(world.log.executed(), vec!["bad"], "the dependent never runs");
    assert_eq!(world.ac_entries(), 0, "a failing action leaves no cache entry");
    // Still failing the second time: nothing was cached.
    assert!(world.run(&graph, &[after], 1).is_err());
    assert_eq!(world.log.executed(), vec!["bad", "bad"]);
}

#[test]
fn a_panicking_action_fails_the_build_instead_of_hanging_it() {
    let world = World::new();
    let mut graph = ActionGraph::default();
    let slow: Vec<ActionId> = (0..3)
        .map(|i| {
            let step = Step {
                name: format!("slow{i}"),
                inputs: vec![],
                log: world.log.clone(),
                behavior: Behavior::Succeed,
                delay: Duration::from_millis(30),
            };
            graph.add(label(&format!("slow{i}")), Box::new(step))
        })
        .collect();
    let bad = graph.add(label("bad"), world.step("bad", vec![], Behavior::Panic));
    let error = world.run(&graph, &[slow.as_slice(), &[bad]].concat(), 2).unwrap_err();
    assert_eq!(error.to_string(), "Action `test_step` of `//app:bad` failed: The action panicked: step `bad` panicked");
    assert_eq!(Error::from(error).kind, ErrorKind::Internal);
}

#[test]
fn a_missing_source_fails_its_action() {
    let world = World::new();
    let mut graph = ActionGraph::default();
    let id = graph.add(label("layer"), world.step("layer", vec![Input::Source("nope.txt".into())], Behavior::Succeed));
    let error = world.run(&graph, &[id], 1).unwrap_err().to_string();
    assert!(
        error.starts_with("Action `test_step` of `//app:layer` failed: Source file `nope.txt` not found"),
        "{error}"
    );
    assert!(world.log.executed().is_empty());
}

#[test]
fn source_paths_outside_the_workspace_are_refused() {
    let world = World::new();
    for path in ["/etc/hostname", "../outside.txt"] {
        let mut graph = ActionGraph::default();
        let id = graph.add(label("layer"), world.step("layer", vec![Input::Source(path.into())], Behavior::Succeed));
        let error = world.run(&graph, &[id], 1).unwrap_err().to_string();
        assert!(error.ends_with("is not relative to the workspace root"), "{error}");
    }
    assert!(world.log.executed().is_empty());
}

#[test]
fn a_source_that_changes_while_read_fails_the_action() {
    let world = World::new();
    world.write("a.txt", b"[a]");
    let mut graph = ActionGraph::default();
    let id = graph.add(label("layer"), world.step("layer", vec![Input::Source("a.txt".into())], Behavior::TouchSource));
    let error = world.run(&graph, &[id], 1).unwrap_err().to_string();
    assert!(error.contains("changed while the action read it"), "{error}");
    assert_eq!(world.ac_entries(), 0);
}

/// A layer packs settled sources without hashing them again: the stamp
/// check after the action is what keeps a changed file out of the cache.
#[test]
fn a_source_that_changes_after_it_was_read_fails_the_action() {
    let world = World::new();
    world.write("a.txt", b"[a]");
    let mut graph = ActionGraph::default();
    let step = world.step("layer", vec![Input::Source("a.txt".into())], Behavior::TouchSourceAfterReading);
    let id = graph.add(label("layer"), step);
    let error = world.run(&graph, &[id], 1).unwrap_err().to_string();
    assert!(error.contains("Source file `a.txt` changed while berth was reading it"), "{error}");
    assert_eq!(world.ac_entries(), 0);
}

#[test]
fn inputs_must_be_registered_first_and_unknown_ids_are_refused() {
    let world = World::new();
    let mut graph = ActionGraph::default();
    let a = graph.add(label("a"), world.step("a", vec![], Behavior::Succeed));
    // An input that is not registered yet (a forward edge, the only way to
    // a cycle) is refused when the action is added.
    for forward in [1, 7] {
        let step = world.step("b", vec![Input::Action(a), Input::Action(ActionId(forward))], Behavior::Succeed);
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| graph.add(label("b"), step)));
        let message = *refused.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(
            message,
            format!("action `test_step` of `//app:b` names input #{forward} before it was registered (as #1)")
        );
    }
    assert_eq!(graph.len(), 1, "nothing was added");

    let error = world.run(&graph, &[a, ActionId(3)], 1).unwrap_err();
    assert!(matches!(error, ExecError::UnknownAction { id: 3 }), "{error}");
    assert!(world.log.executed().is_empty(), "nothing runs for a bad request");
    world.run(&graph, &[a], 1).unwrap();
    assert_eq!(world.log.executed(), ["a"]);
}

#[test]
fn a_lost_blob_is_a_cache_miss() {
    let world = World::new();
    let (graph, [layer, _, image]) = diamond(&world);
    let first = world.run(&graph, &[image], 2).unwrap();
    let cache = Cache::open(world.cache_dir.as_path()).unwrap();
    std::fs::remove_file(cache.cas.path(&first.outputs[&layer].blobs["out"].digest)).unwrap();
    let second = world.run(&graph, &[image], 2).unwrap();
    assert_eq!(second.records[&layer].status, ActionStatus::Ran);
    assert_eq!(second.records[&image].status, ActionStatus::Cached, "same output, same key downstream");
    assert_eq!(world.blob(&second, layer), b"layer[a]");
}

#[test]
fn a_corrupt_blob_is_dropped_and_its_producer_rebuilt() {
    let world = World::new();
    let (graph, [layer, _, image]) = diamond(&world);
    let first = world.run(&graph, &[image], 2).unwrap();
    let cache = Cache::open(world.cache_dir.as_path()).unwrap();
    let layer_blob = cache.cas.path(&first.outputs[&layer].blobs["out"].digest);
    std::fs::write(&layer_blob, b"bit rot!").unwrap();
    // Force the consumer to run (and read the corrupt blob).
    std::fs::remove_file(cache.ac.path(&first.records[&image].key)).unwrap();

    let second = world.run(&graph, &[image], 2).unwrap();
    assert_eq!(second.records[&layer].status, ActionStatus::Ran, "the producer ran again");
    assert_eq!(second.records[&image].status, ActionStatus::Ran);
    assert_eq!(world.blob(&second, image), b"imagelayer[a]lib[b]");
    assert_eq!(std::fs::read(&layer_blob).unwrap(), b"layer[a]", "the blob is whole again");
}

/// A chain of 12 actions over one source file, each also reading the
/// outputs of the two before it. Returns every output and the last key.
fn chain(world: &World) -> (BTreeMap<ActionId, ActionResult>, berth::cache::Digest) {
    let mut graph = ActionGraph::default();
    let mut previous = Vec::new();
    for i in 0..12 {
        let mut inputs = vec![Input::Source("a.txt".into())];
        inputs.extend(previous.iter().rev().take(2).map(|id| Input::Action(*id)));
        let step = Step {
            name: format!("s{i}"),
            inputs,
            log: world.log.clone(),
            behavior: Behavior::Succeed,
            delay: Duration::from_millis(5),
        };
        previous.push(graph.add(label(&format!("s{i}")), Box::new(step)));
    }
    let last = *previous.last().unwrap();
    let result = world.run_in(&FakeSandbox::default(), &graph, &[last], 3).unwrap();
    (result.outputs, result.records[&last].key)
}

#[test]
fn two_builds_share_one_cache_at_once() {
    let world = World::new();
    world.write("a.txt", b"[a]");
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| chain(&world));
        let b = scope.spawn(|| chain(&world));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, b, "both builds see identical outputs and keys");
    let (again, _) = chain(&world);
    assert_eq!(again, a.0);
    assert_eq!(std::fs::read_dir(world.cache_dir.join("tmp")).unwrap().count(), 0);
}

/// The child half of `two_processes_share_one_cache_at_once`.
#[test]
#[ignore]
fn chain_in_a_child_process() {
    let (Some(cache), Some(workspace)) =
        (std::env::var_os("BERTH_TEST_CHILD_CACHE"), std::env::var_os("BERTH_TEST_CHILD_WORKSPACE"))
    else {
        return;
    };
    let world = World::at(Path::new(&cache), Path::new(&workspace));
    let (outputs, key) = chain(&world);
    let digests: Vec<String> = outputs.values().map(|output| output.blobs["out"].digest.to_string()).collect();
    // On its own line: libtest has already printed `test ... ` on this one.
    println!("\nCHILD-RESULT {key} {}", digests.join(","));
}

#[test]
fn two_processes_share_one_cache_at_once() {
    let world = World::new();
    world.write("a.txt", b"[a]");
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "engine::chain_in_a_child_process", "--nocapture", "--test-threads=1"])
            .env("BERTH_TEST_CHILD_CACHE", &world.cache_dir)
            .env("BERTH_TEST_CHILD_WORKSPACE", &world.workspace)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(), spawn()];
    let results: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            let stdout = String::from_utf8(output.stdout).unwrap();
            stdout.lines().find(|line| line.starts_with("CHILD-RESULT ")).expect("the child reports").to_owned()
        })
        .collect();
    assert_eq!(results[0], results[1], "both processes produce identical outputs and keys");
    let (outputs, key) = chain(&world);
    assert!(results[0].starts_with(&format!("CHILD-RESULT {key} ")));
    assert_eq!(outputs.len(), 12);
}

#[test]
fn explain_names_the_changed_source_and_the_dependency_it_went_through() {
    let world = World::new();
    let out = world.workspace.as_path().join("berth-out");
    let (graph, [_, _, image]) = diamond(&world);
    let first = world.run(&graph, &[image], 2).unwrap();
    BuildLog::new(&graph, &first).save(&out).unwrap();

    let (last, previous) = BuildLog::load(&out);
    assert!(previous.is_none());
    let explained = explain(&label("image"), last.as_ref().unwrap(), None).unwrap();
    assert_eq!(explained.len(), 1, "dependencies are followed only through changes");
    assert_eq!(explained[0].reasons, vec![Reason::NoPreviousBuild]);

    world.write("b.txt", b"[B!]");
    let second = world.run(&graph, &[image], 2).unwrap();
    BuildLog::new(&graph, &second).save(&out).unwrap();
    let (last, previous) = BuildLog::load(&out);
    let explained = explain(&label("image"), last.as_ref().unwrap(), previous.as_ref()).unwrap();
    let lines: Vec<String> = explained
        .iter()
        .map(|action| {
            let reasons: Vec<String> = action.reasons.iter().map(ToString::to_string).collect();
            format!("{} {:?}: {}", action.name, action.status, reasons.join("; "))
        })
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "//app:lib (test_step) Ran: source file `b.txt` changed: {} -> {}",
                berth::cache::Digest::of(b"[b]"),
                berth::cache::Digest::of(b"[B!]")
            ),
            "//app:image (test_step) Ran: dependency //app:lib (test_step) changed its output".to_owned(),
        ]
    );

    // Nothing changed: everything is cached, nothing to explain.
    let third = world.run(&graph, &[image], 2).unwrap();
    BuildLog::new(&graph, &third).save(&out).unwrap();
    let (last, previous) = BuildLog::load(&out);
    let explained = explain(&label("image"), last.as_ref().unwrap(), previous.as_ref()).unwrap();
    assert_eq!(explained.iter().map(|a| a.status).collect::<Vec<_>>(), [ActionStatus::Cached]);
    assert!(explain(&label("nope"), last.as_ref().unwrap(), None).is_none());
}

/// The shape of the no-op benchmark at the engine level (no frontend, no
/// analysis): 200 "layers" over 10 source files each, 200 "images" on top.
/// Timing only, so ignored by default:
/// `cargo test --release --test it -- --ignored --nocapture engine::noop`.
#[test]
#[ignore]
fn noop_rebuild_of_a_large_graph() {
    let world = World::new();
    let mut graph = ActionGraph::default();
    let mut wanted = Vec::new();
    for image in 0..200 {
        let dir = format!("svc{image:03}");
        std::fs::create_dir_all(world.workspace.as_path().join(&dir)).unwrap();
        let sources: Vec<Input> = (0..10)
            .map(|file| {
                let path = format!("{dir}/file{file:02}.bin");
                world.write(&path, format!("{path} contents").as_bytes());
                Input::Source(path.into())
            })
            .collect();
        let layer =
            graph.add(Label::new(&dir, "files"), world.step(&format!("{dir}-layer"), sources, Behavior::Succeed));
        wanted.push(graph.add(
            Label::new(&dir, "image"),
            world.step(&format!("{dir}-image"), vec![Input::Action(layer)], Behavior::Succeed),
        ));
    }
    // Let the sources age out of the memo's racy window.
    std::thread::sleep(Duration::from_millis(2100));
    let cold = world.run(&graph, &wanted, 2).unwrap();
    assert_eq!(cold.ran(), 400);
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let result = world.run(&graph, &wanted, 2).unwrap();
        times.push(started.elapsed());
        assert_eq!(result.cached(), 400);
    }
    times.sort();
    eprintln!("no-op rebuild of 400 actions over 2,000 files: median {:?}, min {:?}", times[5], times[0]);
}
