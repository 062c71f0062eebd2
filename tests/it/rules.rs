//! The rule library through the public loading API: what each rule records
//! (kind, typed attributes after coercion and defaults, deps, location), as
//! the analysis phase will see it.

use crate::util::workspace::TestWorkspace;
use berth::frontend;
use berth::graph::{OciImageBuildAttrs, OciLayerAttrs, RuleAttrs, TargetGraph, TargetNode};
use berth::oci::Compression;
use berth::workspace::{Label, Pattern};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn load(workspace: &TestWorkspace, patterns: &[&str]) -> TargetGraph {
    let opened = berth::frontend::discover_workspace(workspace.root()).expect("a workspace");
    let patterns: Vec<Pattern> = patterns.iter().map(|text| Pattern::parse(text).unwrap()).collect();
    frontend::load(&opened, &patterns).unwrap_or_else(|error| panic!("{error}"))
}

fn target<'g>(graph: &'g TargetGraph, label: &str) -> &'g TargetNode {
    graph.target(&Label::parse(label, "").unwrap()).unwrap_or_else(|| panic!("{label} is not in the graph"))
}

fn image<'g>(graph: &'g TargetGraph, label: &str) -> &'g OciImageBuildAttrs {
    match &target(graph, label).attrs {
        RuleAttrs::OciImageBuild(attrs) => attrs,
        other => panic!("{label} is not an `oci_image_build`: {other:?}"),
    }
}

fn layer<'g>(graph: &'g TargetGraph, label: &str) -> &'g OciLayerAttrs {
    match &target(graph, label).attrs {
        RuleAttrs::OciLayer(attrs) => attrs,
        other => panic!("{label} is not an `oci_layer`: {other:?}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

fn labels(items: &[&str]) -> Vec<Label> {
    items.iter().map(|item| Label::parse(item, "").unwrap()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

#[test]
fn every_rule_is_available_without_a_load() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD.star",
        &format!(
            r#"
files(name = "srcs", srcs = ["a.txt"])
oci_layer(name = "layer", contents = {{"/etc/motd": "hi"}})
oci_image_empty(name = "scratch", os = "linux")
oci_image_build(name = "img", base = ":scratch", layers = [":layer"])
oci_image(name = "alias", base = ":img")
oci_build_layer(name = "built", base = ":img", command = ["make"], outputs = ["/out"])
oci_python_image(name = "py", packages = [":srcs"], python_main = "/app/main.py")
oci_image_index(name = "index", images = [":img", ":alias"])
oci_pull_image(name = "pulled", repository = "library/busybox", digest = "{DIGEST}")
oci_pull(name = "pulled2", repository = "library/busybox", sha = "{DIGEST}")
oci_pull(name = "pulled3", image = "library/busybox", digest = "{DIGEST}")
oci_pull_images(name = "multi", repository = "library/python", variants = {{"slim": "{DIGEST}"}})
deb_layer(name = "debs", debs = ["x.deb"], sha256s = ["00"])
"#
        ),
    );
    workspace.file("app/a.txt", "a").file("app/x.deb", "deb");
    let graph = load(&workspace, &["//..."]);
    let kinds: Vec<(String, String)> = graph
        .targets()
        .filter(|t| !graph.is_implicit(&t.label))
        .map(|t| (t.label.name.clone(), t.kind().name().to_owned()))
        .collect();
    let expected = [
        ("alias", "oci_image_build"),
        ("built", "oci_build_layer"),
        ("debs", "deb_layer"),
        ("img", "oci_image_build"),
        ("index", "oci_image_index"),
        ("layer", "oci_layer"),
        ("multi#slim", "oci_pull_image"),
        ("pulled", "oci_pull_image"),
        ("pulled2", "oci_pull_image"),
        ("pulled3", "oci_pull_image"),
        ("py", "oci_image_build"),
        ("scratch", "oci_image_empty"),
        ("srcs", "files"),
    ];
    assert_eq!(kinds, expected.map(|(name, kind)| (name.to_owned(), kind.to_owned())));
    let RuleAttrs::OciPullImage(pull) = &target(&graph, "//app:pulled3").attrs else {
        panic!("`oci_pull` declares an `oci_pull_image`")
    };
    assert_eq!(pull.repository, "library/busybox", "rules_oci's `image` is the repository");
    let sources: Vec<String> = graph.source_files().map(|source| source.path.clone()).collect();
    assert_eq!(sources, ["app/a.txt", "app/x.deb"]);
}

#[test]
fn explicit_load_of_the_library_and_rules_in_star_files() {
    let workspace = TestWorkspace::new();
    workspace
        .file("tools/defs.star", "def layer(name):\n    oci_layer(name = name, contents = {\"/pkg\": package_name()})\n")
        .file(
            "app/BUILD.star",
            "load(\"@berth//rules:defs.star\", \"oci_image_build\")\nload(\"//tools:defs.star\", \"layer\")\n\nlayer(name = \"l\")\noci_image_build(name = \"img\", layers = [\":l\"])\n",
        );
    let graph = load(&workspace, &["//app:img"]);
    assert_eq!(layer(&graph, "//app:l").contents, pairs(&[("/pkg", "app")]));
    // The location is the call in the BUILD file, not the line in the macro.
    assert_eq!(target(&graph, "//app:l").location.to_string(), "app/BUILD.star:4:1");
    assert_eq!(target(&graph, "//app:img").location.to_string(), "app/BUILD.star:5:1");
}

#[test]
fn a_label_named_twice_is_one_dep() {
    let workspace = TestWorkspace::new();
    workspace.file("app/a.txt", "a").file(
        "app/BUILD.star",
        "files(name = 'f', srcs = ['a.txt'])
oci_image_build(name = 'img', packages = [':f', ':f'], layers = [':f'])
",
    );
    let graph = load(&workspace, &["//app:img"]);
    assert_eq!(target(&graph, "//app:img").deps, [Label::new("", "empty"), Label::new("app", "f")]);
}

#[test]
fn defaults_are_filled_and_deps_collected() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD.star", "oci_image_build(name = \"img\", visibility = [\"//visibility:public\"])\noci_build_layer(name = \"b\", base = \":img\", outputs = [\"/o\"])\n");
    let graph = load(&workspace, &["//..."]);
    let attrs = image(&graph, "//app:img");
    assert_eq!(attrs.base, Label::new("", "empty"));
    assert_eq!(attrs.compression, Compression::Gzip);
    assert_eq!(attrs.packages, []);
    assert_eq!(attrs.env.pairs(), []);
    assert_eq!(attrs.workdir, None);
    assert_eq!(target(&graph, "//app:img").deps, [Label::new("", "empty")]);
    let build = target(&graph, "//app:b");
    let RuleAttrs::OciBuildLayer(step) = &build.attrs else { panic!("{build:?} is not an `oci_build_layer`") };
    assert_eq!(step.timeout, 600);
    assert!(!step.network);
    assert_eq!(
        graph
            .dependency_order(std::slice::from_ref(&build.label))
            .iter()
            .map(|t| t.label.to_string())
            .collect::<Vec<_>>(),
        ["//:empty", "//app:img", "//app:b"]
    );
}

#[test]
fn python_image_entrypoint_prefers_the_last_pex() {
    let workspace = TestWorkspace::new();
    workspace
        .file(
            "app/BUILD.star",
            r#"
oci_python_image(name = "pex", packages = [":deps.pex", "//app:srcs", ":server.pex"], python_main = "main.py")
oci_python_image(name = "main", packages = [":srcs"], python_main = "/app/main.py")
oci_python_image(name = "explicit", packages = [":server.pex"], entrypoint = ["/bin/sh"])
files(name = "srcs", srcs = ["main.py"])
"#,
        )
        .file("app/deps.pex", "")
        .file("app/server.pex", "")
        .file("app/main.py", "");
    let graph = load(&workspace, &["//app:all"]);
    let pex = image(&graph, "//app:pex");
    assert_eq!(pex.entrypoint, strings(&["/app/server.pex"]));
    assert_eq!(pex.python_main.as_deref(), Some("main.py"));
    assert_eq!(pex.packages, labels(&["//app:deps.pex", "//app:srcs", "//app:server.pex"]));
    assert_eq!(image(&graph, "//app:main").entrypoint, strings(&["python3", "/app/main.py"]));
    assert_eq!(image(&graph, "//app:explicit").entrypoint, strings(&["/bin/sh"]));
}

#[test]
fn tars_are_accepted_as_layers() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD.star",
        "oci_layer(name = \"a\")\noci_layer(name = \"b\")\noci_image(name = \"img\", layers = [\":a\"], tars = [\":b\"])\n",
    );
    let graph = load(&workspace, &["//app:img"]);
    assert_eq!(image(&graph, "//app:img").layers, labels(&["//app:a", "//app:b"]));
}

#[test]
fn coercions_of_mode_env_and_label_dicts() {
    let workspace = TestWorkspace::new();
    workspace
        .file(
            "app/BUILD.star",
            r#"
oci_layer(name = "l", mode = "0755", files = {"/bin/tool": "tool.sh"}, uid = 1000)
oci_image_build(name = "img", env = ["PATH=/bin", "LANG=C.UTF-8"], layers = [":l"])
"#,
        )
        .file("app/tool.sh", "#!/bin/sh\n");
    let graph = load(&workspace, &["//app:all"]);
    let attrs = layer(&graph, "//app:l");
    assert_eq!((attrs.mode, attrs.uid), (Some(0o755), Some(1000)));
    assert_eq!(attrs.files, [("/bin/tool".to_owned(), Label::new("app", "tool.sh"))]);
    assert_eq!(target(&graph, "//app:l").deps, [Label::new("app", "tool.sh")]);
    assert_eq!(image(&graph, "//app:img").env.pairs(), pairs(&[("PATH", "/bin"), ("LANG", "C.UTF-8")]));
}

#[test]
fn glob_in_a_macro_uses_the_calling_package() {
    let workspace = TestWorkspace::new();
    workspace
        .file(
            "tools/defs.star",
            "def all_files(name):\n    files(name = name, srcs = glob([\"**/*.txt\"], exclude = [\"skip/**\"]))\n",
        )
        .file("app/BUILD.star", "load(\"//tools:defs.star\", \"all_files\")\nall_files(name = \"txt\")\n")
        .file("app/b.txt", "")
        .file("app/a.txt", "")
        .file("app/nested/c.txt", "")
        .file("app/skip/d.txt", "")
        .file("app/sub/BUILD.star", "")
        .file("app/sub/e.txt", "");
    let graph = load(&workspace, &["//app:txt"]);
    let RuleAttrs::Files(files) = &target(&graph, "//app:txt").attrs else { panic!("`files` declares `files`") };
    assert_eq!(files.srcs, labels(&["//app:a.txt", "//app:b.txt", "//app:nested/c.txt"]));
}

#[test]
fn dialect_has_types_f_strings_and_keyword_only_arguments() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD.star",
        "def layer(*, name: str, port: int = 80) -> None:\n    oci_layer(name = name, contents = {\"/port\": f\"{port}\"})\n\nlayer(name = \"l\")\n",
    );
    let graph = load(&workspace, &["//..."]);
    assert_eq!(layer(&graph, "//app:l").contents, pairs(&[("/port", "80")]));
}

#[test]
fn workspace_settings_are_read() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "WORKSPACE.star",
        "workspace(name = \"w\")\nregistry(\"127.0.0.1:5000\", insecure = True)\nsource_date_epoch(42)\n",
    );
    let opened = berth::frontend::discover_workspace(&workspace.path("")).unwrap();
    assert_eq!(opened.settings.name.as_deref(), Some("w"));
    assert_eq!(opened.settings.source_date_epoch, Some(42));
    assert!(opened.settings.registries[0].insecure);
}

#[test]
fn deps_follow_the_schema_not_the_argument_order() {
    let workspace = TestWorkspace::new();
    workspace.file(
        "app/BUILD.star",
        "oci_layer(name = \"l\")\noci_image_empty(name = \"e\")\noci_image_build(name = \"a\", base = \":e\", layers = [\":l\"])\noci_image_build(name = \"b\", layers = [\":l\"], base = \":e\")\n",
    );
    let graph = load(&workspace, &["//app:all"]);
    assert_eq!(target(&graph, "//app:a").deps, [Label::new("app", "e"), Label::new("app", "l")]);
    assert_eq!(target(&graph, "//app:a").deps, target(&graph, "//app:b").deps);
}
