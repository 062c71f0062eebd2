//! The scheduler: runs the actions an `ActionGraph` needs for the wanted
//! ones, independent actions in parallel up to `jobs`, each keyed once its
//! inputs are known, served from the action cache when possible and
//! otherwise run in a fresh scratch directory. Fails fast: the first failing
//! action stops new work and names its owner.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::actions::{ActionContext, ActionGraph, ActionId, ActionResult, Input, ResolvedInput};
use crate::cache::{
    Cache, CacheError, Digest, FileDigest, FileMemo, FileStamp, KeyInput, KeyInputs, BERTH_FORMAT_VERSION,
};
use crate::error::Error;
use crate::exec::{ExecError, Sandbox};
use crate::report::{Event, Reporter};

/// The number of actions run at once when `-j` is not given: the number of cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Whether an action's output came from the cache or from running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Ran,
    Cached,
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
}

/// Runs action graphs against one cache.
///
/// ```ignore
/// let cache = Cache::open(&cache_dir)?;                 // shared lock, before analysis
/// let memo = FileMemo::load(cache.dir(), &workspace_root)?;
/// let sandbox = LocalSandbox::new(cache.dir());
/// let executor = Executor { cache: &cache, memo: &memo, sandbox: &sandbox, reporter: &reporter, jobs };
/// let result = executor.run(&graph, &wanted)?;
/// ```
pub struct Executor<'a> {
    pub cache: &'a Cache,
    /// Digests of the workspace's source files; its root resolves
    /// `Input::Source` paths. Saved at the end of every run.
    pub memo: &'a FileMemo,
    pub sandbox: &'a dyn Sandbox,
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
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a worker panicked while holding the scheduler state")
    }
}

/// The actions a run visits, in dependency order, with their edges.
struct Plan {
    order: Vec<usize>,
    deps: HashMap<usize, Vec<usize>>,
    dependents: HashMap<usize, Vec<usize>>,
}

impl Executor<'_> {
    /// Runs (or fetches from the cache) every action `wanted` needs.
    pub fn run(&self, graph: &ActionGraph, wanted: &[ActionId]) -> Result<BuildResult, ExecError> {
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
        };
        let workers = self.jobs.max(1).min(total.max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.worker(graph, &plan, &shared));
            }
        });
        // The memo is a hint: failing to save it only costs hashing next time.
        let _ = self.memo.save();

        let state = shared.state.into_inner().expect("workers finished");
        let ran = state.records.values().filter(|record| record.status == ActionStatus::Ran).count();
        let cached = state.records.len() - ran;
        let duration = started.elapsed();
        let success = state.failure.is_none();
        self.reporter.report(&Event::BuildFinished { ran, cached, duration, success });
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
                    .unwrap_or_else(|panic| {
                        let action = &graph[ActionId(node)];
                        Err(ExecError::ActionFailed {
                            owner: action.owner.clone(),
                            kind: action.action.kind(),
                            source: Box::new(panic_error(panic)),
                        })
                    });
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
    /// done. `may_retry`: if the action fails and a dependency's blob turns
    /// out missing (a corrupt blob is removed when read), rebuild that
    /// dependency once and try again.
    fn run_node(
        &self,
        graph: &ActionGraph,
        id: usize,
        shared: &Shared,
        may_retry: bool,
    ) -> Result<(Arc<Done>, ActionRecord), ExecError> {
        let started = Instant::now();
        let node = &graph[ActionId(id)];
        let kind = node.action.kind();
        let owner = &node.owner;
        let failed = |source: Error| ExecError::ActionFailed { owner: owner.clone(), kind, source: Box::new(source) };

        enum Resolved {
            Source { path: PathBuf, digest: FileDigest },
            Action { id: usize, done: Arc<Done> },
        }
        let inputs = node.action.inputs();
        // Source digests on every core (a cold layer of 30,000 files reads
        // them all before its key is known), while the params are written.
        let (digests, params) = rayon::join(
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
        let digests = digests.into_iter().collect::<Result<Vec<_>, Error>>().map_err(failed)?;
        let mut files = digests.iter();
        let mut dep_outputs = Vec::new();
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
                    dep_outputs.push(done);
                }
            }
        }
        let key_inputs = KeyInputs {
            kind: kind.to_owned(),
            kind_version: node.action.kind_version(),
            berth_format_version: BERTH_FORMAT_VERSION,
            params,
            inputs: key_inputs,
        };
        let key = key_inputs.key();
        let record = |output: &ActionResult, status| ActionRecord {
            id: ActionId(id),
            key,
            key_inputs,
            output_digest: output.digest(),
            status,
            duration: started.elapsed(),
        };

        if let Some(output) = self.cache.ac.get(&key, &self.cache.cas).map_err(|error| failed(error.into()))? {
            self.reporter.report(&Event::ActionCached { id: ActionId(id), owner, kind });
            let record = record(&output, ActionStatus::Cached);
            return Ok((Arc::new(Done { digest: record.output_digest, output }), record));
        }

        self.reporter.report(&Event::ActionStarted { id: ActionId(id), owner, kind });
        // Absolute paths only now: a cached action of 30,000 sources needs none.
        let (mut digests, mut dep_outputs) = (digests.into_iter(), dep_outputs.into_iter());
        let resolved: Vec<Resolved> = inputs
            .into_iter()
            .map(|input| match input {
                Input::Source(path) => Resolved::Source {
                    path: self.memo.workspace_root().join(path),
                    digest: digests.next().expect("one digest per source"),
                },
                Input::Action(dep) => {
                    Resolved::Action { id: dep.0, done: dep_outputs.next().expect("one output per dependency") }
                }
            })
            .collect();
        let scratch = self.sandbox.create_scratch()?;
        let inputs = resolved
            .iter()
            .map(|input| match input {
                Resolved::Source { path, digest } => ResolvedInput::Source {
                    path: path.clone(),
                    digest: digest.digest,
                    size: digest.size,
                    settled: digest.stamp.is_settled(),
                },
                Resolved::Action { done, .. } => ResolvedInput::Action(&done.output),
            })
            .collect();
        let context = ActionContext { inputs, cas: &self.cache.cas, scratch: &scratch };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.action.execute(&context)))
            .unwrap_or_else(|panic| Err(panic_error(panic)));
        drop(context);
        let removed = self.sandbox.remove_scratch(&scratch);

        let output = match result {
            Ok(output) => output,
            Err(error) => {
                let damaged: Vec<usize> = resolved
                    .iter()
                    .filter_map(|input| match input {
                        Resolved::Action { id, done }
                            if done.output.blob_refs().any(|blob| !self.cache.cas.contains(&blob.digest)) =>
                        {
                            Some(*id)
                        }
                        _ => None,
                    })
                    .collect();
                if may_retry && !damaged.is_empty() {
                    for dep in damaged {
                        self.rebuild(graph, dep, shared)?;
                    }
                    return self.run_node(graph, id, shared, false);
                }
                let message = error.to_string();
                self.reporter.report(&Event::ActionFailed { id: ActionId(id), owner, kind, message: &message });
                return Err(failed(error));
            }
        };
        removed?;
        let changed = resolved.par_iter().find_first(|input| match input {
            Resolved::Source { path, digest } => FileStamp::read(path).ok() != Some(digest.stamp),
            Resolved::Action { .. } => false,
        });
        if let Some(Resolved::Source { path, .. }) = changed {
            let relative = path.strip_prefix(self.memo.workspace_root()).unwrap_or(path).to_owned();
            return Err(failed(CacheError::SourceChanged { path: relative }.into()));
        }
        if let Some((name, blob)) = output.blobs.iter().find(|(_, blob)| !self.cache.cas.contains(&blob.digest)) {
            return Err(failed(Error::internal(format!(
                "The action reported output blob `{name}` ({}) but did not store it in the CAS",
                blob.digest
            ))));
        }
        self.cache.ac.put(&key, &output).map_err(|error| failed(error.into()))?;
        self.reporter.report(&Event::ActionFinished { id: ActionId(id), owner, kind, duration: started.elapsed() });
        let record = record(&output, ActionStatus::Ran);
        Ok((Arc::new(Done { digest: record.output_digest, output }), record))
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
