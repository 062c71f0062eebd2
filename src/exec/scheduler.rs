//! The scheduler: runs the actions an `ActionGraph` needs for the wanted
//! ones, independent actions in parallel up to `jobs`, each keyed once its
//! inputs are known, served from the action cache when possible and
//! otherwise run in a fresh scratch directory with the build's one
//! `ExecutionContext` (built from the session's `ExecSettings`). Fails fast:
//! the first failing action stops new work and names its owner.
//!
//! [`Executor::lookup`] and [`Executor::store`] are the only places it
//! reads and writes the action cache, and the remote cache
//! ([`crate::remote`]) when one is set: looked up after a local miss, fed
//! after a local run, its uploads drained before the build ends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::actions::{
    ActionContext, ActionGraph, ActionId, ActionNode, ActionResult, ExecutionContext, Input, ResolvedInput,
};
use crate::cache::{
    canonical_json, BlobRef, BlobSource, Cache, CacheError, Digest, FileDigest, FileMemo, FileStamp, KeyInput,
    KeyInputs, BERTH_FORMAT_VERSION,
};
use crate::error::Error;
use crate::exec::{ExecError, ExecSettings, Sandbox};
use crate::remote::LastRemoteBuild;
use crate::report::{Event, Reporter};

/// The number of actions run at once when `-j` is not given: the number of cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Whether an action's output came from the cache, the remote cache or from
/// running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Ran,
    Cached,
    /// A verified hit in the remote cache (now in the local action cache
    /// too; its blobs are downloaded when something reads them).
    Remote,
}

/// What the scheduler did with one action.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub id: ActionId,
    /// The action key, `sha256(canonical_json(key_inputs))`.
    pub key: Digest,
    /// Everything the key was computed from (what `berth explain` compares).
    pub key_inputs: KeyInputs,
    /// The digest that names this action's output in its dependents' keys.
    pub output_digest: Digest,
    pub status: ActionStatus,
    /// Wall time spent on the action, including key computation.
    pub duration: Duration,
}

/// The outcome of a successful execution.
#[derive(Debug, Default)]
pub struct BuildResult {
    /// The output of every action that ran or was cached: the wanted ones
    /// and everything they depend on.
    pub outputs: BTreeMap<ActionId, ActionResult>,
    pub records: BTreeMap<ActionId, ActionRecord>,
    pub duration: Duration,
}

impl BuildResult {
    pub fn ran(&self) -> usize {
        self.records.values().filter(|record| record.status == ActionStatus::Ran).count()
    }

    pub fn cached(&self) -> usize {
        self.records.values().filter(|record| record.status == ActionStatus::Cached).count()
    }

    pub fn remote(&self) -> usize {
        self.records.values().filter(|record| record.status == ActionStatus::Remote).count()
    }
}

/// Runs action graphs against one cache.
///
/// ```ignore
/// let cache = Cache::open(&cache_dir)?;                 // shared lock, before analysis
/// let memo = FileMemo::load(cache.dir(), &workspace_root)?;
/// let sandbox = LocalSandbox::new(cache.dir());
/// let settings = ExecSettings::new(registry);           // the handle analysis used
/// let executor =
///     Executor { cache: &cache, memo: &memo, sandbox: &sandbox, settings: &settings, reporter: &reporter, jobs };
/// let result = executor.run(&graph, &wanted)?;
/// ```
pub struct Executor<'a> {
    pub cache: &'a Cache,
    /// Digests of the workspace's source files; its root resolves
    /// `Input::Source` paths. Saved at the end of every run.
    pub memo: &'a FileMemo,
    pub sandbox: &'a dyn Sandbox,
    /// The machine: [`Executor::run`] builds the actions' execution
    /// context from it.
    pub settings: &'a ExecSettings,
    pub reporter: &'a dyn Reporter,
    /// At most this many actions at once (0 counts as 1).
    pub jobs: usize,
}

struct Done {
    output: ActionResult,
    digest: Digest,
}

struct State {
    ready: VecDeque<usize>,
    pending: HashMap<usize, usize>,
    done: HashMap<usize, Arc<Done>>,
    records: HashMap<usize, ActionRecord>,
    finished: usize,
    failure: Option<ExecError>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// What every action of this run sees of the machine.
    context: ExecutionContext,
    /// At most `jobs` actions run at once, however many workers wait on
    /// the remote cache.
    running: Slots,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a worker panicked while holding the scheduler state")
    }
}

/// A counting semaphore: the actions allowed to run at once.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(count: usize) -> Slots {
        Slots { free: Mutex::new(count), freed: Condvar::new() }
    }

    /// Waits for a free slot; it is given back when the guard drops.
    fn take(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().expect("slot lock");
        while *free == 0 {
            free = self.freed.wait(free).expect("slot lock");
        }
        *free -= 1;
        SlotGuard { slots: self }
    }
}

struct SlotGuard<'a> {
    slots: &'a Slots,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.slots.free.lock().expect("slot lock") += 1;
        self.slots.freed.notify_one();
    }
}

/// Workers per job when a remote cache is set: a worker mostly waits for
/// a lookup's round trips, so more of them keep more lookups in flight.
/// Each lookup makes up to two calls at once; servers limit concurrent
/// calls (BuildGrid: 5 per core), and one refused opens the breaker.
const LOOKUPS_PER_JOB: usize = 2;

/// The actions a run visits, in dependency order, with their edges.
struct Plan {
    order: Vec<usize>,
    deps: HashMap<usize, Vec<usize>>,
    dependents: HashMap<usize, Vec<usize>>,
}

/// The blobs a command publishes from a build, given every action's output:
/// they must be in the local CAS when the build ends.
pub type PublishedBlobs<'a> = &'a dyn Fn(&BTreeMap<ActionId, ActionResult>) -> Vec<BlobRef>;

impl Executor<'_> {
    /// Runs (or fetches from the cache) every action `wanted` needs.
    pub fn run(&self, graph: &ActionGraph, wanted: &[ActionId]) -> Result<BuildResult, ExecError> {
        self.run_publishing(graph, wanted, &|_| Vec::new())
    }

    /// [`Executor::run`], then the blobs `published` names that remote hits
    /// left on the server are downloaded; one the server lost makes its
    /// producer run again here.
    pub fn run_publishing(
        &self,
        graph: &ActionGraph,
        wanted: &[ActionId],
        published: PublishedBlobs<'_>,
    ) -> Result<BuildResult, ExecError> {
        let started = Instant::now();
        let plan = plan(graph, wanted)?;
        let total = plan.order.len();
        self.reporter.report(&Event::BuildStarted { actions: total });

        let ready = plan.order.iter().copied().filter(|node| plan.deps[node].is_empty()).collect();
        let pending = plan.order.iter().map(|node| (*node, plan.deps[node].len())).collect();
        let shared = Shared {
            state: Mutex::new(State {
                ready,
                pending,
                done: HashMap::new(),
                records: HashMap::new(),
                finished: 0,
                failure: None,
            }),
            changed: Condvar::new(),
            context: self.settings.context(self.cache),
            running: Slots::new(self.jobs.max(1)),
        };
        let per_job = if self.settings.remote.is_some() { LOOKUPS_PER_JOB } else { 1 };
        let workers = (self.jobs.max(1) * per_job).min(total.max(1));
        let remote_before = self.settings.remote.as_ref().map(|remote| remote.stats()).unwrap_or_default();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.worker(graph, &plan, &shared));
            }
        });
        if let Some(remote) = &self.settings.remote {
            if shared.lock().failure.is_none() {
                if let Err(error) = self.download_published(graph, &shared, remote.as_ref(), published) {
                    shared.lock().failure.get_or_insert(error);
                }
            }
            // Uploads run behind the build; it is not over before they are.
            remote.drain();
            self.report_remote_warnings();
            let stats = remote.stats().since(&remote_before);
            LastRemoteBuild { remote: remote.url().to_string(), stats }.save(self.cache.dir());
            self.reporter.report(&Event::RemoteTransferred { downloaded: stats.downloaded, uploaded: stats.uploaded });
        }
        // The memo is a hint: failing to save it only costs hashing next time.
        let _ = self.memo.save();

        let state = shared.state.into_inner().expect("workers finished");
        let count = |status| state.records.values().filter(|record| record.status == status).count();
        let (ran, cached, remote) =
            (count(ActionStatus::Ran), count(ActionStatus::Cached), count(ActionStatus::Remote));
        let duration = started.elapsed();
        let success = state.failure.is_none();
        self.reporter.report(&Event::BuildFinished { ran, cached, remote, duration, success });
        if let Some(failure) = state.failure {
            return Err(failure);
        }
        let outputs = state
            .done
            .into_iter()
            .map(|(id, done)| {
                (ActionId(id), Arc::try_unwrap(done).map_or_else(|done| done.output.clone(), |d| d.output))
            })
            .collect();
        let records = state.records.into_iter().map(|(id, record)| (ActionId(id), record)).collect();
        Ok(BuildResult { outputs, records, duration })
    }

    /// Downloads the published blobs that actions of this build produced
    /// but that are not local (remote hits). A blob the server lost makes
    /// its producer run again locally, once; blobs no action of this build
    /// produced (a lazily pulled base's layers) are left alone.
    fn download_published(
        &self,
        graph: &ActionGraph,
        shared: &Shared,
        remote: &dyn BlobSource,
        published: PublishedBlobs<'_>,
    ) -> Result<(), ExecError> {
        for round in 0..2 {
            let done: Vec<(usize, Arc<Done>)> =
                shared.lock().done.iter().map(|(id, done)| (*id, done.clone())).collect();
            let outputs = done.iter().map(|(id, done)| (ActionId(*id), done.output.clone())).collect();
            let producers: HashMap<Digest, usize> =
                done.iter().flat_map(|(id, done)| done.output.blob_refs().map(|blob| (blob.digest, *id))).collect();
            let wanted: Vec<BlobRef> = published(&outputs)
                .into_iter()
                .filter(|blob| producers.contains_key(&blob.digest) && !self.cache.cas.contains(&blob.digest))
                .collect();
            let lost = remote.fetch(&wanted, &self.cache.cas);
            self.report_remote_warnings();
            if lost.is_empty() {
                return Ok(());
            }
            let mut rerun: Vec<usize> =
                lost.iter().map(|digest| self.originator(graph, shared, producers[digest], digest)).collect();
            rerun.sort_unstable();
            rerun.dedup();
            for id in rerun {
                if round == 1 {
                    return Err(action_failed(
                        &graph[ActionId(id)],
                        Error::environment("Its output could not be downloaded from the remote cache nor rebuilt"),
                    ));
                }
                self.rebuild(graph, id, shared)?;
            }
        }
        Ok(())
    }

    fn worker(&self, graph: &ActionGraph, plan: &Plan, shared: &Shared) {
        let mut state = shared.lock();
        loop {
            if state.failure.is_some() || state.finished == plan.order.len() {
                return;
            }
            let Some(node) = state.ready.pop_front() else {
                state = shared.changed.wait(state).expect("a worker panicked while holding the scheduler state");
                continue;
            };
            drop(state);
            // A panicking action must not leave the other workers waiting
            // for a result that never comes.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_node(graph, node, shared, true)))
                    .unwrap_or_else(|panic| Err(action_failed(&graph[ActionId(node)], panic_error(panic))));
            state = shared.lock();
            match result {
                Ok((done, record)) => {
                    state.done.insert(node, done);
                    state.records.insert(node, record);
                    state.finished += 1;
                    for dependent in &plan.dependents[&node] {
                        let count = state.pending.get_mut(dependent).expect("planned");
                        *count -= 1;
                        if *count == 0 {
                            state.ready.push_back(*dependent);
                        }
                    }
                }
                Err(error) => {
                    state.failure.get_or_insert(error);
                }
            }
            shared.changed.notify_all();
        }
    }

    /// Keys, looks up and if needed runs one action whose dependencies are
    /// done, then records what it produced. `may_retry`: see
    /// [`Executor::retry_or_fail`].
    fn run_node(
        &self,
        graph: &ActionGraph,
        id: usize,
        shared: &Shared,
        may_retry: bool,
    ) -> Result<(Arc<Done>, ActionRecord), ExecError> {
        let started = Instant::now();
        let node = &graph[ActionId(id)];
        let (owner, kind) = (&node.owner, node.action.kind());
        let keyed = self.key(node, shared).map_err(|error| action_failed(node, error))?;
        if let Some((result, status)) = self.lookup(&keyed).map_err(|error| action_failed(node, error))? {
            let event = match status {
                ActionStatus::Remote => Event::ActionRemote { id: ActionId(id), owner, kind },
                _ => Event::ActionCached { id: ActionId(id), owner, kind },
            };
            self.reporter.report(&event);
            return Ok(done(id, keyed, result, status, started));
        }

        self.reporter.report(&Event::ActionStarted { id: ActionId(id), owner, kind });
        // Absolute paths only now: a cached action of 30,000 sources needs none.
        let sources = keyed.source_paths(self.memo.workspace_root());
        let slot = shared.running.take();
        let scratch = self.sandbox.create_scratch()?;
        let outcome = self.execute(&shared.context, node, &keyed, &sources, &scratch);
        let removed = self.sandbox.remove_scratch(&scratch);
        drop(slot);
        let result = match outcome {
            Ok(result) => result,
            Err(error) => return self.retry_or_fail(graph, id, shared, may_retry, &keyed, error),
        };
        removed?;
        self.check(&keyed, &sources, &result).map_err(|error| action_failed(node, error))?;
        self.store(&keyed, &result).map_err(|error| action_failed(node, error))?;
        self.reporter.report(&Event::ActionFinished { id: ActionId(id), owner, kind, duration: started.elapsed() });
        Ok(done(id, keyed, result, ActionStatus::Ran, started))
    }

    /// The action's key, from its params and its inputs' digests: source
    /// files through the memo, dependencies by their results' digests.
    fn key(&self, node: &ActionNode, shared: &Shared) -> Result<Keyed, Error> {
        let inputs = node.action.inputs();
        // Source digests on every core (a cold layer of 30,000 files reads
        // them all before its key is known), while the params are written.
        let (sources, params) = rayon::join(
            || {
                inputs
                    .par_iter()
                    .filter_map(|input| match input {
                        Input::Source(path) => Some(self.source_digest(path)),
                        Input::Action(_) => None,
                    })
                    .collect::<Vec<_>>()
            },
            || node.action.params(),
        );
        // The first failure in declaration order, whichever thread saw it.
        let sources = sources.into_iter().collect::<Result<Vec<_>, Error>>()?;
        let mut files = sources.iter();
        let mut deps = Vec::new();
        let mut key_inputs = Vec::with_capacity(inputs.len());
        for input in &inputs {
            match input {
                Input::Source(path) => {
                    let file = files.next().expect("one digest per source");
                    key_inputs.push(KeyInput::File { path: slash_path(path), digest: file.digest });
                }
                Input::Action(dep) => {
                    let done = shared.lock().done.get(&dep.0).cloned().expect("dependencies run first");
                    key_inputs.push(KeyInput::Action { output: done.digest });
                    deps.push((dep.0, done));
                }
            }
        }
        let key_inputs = KeyInputs {
            kind: node.action.kind().to_owned(),
            kind_version: node.action.kind_version(),
            berth_format_version: BERTH_FORMAT_VERSION,
            params,
            inputs: key_inputs,
        };
        Ok(Keyed { key: key_inputs.key(), key_inputs, inputs, sources, deps })
    }

    /// The one place the scheduler asks whether an action's result is
    /// known: the local action cache (a hit counts only if every blob it
    /// names is in the CAS, intact), then the remote cache, whose hit is
    /// verified, downloaded into the CAS and recorded locally. A remote that
    /// fails is a miss (and a warning), never the action's failure.
    fn lookup(&self, keyed: &Keyed) -> Result<Option<(ActionResult, ActionStatus)>, Error> {
        if let Some(result) = self.cache.ac.get(&keyed.key, &self.cache.cas)? {
            return Ok(Some((result, ActionStatus::Cached)));
        }
        let Some(remote) = &self.settings.remote else {
            return Ok(None);
        };
        // An earlier remote hit whose blobs were never needed here: its
        // bytes are still on the server, fetched when something reads them.
        if let Some(result) = self.cache.ac.get_without_blobs(&keyed.key)? {
            if !result.blob_refs().any(|blob| !self.cache.cas.contains(&blob.digest) && remote.is_lost(&blob.digest)) {
                return Ok(Some((result, ActionStatus::Cached)));
            }
        }
        let hit = remote_key_json(keyed).and_then(|key_json| remote.lookup(&key_json, &self.cache.cas));
        self.report_remote_warnings();
        let Some(result) = hit else {
            return Ok(None);
        };
        self.cache.ac.put(&keyed.key, &result)?;
        Ok(Some((result, ActionStatus::Remote)))
    }

    /// The one place the scheduler records an action's result: the local
    /// action cache, and an upload to the remote cache (in the background).
    fn store(&self, keyed: &Keyed, result: &ActionResult) -> Result<(), Error> {
        self.cache.ac.put(&keyed.key, result)?;
        if let Some((remote, key_json)) = self.settings.remote.as_ref().zip(remote_key_json(keyed)) {
            remote.upload(key_json, result, &self.cache.cas);
        }
        Ok(())
    }

    /// Hands the remote cache's warnings to the reporter.
    fn report_remote_warnings(&self) {
        if let Some(remote) = &self.settings.remote {
            for message in remote.take_warnings() {
                self.reporter.report(&Event::RemoteWarning { message: &message });
            }
        }
    }

    /// Runs the action in `scratch` with its resolved inputs; a panic
    /// becomes an internal error, so the scratch directory is still removed.
    fn execute(
        &self,
        context: &ExecutionContext,
        node: &ActionNode,
        keyed: &Keyed,
        sources: &[PathBuf],
        scratch: &Path,
    ) -> Result<ActionResult, Error> {
        let (mut files, mut paths, mut deps) = (keyed.sources.iter(), sources.iter(), keyed.deps.iter());
        let inputs = keyed
            .inputs
            .iter()
            .map(|input| match input {
                Input::Source(_) => {
                    let file = files.next().expect("one digest per source");
                    ResolvedInput::Source {
                        path: paths.next().expect("one path per source").clone(),
                        digest: file.digest,
                        size: file.size,
                        settled: file.stamp.is_settled(),
                    }
                }
                Input::Action(_) => ResolvedInput::Action(&deps.next().expect("one result per dependency").1.output),
            })
            .collect();
        let context = ActionContext::new(context, inputs, scratch);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.action.execute(&context)))
            .unwrap_or_else(|panic| Err(panic_error(panic)))
    }

    /// What a successful action left: its sources unchanged since they were
    /// hashed (their stamps), and every blob its result names in the CAS.
    fn check(&self, keyed: &Keyed, sources: &[PathBuf], result: &ActionResult) -> Result<(), Error> {
        let changed = sources
            .par_iter()
            .zip(&keyed.sources)
            .find_first(|(path, file)| FileStamp::read(path).ok() != Some(file.stamp));
        if let Some((path, _)) = changed {
            let relative = path.strip_prefix(self.memo.workspace_root()).unwrap_or(path).to_owned();
            return Err(CacheError::SourceChanged { path: relative }.into());
        }
        // A blob an input names may be passed on without its bytes (a
        // remote hit's, left on the server).
        let passed_on = |digest: &Digest| {
            keyed.deps.iter().any(|(_, done)| done.output.blob_refs().any(|blob| blob.digest == *digest))
        };
        let missing = |digest: &Digest| !self.cache.cas.contains(digest) && !passed_on(digest);
        if let Some((name, blob)) = result.blobs.iter().find(|(_, blob)| missing(&blob.digest)) {
            return Err(Error::internal(format!(
                "The action reported output blob `{name}` ({}) but did not store it in the CAS",
                blob.digest
            )));
        }
        Ok(())
    }

    /// A failed action whose failure may come from a dependency's blob
    /// that turned out missing (a corrupt blob is removed when read): with
    /// `may_retry`, rebuild those dependencies once and run it again.
    /// Otherwise the failure is the build's.
    fn retry_or_fail(
        &self,
        graph: &ActionGraph,
        id: usize,
        shared: &Shared,
        may_retry: bool,
        keyed: &Keyed,
        error: Error,
    ) -> Result<(Arc<Done>, ActionRecord), ExecError> {
        // A missing blob is damage unless it is a remote hit's that nothing
        // asked for yet; one the remote failed to serve is.
        let remote = self.settings.remote.as_ref();
        let lost = |digest: &Digest| !self.cache.cas.contains(digest) && remote.is_none_or(|r| r.is_lost(digest));
        let any_lost = keyed.deps.iter().any(|(_, done)| done.output.blob_refs().any(|blob| lost(&blob.digest)));
        if let Some(remote) = remote.filter(|_| may_retry && any_lost) {
            // Other input blobs may be lost too: find out now (the retry
            // would fetch them anyway), so that one retry suffices.
            let inputs: Vec<BlobRef> =
                keyed.deps.iter().flat_map(|(_, done)| done.output.blob_refs().copied()).collect();
            remote.fetch(&inputs, &self.cache.cas);
        }
        let mut damaged: Vec<usize> = keyed
            .deps
            .iter()
            .flat_map(|(dep, done)| {
                done.output.blob_refs().filter(|blob| lost(&blob.digest)).map(|blob| (*dep, blob.digest))
            })
            .map(|(dep, digest)| self.originator(graph, shared, dep, &digest))
            .collect();
        damaged.sort_unstable();
        damaged.dedup();
        if may_retry && !damaged.is_empty() {
            for dep in &damaged {
                let message = format!(
                    "A blob made by `{}` ({}) was lost or corrupt; it was removed and is being rebuilt or fetched again",
                    graph[ActionId(*dep)].owner,
                    graph[ActionId(*dep)].action.kind()
                );
                self.reporter.report(&Event::Warning { message: &message });
            }
            for dep in damaged {
                self.rebuild(graph, dep, shared)?;
            }
            return self.run_node(graph, id, shared, false);
        }
        let node = &graph[ActionId(id)];
        let message = error.to_string();
        let (owner, kind) = (&node.owner, node.action.kind());
        self.reporter.report(&Event::ActionFailed { id: ActionId(id), owner, kind, message: &message });
        Err(action_failed(node, error))
    }

    /// The action of this build that made blob `digest`, which action `id`
    /// names: found by following `id`'s inputs down to the one whose own
    /// inputs do not name it (`write_manifest` only passes its config on).
    /// Running that one again makes the bytes again.
    fn originator(&self, graph: &ActionGraph, shared: &Shared, mut id: usize, digest: &Digest) -> usize {
        let state = shared.lock();
        let names =
            |dep: &usize| state.done.get(dep).is_some_and(|done| done.output.blob_refs().any(|b| b.digest == *digest));
        loop {
            let next = graph[ActionId(id)].action.inputs().into_iter().find_map(|input| match input {
                Input::Action(dep) if names(&dep.0) => Some(dep.0),
                _ => None,
            });
            match next {
                Some(dep) => id = dep,
                None => return id,
            }
        }
    }

    /// The digest of a workspace-relative source file, through the memo.
    fn source_digest(&self, path: &Path) -> Result<FileDigest, Error> {
        // Keys hold workspace-relative paths only, so they do not depend on
        // where the workspace is checked out.
        if path.is_absolute() || path.components().any(|part| part == std::path::Component::ParentDir) {
            return Err(Error::internal(format!(
                "Source path `{}` is not relative to the workspace root",
                path.display()
            )));
        }
        Ok(self.memo.digest(path)?)
    }

    /// Runs a finished action again because one of its blobs was lost, and
    /// replaces its output.
    fn rebuild(&self, graph: &ActionGraph, id: usize, shared: &Shared) -> Result<(), ExecError> {
        if let Some(record) = shared.lock().records.get(&id) {
            self.cache.ac.remove(&record.key)?;
        }
        let (done, record) = self.run_node(graph, id, shared, true)?;
        let mut state = shared.lock();
        state.done.insert(id, done);
        state.records.insert(id, record);
        Ok(())
    }
}

/// An action whose inputs are known, and its key.
struct Keyed {
    inputs: Vec<Input>,
    /// One per `Input::Source`, in declaration order.
    sources: Vec<FileDigest>,
    /// One per `Input::Action`, in declaration order: its id and result.
    deps: Vec<(usize, Arc<Done>)>,
    key_inputs: KeyInputs,
    key: Digest,
}

impl Keyed {
    /// The absolute paths of the source inputs, in declaration order.
    fn source_paths(&self, workspace_root: &Path) -> Vec<PathBuf> {
        self.inputs
            .iter()
            .filter_map(|input| match input {
                Input::Source(path) => Some(workspace_root.join(path)),
                Input::Action(_) => None,
            })
            .collect()
    }
}

/// The key's canonical JSON, what the remote cache wraps: its sha256 is the
/// key. `None` (no remote traffic for this action) should the two ever
/// disagree, rather than store a result under the wrong key.
fn remote_key_json(keyed: &Keyed) -> Option<Vec<u8>> {
    let json = canonical_json(&keyed.key_inputs);
    (Digest::of(&json) == keyed.key).then_some(json)
}

/// The result of action `id` and the record of how it was obtained.
fn done(
    id: usize,
    keyed: Keyed,
    output: ActionResult,
    status: ActionStatus,
    started: Instant,
) -> (Arc<Done>, ActionRecord) {
    let record = ActionRecord {
        id: ActionId(id),
        key: keyed.key,
        key_inputs: keyed.key_inputs,
        output_digest: output.digest(),
        status,
        duration: started.elapsed(),
    };
    (Arc::new(Done { digest: record.output_digest, output }), record)
}

/// A failure of `node`, named by its owner and kind.
fn action_failed(node: &ActionNode, source: Error) -> ExecError {
    ExecError::ActionFailed { owner: node.owner.clone(), kind: node.action.kind(), source: Box::new(source) }
}

/// An action's panic as an internal error (its message kept).
fn panic_error(panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    Error::internal(format!("The action panicked: {message}"))
}

/// The path as it enters a key: workspace-relative, `/`-separated.
fn slash_path(path: &Path) -> String {
    path.components().map(|part| part.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The closure of `wanted` in dependency order; refuses ids the graph does
/// not have (an `ActionId` can be made by hand). Inputs always have lower
/// ids than their readers, so one pass from the highest wanted id down marks
/// the closure, and ascending ids are a dependency order: no cycle to look for.
fn plan(graph: &ActionGraph, wanted: &[ActionId]) -> Result<Plan, ExecError> {
    let mut needed = vec![false; graph.len()];
    for id in wanted {
        *needed.get_mut(id.0).ok_or(ExecError::UnknownAction { id: id.0 })? = true;
    }
    let top = wanted.iter().map(|id| id.0 + 1).max().unwrap_or(0);
    let mut plan = Plan { order: Vec::new(), deps: HashMap::new(), dependents: HashMap::new() };
    for id in (0..top).rev() {
        if !needed[id] {
            continue;
        }
        let mut deps = Vec::new();
        for input in graph[ActionId(id)].action.inputs() {
            if let Input::Action(dep) = input {
                if !deps.contains(&dep.0) {
                    needed[dep.0] = true;
                    deps.push(dep.0);
                }
            }
        }
        plan.dependents.entry(id).or_default();
        for dep in &deps {
            plan.dependents.entry(*dep).or_default().push(id);
        }
        plan.deps.insert(id, deps);
        plan.order.push(id);
    }
    // Ascending ids everywhere: ready actions start in registration order.
    plan.order.reverse();
    for dependents in plan.dependents.values_mut() {
        dependents.reverse();
    }
    Ok(plan)
}
