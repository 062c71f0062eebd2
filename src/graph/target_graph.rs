//! The target graph: every loaded target and source file, with an edge from
//! each target to each target its attributes name (source files are leaves,
//! reached through the targets that name them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use rustc_hash::FxHashMap;

use crate::error::{Diagnose, ErrorKind};
use crate::graph::{closest, TargetNode};
use crate::workspace::{Label, Location, Pattern};

/// A file of a package named by a label (`srcs = ["main.py"]`), not a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub label: Label,
    /// Workspace-relative path (`app/main.py`).
    pub path: String,
    /// Whether the file had an execute bit when it was loaded; layers pack
    /// it 0755 rather than 0644.
    pub executable: bool,
}

/// One node of the graph: a target or a source file.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    Target(&'a TargetNode),
    Source(&'a SourceFile),
}

impl<'a> Node<'a> {
    pub fn label(&self) -> &'a Label {
        match self {
            Node::Target(target) => &target.label,
            Node::Source(source) => &source.label,
        }
    }

    /// The rule kind, or `source file`.
    pub fn kind(&self) -> &'a str {
        match self {
            Node::Target(target) => target.kind().name(),
            Node::Source(_) => "source file",
        }
    }

    /// The labels this node depends on (none for a source file).
    pub fn deps(&self) -> &'a [Label] {
        match self {
            Node::Target(target) => &target.deps,
            Node::Source(_) => &[],
        }
    }

    /// A target's `tags` (none for a source file).
    pub fn tags(&self) -> &'a [String] {
        match self {
            Node::Target(target) => &target.common.tags,
            Node::Source(_) => &[],
        }
    }

    /// A target's `description`.
    pub fn description(&self) -> Option<&'a str> {
        match self {
            Node::Target(target) => target.common.description.as_deref(),
            Node::Source(_) => None,
        }
    }

    /// Where a target was declared; `None` for a source file.
    pub fn location(&self) -> Option<&'a Location> {
        match self {
            Node::Target(target) => Some(&target.location),
            Node::Source(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Dependency cycle: {}", render_cycle(.cycle))]
    Cycle { cycle: Vec<Label>, location: Location },
    #[error("Target `{label}` not found in `{build_file}`")]
    NoSuchTarget { label: String, build_file: String, hint: Option<String> },
    #[error("`{label}` depends on `{dep}`, which is not in the target graph")]
    MissingNode { label: String, dep: String },
    #[error("Invalid query `{query}`: {reason}")]
    Query { query: String, reason: String },
}

impl Diagnose for GraphError {
    fn kind(&self) -> ErrorKind {
        match self {
            GraphError::MissingNode { .. } => ErrorKind::Internal,
            _ => ErrorKind::User,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            GraphError::Cycle { .. } => {
                Some("a target cannot depend on itself, directly or through other targets".to_owned())
            }
            GraphError::NoSuchTarget { hint, .. } => hint.clone(),
            GraphError::Query { .. } => {
                Some("queries look like `//...`, `deps(//app:img)` or `rdeps(//..., //lib:base)`".to_owned())
            }
            GraphError::MissingNode { .. } => None,
        }
    }

    fn location(&self) -> Option<Location> {
        match self {
            GraphError::Cycle { location, .. } => Some(location.clone()),
            _ => None,
        }
    }
}

fn render_cycle(cycle: &[Label]) -> String {
    cycle.iter().chain(cycle.first()).map(Label::to_string).collect::<Vec<_>>().join(" -> ")
}

/// What loading produced: targets, source files, and the edges between them.
#[derive(Debug, Default)]
pub struct TargetGraph {
    targets: BTreeMap<Label, TargetNode>,
    source_files: BTreeMap<Label, SourceFile>,
    /// Targets that exist without being declared (`//:empty`); patterns such
    /// as `//...` leave them out, but labels and `deps()` reach them.
    implicit: BTreeSet<Label>,
    /// Targets and the edges between them. Source files are leaves with no
    /// node of their own: a glob can name 30,000 of them.
    graph: DiGraph<Label, ()>,
    index: FxHashMap<Label, NodeIndex>,
}

impl TargetGraph {
    /// Builds the graph. Every dependency must be one of the targets or
    /// source files; a dependency cycle is an error naming the cycle.
    pub fn new(
        targets: impl IntoIterator<Item = TargetNode>,
        source_files: impl IntoIterator<Item = SourceFile>,
        implicit: impl IntoIterator<Item = Label>,
    ) -> Result<TargetGraph, GraphError> {
        let mut graph = TargetGraph {
            targets: targets.into_iter().map(|target| (target.label.clone(), target)).collect(),
            source_files: source_files.into_iter().map(|source| (source.label.clone(), source)).collect(),
            implicit: implicit.into_iter().collect(),
            ..TargetGraph::default()
        };
        for label in graph.targets.keys() {
            let node = graph.graph.add_node(label.clone());
            graph.index.insert(label.clone(), node);
        }
        for target in graph.targets.values() {
            for dep in &target.deps {
                match graph.index.get(dep) {
                    // `deps` holds each label once, so no edge is added twice.
                    Some(&to) => _ = graph.graph.add_edge(graph.index[&target.label], to, ()),
                    None if graph.source_files.contains_key(dep) => {}
                    None => {
                        return Err(GraphError::MissingNode { label: target.label.to_string(), dep: dep.to_string() })
                    }
                }
            }
        }
        graph.check_acyclic()?;
        Ok(graph)
    }

    fn check_acyclic(&self) -> Result<(), GraphError> {
        // The cycle through the smallest label, found the same way each run.
        // Kosaraju's algorithm, because petgraph's walks are iterative: no stack overflow on deep graphs.
        let cyclic = kosaraju_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.graph.contains_edge(scc[0], scc[0]))
            .map(|scc| scc.into_iter().map(|node| self.graph[node].clone()).collect::<BTreeSet<_>>())
            .min_by(|a, b| a.first().cmp(&b.first()));
        let Some(members) = cyclic else { return Ok(()) };
        let start = members.first().expect("a strongly connected component is not empty").clone();
        // Breadth-first, deps in sorted order, back to `start` within the component.
        let mut previous: BTreeMap<&Label, &Label> = BTreeMap::new();
        let mut queue = VecDeque::from([&start]);
        let mut last = None;
        while let Some(label) = queue.pop_front() {
            let mut deps: Vec<&Label> = self.targets[label].deps.iter().filter(|dep| members.contains(*dep)).collect();
            deps.sort();
            if deps.contains(&&start) {
                last = Some(label);
                break;
            }
            for dep in deps {
                if !previous.contains_key(dep) && dep != &start {
                    previous.insert(dep, label);
                    queue.push_back(dep);
                }
            }
        }
        let mut cycle = vec![last.expect("a cycle leads back to its start").clone()];
        while cycle.last() != Some(&start) {
            let next = previous[cycle.last().expect("not empty")];
            cycle.push(next.clone());
        }
        cycle.reverse();
        let location = self.targets[&start].location.clone();
        Err(GraphError::Cycle { cycle, location })
    }

    /// The target named `label`.
    pub fn target(&self, label: &Label) -> Option<&TargetNode> {
        self.targets.get(label)
    }

    /// Every target, sorted by label (implicit ones included).
    /// Every target, to rewrite attribute values in place before analysis
    /// (`--stamp`); labels and edges stay as they are.
    pub fn targets_mut(&mut self) -> impl Iterator<Item = &mut TargetNode> {
        self.targets.values_mut()
    }

    pub fn targets(&self) -> impl Iterator<Item = &TargetNode> {
        self.targets.values()
    }

    /// The source file named `label`.
    pub fn source_file(&self, label: &Label) -> Option<&SourceFile> {
        self.source_files.get(label)
    }

    /// Every source file some target names, sorted by label.
    pub fn source_files(&self) -> impl Iterator<Item = &SourceFile> {
        self.source_files.values()
    }

    /// The target or source file named `label`.
    pub fn node(&self, label: &Label) -> Option<Node<'_>> {
        self.targets.get(label).map(Node::Target).or_else(|| self.source_files.get(label).map(Node::Source))
    }

    /// Whether `label` is an implicit target such as `//:empty`.
    pub fn is_implicit(&self, label: &Label) -> bool {
        self.implicit.contains(label)
    }

    /// The targets the patterns name, sorted and without repeats: what
    /// `build` works on. Wildcards leave out targets tagged `manual`, as in
    /// Bazel; a `//pkg:name` pattern naming no target is an error (with a
    /// did-you-mean).
    pub fn resolve_patterns(&self, patterns: &[Pattern]) -> Result<Vec<Label>, GraphError> {
        self.resolve(patterns, false)
    }

    /// The targets the patterns name, `manual` ones included: what `query`
    /// works on (`attr(tags, manual, //...)` finds them, as in Bazel).
    pub fn resolve_patterns_with_manual(&self, patterns: &[Pattern]) -> Result<Vec<Label>, GraphError> {
        self.resolve(patterns, true)
    }

    fn resolve(&self, patterns: &[Pattern], with_manual: bool) -> Result<Vec<Label>, GraphError> {
        let mut labels = BTreeSet::new();
        for pattern in patterns {
            match pattern {
                Pattern::Target(label) => {
                    if !self.targets.contains_key(label) {
                        return Err(self.no_such_target(label));
                    }
                    labels.insert(label.clone());
                }
                // A target named `all` wins over the wildcard, as in Bazel.
                Pattern::AllInPackage { package } if self.targets.contains_key(&Label::new(package.clone(), "all")) => {
                    labels.insert(Label::new(package.clone(), "all"));
                }
                _ => labels.extend(
                    self.targets
                        .values()
                        .filter(|target| !self.implicit.contains(&target.label) && pattern.matches(&target.label))
                        .filter(|target| with_manual || !target.common.is_manual())
                        .map(|target| target.label.clone()),
                ),
            }
        }
        Ok(labels.into_iter().collect())
    }

    /// The error for a label that names no target, with the closest target
    /// of the same package as a hint.
    pub fn no_such_target(&self, label: &Label) -> GraphError {
        let build_file = self
            .targets
            .values()
            .find(|target| target.label.package == label.package && !self.implicit.contains(&target.label))
            .map(|target| target.location.path.clone())
            .unwrap_or_else(|| {
                if label.package.is_empty() {
                    "BUILD.star".into()
                } else {
                    format!("{}/BUILD.star", label.package)
                }
            });
        let names = self.targets.keys().filter(|other| other.package == label.package).map(|other| other.name.as_str());
        let hint = closest(&label.name, names)
            .map(|name| format!("did you mean `{}`?", Label { name: name.to_owned(), ..label.clone() }));
        GraphError::NoSuchTarget { label: label.to_string(), build_file, hint }
    }

    /// The targets reachable from `roots` (them included), dependencies
    /// before their dependents: the order to analyse and build them in.
    /// Source files are left out; ties are broken by label.
    pub fn dependency_order(&self, roots: &[Label]) -> Vec<&TargetNode> {
        let mut order = Vec::new();
        let mut visited = BTreeSet::new();
        let mut roots: Vec<&Label> = roots.iter().collect();
        roots.sort();
        for root in roots {
            self.post_order(root, &mut visited, &mut order);
        }
        order
    }

    /// Depth-first post-order from `root`, with an explicit stack: a
    /// generated chain of targets can be deeper than the thread's stack.
    fn post_order<'a>(&'a self, root: &Label, visited: &mut BTreeSet<&'a Label>, order: &mut Vec<&'a TargetNode>) {
        let Some((root, _)) = self.targets.get_key_value(root) else { return };
        // `true`: the node's dependencies are done, emit it.
        let mut stack: Vec<(&'a Label, bool)> = vec![(root, false)];
        while let Some((label, done)) = stack.pop() {
            let target = &self.targets[label];
            if done {
                order.push(target);
                continue;
            }
            if !visited.insert(label) {
                continue;
            }
            stack.push((label, true));
            let mut deps: Vec<&'a Label> =
                target.deps.iter().filter_map(|dep| self.targets.get_key_value(dep).map(|(dep, _)| dep)).collect();
            // Reversed, so the smallest dependency is visited first.
            deps.sort_by(|a, b| b.cmp(a));
            stack.extend(deps.into_iter().filter(|dep| !visited.contains(*dep)).map(|dep| (dep, false)));
        }
    }

    /// Every target in the graph, dependencies first.
    pub fn topological_order(&self) -> Vec<&TargetNode> {
        let roots: Vec<Label> = self.targets.keys().cloned().collect();
        self.dependency_order(&roots)
    }

    /// `labels` and everything they depend on, transitively (source files
    /// included).
    pub fn transitive_deps(&self, labels: &BTreeSet<Label>) -> BTreeSet<Label> {
        self.reach(labels, Direction::Outgoing, None)
    }

    /// The members of `universe` that depend on one of `labels`,
    /// transitively, and the members of `labels` in `universe` themselves.
    pub fn reverse_deps(&self, universe: &BTreeSet<Label>, labels: &BTreeSet<Label>) -> BTreeSet<Label> {
        let starts = labels.iter().filter(|label| universe.contains(*label)).cloned().collect();
        self.reach(&starts, Direction::Incoming, Some(universe))
    }

    fn reach(
        &self,
        starts: &BTreeSet<Label>,
        direction: Direction,
        within: Option<&BTreeSet<Label>>,
    ) -> BTreeSet<Label> {
        let mut seen = BTreeSet::new();
        let mut admit =
            |label: &Label| within.is_none_or(|within| within.contains(label)) && seen.insert(label.clone());
        let mut stack: Vec<NodeIndex> = Vec::new();
        for label in starts {
            match self.index.get(label) {
                Some(&node) => stack.push(node),
                None if self.source_files.contains_key(label) && admit(label) && direction == Direction::Incoming => {
                    // A source file's dependents: the targets that name it.
                    let dependents = self.targets.values().filter(|target| target.deps.contains(label));
                    stack.extend(dependents.map(|target| self.index[&target.label]));
                }
                None => {}
            }
        }
        while let Some(node) = stack.pop() {
            let label = &self.graph[node];
            if !admit(label) {
                continue;
            }
            if direction == Direction::Outgoing {
                for dep in self.targets[label].deps.iter().filter(|dep| self.source_files.contains_key(*dep)) {
                    admit(dep);
                }
            }
            stack.extend(self.graph.neighbors_directed(node, direction));
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::graph::{FilesAttrs, RuleAttrs};

    /// A `files` target naming `deps`.
    pub(crate) fn node(label: &str, deps: &[&str]) -> TargetNode {
        let label = Label::parse(label, "").unwrap();
        let srcs = deps.iter().map(|dep| Label::parse(dep, "").unwrap()).collect();
        let location = Location { path: format!("{}/BUILD.star", label.package), line: 1, column: 1 };
        TargetNode::new(
            label,
            RuleAttrs::Files(Box::new(FilesAttrs { srcs, prefix: None, strip_prefix: None })),
            location,
        )
    }

    fn labels(texts: &[&str]) -> BTreeSet<Label> {
        texts.iter().map(|text| Label::parse(text, "").unwrap()).collect()
    }

    fn graph() -> TargetGraph {
        TargetGraph::new(
            [
                node("//app:img", &["//app:layer", "//:empty"]),
                node("//app:layer", &["//app:main.py", "//lib:base"]),
                node("//lib:base", &[]),
                node("//lib:other", &[]),
                node("//:empty", &[]),
            ],
            [SourceFile { label: Label::new("app", "main.py"), path: "app/main.py".into(), executable: false }],
            [Label::new("", "empty")],
        )
        .unwrap()
    }

    #[test]
    fn orders_dependencies_first() {
        let graph = graph();
        let order: Vec<String> =
            graph.dependency_order(&[Label::new("app", "img")]).iter().map(|t| t.label.to_string()).collect();
        assert_eq!(order, ["//:empty", "//lib:base", "//app:layer", "//app:img"]);
        assert_eq!(graph.topological_order().len(), 5);
    }

    #[test]
    fn patterns_skip_implicit_targets_unless_named() {
        let graph = graph();
        let all = graph.resolve_patterns(&[Pattern::parse("//...").unwrap()]).unwrap();
        assert_eq!(
            all.iter().map(Label::to_string).collect::<Vec<_>>(),
            ["//app:img", "//app:layer", "//lib:base", "//lib:other"]
        );
        assert_eq!(graph.resolve_patterns(&[Pattern::parse("//:empty").unwrap()]).unwrap(), [Label::new("", "empty")]);
        let error = graph.resolve_patterns(&[Pattern::parse("//app:imgg").unwrap()]).unwrap_err();
        assert_eq!(
            Error::from(error).to_string(),
            "Target `//app:imgg` not found in `app/BUILD.star`\nhint: did you mean `//app:img`?"
        );
    }

    #[test]
    fn deps_and_rdeps() {
        let graph = graph();
        let deps = graph.transitive_deps(&labels(&["//app:layer"]));
        assert_eq!(deps, labels(&["//app:layer", "//app:main.py", "//lib:base"]));
        let universe = graph.transitive_deps(&labels(&["//app:img", "//lib:other"]));
        assert_eq!(
            graph.reverse_deps(&universe, &labels(&["//lib:base"])),
            labels(&["//lib:base", "//app:layer", "//app:img"])
        );
    }

    #[test]
    fn orders_a_very_deep_chain_without_recursion() {
        let depth = 50_000;
        let nodes = (0..depth).map(|i| {
            let deps: Vec<String> = if i + 1 < depth { vec![format!("//chain:t{}", i + 1)] } else { vec![] };
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            node(&format!("//chain:t{i}"), &deps)
        });
        let graph = TargetGraph::new(nodes, [], []).unwrap();
        let order = graph.dependency_order(&[Label::new("chain", "t0")]);
        assert_eq!(order.len(), depth);
        assert_eq!(order[0].label.name, format!("t{}", depth - 1));
        assert_eq!(order[depth - 1].label.name, "t0");
    }

    #[test]
    fn reports_the_cycle() {
        let error =
            TargetGraph::new([node("//b:y", &["//a:x"]), node("//a:x", &["//b:y"]), node("//c:z", &["//a:x"])], [], [])
                .unwrap_err();
        let error = Error::from(error);
        assert!(
            error.to_string().starts_with("Dependency cycle: //a:x -> //b:y -> //a:x\n  --> a/BUILD.star:1:1"),
            "{error}"
        );
        let error = TargetGraph::new([node("//a:x", &["//a:x"])], [], []).unwrap_err();
        assert!(error.to_string().starts_with("Dependency cycle: //a:x -> //a:x"), "{error}");
    }
}
