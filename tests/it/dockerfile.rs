//! `oci_dockerfile` end to end: the corpus under `tests/dockerfile/` built
//! by berth and by Docker's legacy builder (`DOCKER_BUILDKIT=0 docker
//! build`) on the same busybox base (berth's, `docker load`ed), compared by
//! file tree and config; what the legacy builder lacks (heredocs, secret
//! mounts) checked against expected content; reproducibility and caching
//! per instruction; and the errors of bad Dockerfiles.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::util::http::{HttpResponse, Reply, Server};
use crate::util::need::{skip, Need};
use crate::util::runc::{serial, APPLETS, BUSYBOX};
use crate::util::workspace::{copy_tree, TestWorkspace};

/// The base image's name in `bases` and in Docker.
const BASE: &str = "berth-df-base:v1";

/// What these tests need: containers for RUN, Docker for the comparison.
const NEEDS: &[Need] = &[Need::Root, Need::Runc, Need::Busybox];

/// A corpus case: its directory, `build_args`, `target`.
type Case = (&'static str, &'static [(&'static str, &'static str)], Option<&'static str>);

const CORPUS: &[Case] = &[
    ("env_workdir", &[], None),
    ("copy_globs", &[], None),
    ("dockerignore", &[], None),
    ("run_delete", &[], None),
    ("metadata", &[], None),
    ("multistage", &[], Some("test")),
    ("shell_forms", &[], None),
    ("escape", &[], None),
    ("args", &[("VERSION", "2"), ("FLAVOR", "spicy")], None),
    ("add_local", &[], None),
    ("user_run", &[], None),
    ("entrypoint_reset", &[], None),
    ("copy_from", &[], None),
    ("add_tar", &[], None),
    ("scratch", &[], None),
];

/// A workspace with the busybox base at `//base:bb` (user `app` 1000:1000
/// owning `/home/app`).
fn workspace() -> TestWorkspace {
    let ws = TestWorkspace::new();
    ws.bytes("base/busybox", &std::fs::read(BUSYBOX).expect("busybox-static is installed"));
    let applets: Vec<String> = APPLETS.iter().map(|applet| format!("\"/bin/{applet}\": \"busybox\"")).collect();
    ws.file(
        "base/BUILD.star",
        &format!(
            r#"
oci_layer(
    name = "root",
    files = {{"/bin/busybox": "busybox"}},
    symlinks = {{{applets}}},
    contents = {{
        "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        "/etc/group": "root:x:0:\napp:x:1000:\n",
    }},
    directories = ["/tmp", "/root", "/proc", "/sys", "/dev", "/etc"],
    mode = "0755",
)

oci_layer(name = "home", directories = ["/home/app"], uid = 1000, gid = 1000, mode = "0755")

oci_image_build(name = "bb", layers = [":root", ":home"], repository = "berth-df-base", tag = "v1")
"#,
            applets = applets.join(", ")
        ),
    );
    ws
}

/// Copies corpus case `name` into `cases/<name>/` with its BUILD file.
fn add_case(ws: &TestWorkspace, name: &str, build_args: &[(&str, &str)], target: Option<&str>) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfile").join(name);
    let dir = ws.path(&format!("cases/{name}"));
    copy_tree(&corpus, &dir);
    let args: Vec<String> = build_args.iter().map(|(key, value)| format!("\"{key}\": \"{value}\"")).collect();
    ws.file(
        &format!("cases/{name}/BUILD.star"),
        &format!(
            r#"oci_dockerfile(
    name = "img",
    srcs = glob(["**"]),
    bases = {{"{BASE}": "//base:bb"}},
    build_args = {{{args}}},
    target = "{target}",
    repository = "berth-df-{name}",
    tag = "berth",
)
"#,
            args = args.join(", "),
            target = target.unwrap_or(""),
        ),
    );
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).env("DOCKER_BUILDKIT", "0").output().expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Paths Docker injects into every container, and the mount points.
fn ignored(path: &str) -> bool {
    const IGNORED: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv", "dev", "proc", "sys"];
    IGNORED.iter().any(|ignored| path == *ignored || path.starts_with(&format!("{ignored}/")))
}

/// An image's file tree as `docker export` gives it: path → (type, mode,
/// owner, symlink target or contents), mtimes left out.
fn tree(image: &str) -> BTreeMap<String, String> {
    let id = docker_ok(&["create", image, "x"]).trim().to_owned();
    let export = docker(&["export", &id]);
    docker(&["rm", "-f", &id]);
    assert!(export.status.success(), "docker export: {}", String::from_utf8_lossy(&export.stderr));
    let mut entries = BTreeMap::new();
    let mut archive = tar::Archive::new(export.stdout.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string().trim_end_matches('/').to_owned();
        if ignored(&path) {
            continue;
        }
        let header = entry.header().clone();
        let detail = match header.entry_type() {
            tar::EntryType::Symlink => format!("-> {}", header.link_name().unwrap().unwrap().display()),
            tar::EntryType::Link => format!("hard link to {}", header.link_name().unwrap().unwrap().display()),
            tar::EntryType::Regular => {
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents).unwrap();
                match String::from_utf8(contents) {
                    Ok(text) if text.len() < 200 => format!("{text:?}"),
                    Ok(text) => berth::cache::Digest::of(text.as_bytes()).to_string(),
                    Err(error) => berth::cache::Digest::of(error.as_bytes()).to_string(),
                }
            }
            _ => String::new(),
        };
        let kind = format!("{:?}", header.entry_type());
        let value = format!(
            "{kind} {:o} {}:{} {detail}",
            header.mode().unwrap() & 0o7777,
            header.uid().unwrap(),
            header.gid().unwrap()
        );
        entries.insert(path, value);
    }
    entries
}

/// The config fields `docker build` sets, as `docker inspect` shows them.
fn config(image: &str) -> serde_json::Value {
    let text = docker_ok(&["inspect", "--format", "{{json .Config}}", image]);
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fields = [
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "Shell",
        "OnBuild",
    ];
    let author = docker_ok(&["inspect", "--format", "{{json .Author}}", image]);
    let mut picked = serde_json::Map::new();
    picked.insert("Author".to_owned(), serde_json::from_str(&author).unwrap());
    for field in fields {
        let value = config.get(field).cloned().unwrap_or(serde_json::Value::Null);
        // Docker writes `"WorkingDir": ""` and `"Labels": null` for unset.
        let value = match value {
            serde_json::Value::String(text) if text.is_empty() => serde_json::Value::Null,
            serde_json::Value::Object(map) if map.is_empty() => serde_json::Value::Null,
            other => other,
        };
        picked.insert(field.to_owned(), value);
    }
    serde_json::Value::Object(picked)
}

/// Builds `//base:bb` and loads it into Docker as `berth-df-base:v1`.
fn load_base(ws: &TestWorkspace) {
    ws.berth(&["export", "//base:bb", "--format", "docker-archive", "-o", "base.tar"]).success();
    docker_ok(&["load", "-i", ws.path("base.tar").to_str().unwrap()]);
}

#[test]
fn corpus_matches_docker_legacy_builder() {
    if skip(NEEDS) || skip(&[Need::Docker]) {
        return;
    }
    let _serial = serial();
    let ws = workspace();
    load_base(&ws);
    let mut failures = Vec::new();
    for (name, build_args, target) in CORPUS {
        add_case(&ws, name, build_args, *target);
        let label = format!("//cases/{name}:img");
        let archive = format!("{name}.tar");
        ws.berth(&["export", &label, "--format", "docker-archive", "-o", &archive]).success();
        docker_ok(&["load", "-i", ws.path(&archive).to_str().unwrap()]);
        let berth_image = format!("berth-df-{name}:berth");
        let docker_image = format!("berth-df-{name}:docker");
        let mut args = vec!["build".to_owned(), "-q".to_owned(), "-t".to_owned(), docker_image.clone()];
        for (key, value) in *build_args {
            args.push("--build-arg".to_owned());
            args.push(format!("{key}={value}"));
        }
        if let Some(target) = target {
            args.push("--target".to_owned());
            args.push((*target).to_owned());
        }
        args.push(ws.path(&format!("cases/{name}")).display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        let (berth_tree, docker_tree) = (tree(&berth_image), tree(&docker_image));
        for path in berth_tree.keys().chain(docker_tree.keys()).collect::<std::collections::BTreeSet<_>>() {
            if berth_tree.get(path) != docker_tree.get(path) {
                failures.push(format!(
                    "{name}: /{path}: berth {:?}, docker {:?}",
                    berth_tree.get(path),
                    docker_tree.get(path)
                ));
            }
        }
        let (berth_config, docker_config) = (config(&berth_image), config(&docker_image));
        if berth_config != docker_config {
            failures.push(format!("{name}: config\n  berth  {berth_config}\n  docker {docker_config}"));
        }
        docker(&["rmi", "-f", &berth_image, &docker_image]);
    }
    docker(&["rmi", "-f", BASE]);
    assert!(failures.is_empty(), "berth and docker differ:\n{}", failures.join("\n"));
}

/// A case written inline (berth-only features and errors).
fn inline_case(ws: &TestWorkspace, name: &str, dockerfile: &str, extra_attrs: &str) {
    ws.file(&format!("cases/{name}/Dockerfile"), dockerfile);
    ws.file(
        &format!("cases/{name}/BUILD.star"),
        &format!(
            r#"oci_dockerfile(
    name = "img",
    srcs = glob(["**"]),
    bases = {{"{BASE}": "//base:bb"}},
    {extra_attrs}
)
"#
        ),
    );
}

/// What the legacy builder cannot build (heredocs, secret mounts,
/// `--chmod`), and a directory deleted and made again (which Docker's
/// legacy builder on fuse-overlayfs gets wrong), checked by running the
/// image with `berth run`.
#[test]
fn berth_only_features_have_the_expected_contents() {
    if skip(NEEDS) {
        return;
    }
    let _serial = serial();
    let ws = workspace();
    ws.file("cases/extras/token.txt", "s3cret\n");
    ws.file("cases/extras/b.txt", "bee\n");
    inline_case(
        &ws,
        "extras",
        r#"FROM berth-df-base:v1
RUN mkdir -p /re/dir && echo old > /re/dir/old && echo keep > /re/keep
RUN rm -rf /re/dir && mkdir /re/dir && echo new > /re/dir/new
COPY --chmod=600 b.txt /private/b.txt
COPY <<EOF /etc/greeting
hello $NAME
EOF
ARG NAME=world
COPY <<"EOF" /etc/literal
hello $NAME
EOF
COPY <<EOF /etc/expanded
hello $NAME
EOF
RUN <<EOF
echo "from a heredoc" > /heredoc.txt
EOF
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /secret-size
RUN grep db.internal /etc/hosts > /hosts-line
CMD ["/bin/sh", "-c", "ls /re/dir; cat /re/keep /etc/greeting /etc/literal /etc/expanded /heredoc.txt /secret-size /hosts-line; stat -c '%a' /private/b.txt; ls /run/secrets 2>&1 || echo no-secrets-dir"]
"#,
        r#"secrets = {"token": "token.txt"}, add_hosts = {"db.internal": "10.0.0.7"}, labels = {"org.example.attr": "yes"},"#,
    );
    let output = ws.berth(&["run", "//cases/extras:img"]).success().stdout.clone();
    assert_eq!(
        output,
        "new\nkeep\nhello \nhello $NAME\nhello world\nfrom a heredoc\n7\n10.0.0.7\tdb.internal\n600\nls: /run/secrets: No such file or directory\nno-secrets-dir\n",
        "berth run output"
    );
    // The secret is in no layer.
    ws.berth(&["export", "//cases/extras:img", "--format", "oci-archive", "-o", "extras.tar"]).success();
    let archive = std::fs::read(ws.path("extras.tar")).unwrap();
    let mut found = false;
    let mut labelled = false;
    let mut outer = tar::Archive::new(archive.as_slice());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut plain).is_ok() {
            bytes = plain;
        }
        found |= bytes.windows(6).any(|window| window == b"s3cret");
        let label = br#""org.example.attr":"yes""#;
        labelled |= bytes.windows(label.len()).any(|window| window == label);
    }
    assert!(labelled, "the `labels` attribute is in the config");
    assert!(!found, "the secret's bytes are in the exported image");
}

/// Runs `berth build LABEL` and returns (digest, how many actions ran).
fn build(ws: &TestWorkspace, label: &str) -> (String, usize) {
    let output = ws.berth(&["build", label]);
    output.success();
    let digest = output.stdout.split_whitespace().nth(1).unwrap().to_owned();
    let ran = output
        .stderr
        .lines()
        .find_map(|line| line.split_once(" actions: ").map(|(_, rest)| rest.to_owned()))
        .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no summary in {}", output.stderr));
    (digest, ran)
}

/// Two checkouts with two caches and different file times build the same
/// digest; a no-op rebuild runs nothing; editing one COPY'd file reruns
/// only that COPY, the instructions after it, and the config and manifest.
#[test]
fn reproducible_and_cached_per_instruction() {
    if skip(NEEDS) {
        return;
    }
    let _serial = serial();
    let dockerfile = r#"FROM berth-df-base:v1
RUN echo first > /first
COPY a.txt /app/a.txt
RUN cat /app/a.txt > /app/copy
COPY b.txt /app/b.txt
RUN echo last > /last
"#;
    let first = workspace();
    first.file("cases/repro/a.txt", "a\n").file("cases/repro/b.txt", "b\n");
    inline_case(&first, "repro", dockerfile, "");
    let second = workspace();
    second.file("cases/repro/a.txt", "a\n").file("cases/repro/b.txt", "b\n");
    inline_case(&second, "repro", dockerfile, "");
    // Other mtimes on the second checkout: they must not matter.
    let touched = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let file = std::fs::File::options().write(true).open(second.path("cases/repro/a.txt")).unwrap();
    file.set_modified(touched).unwrap();
    let label = "//cases/repro:img";
    let (digest, _) = build(&first, label);
    let (again, _) = build(&second, label);
    assert_eq!(digest, again, "two checkouts, two caches");
    let (noop, ran) = build(&first, label);
    assert_eq!((noop.as_str(), ran), (digest.as_str(), 0), "a no-op rebuild runs no action");
    first.file("cases/repro/b.txt", "changed\n");
    let (changed, ran) = build(&first, label);
    assert_ne!(changed, digest);
    // COPY b.txt, RUN echo last, write_config, write_manifest.
    assert_eq!(ran, 4, "only the COPY of the edited file and what follows it rerun");
}

/// Builds `dockerfile` and returns berth's stderr, which must be a failure.
fn failing(name: &str, dockerfile: &str) -> String {
    let ws = workspace();
    ws.file(&format!("cases/{name}/present.txt"), "x\n");
    inline_case(&ws, name, dockerfile, "");
    let output = ws.berth(&["build", &format!("//cases/{name}:img")]);
    output.failure(1);
    output.stderr.clone()
}

#[test]
fn bad_dockerfiles_fail_at_their_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown",
            "FROM berth-df-base:v1\nRUNN echo\n",
            &["Unknown instruction `RUNN`", "cases/unknown/Dockerfile:2:1", "did you mean `RUN`?"],
        ),
        (
            "missing",
            "FROM berth-df-base:v1\nCOPY absent.txt /x\n",
            &["`absent.txt` is not in the context", "cases/missing/Dockerfile:2:1"],
        ),
        (
            "tag",
            "FROM registry.example:5000/busybox:1.36\n",
            &["names a tag, which is not reproducible", "cases/tag/Dockerfile:1:1", "berth pin"],
        ),
        (
            "secret",
            "FROM berth-df-base:v1\nRUN --mount=type=secret,id=nope true\n",
            &["Secret `nope` is not in `secrets`", "cases/secret/Dockerfile:2:1"],
        ),
        (
            "glob",
            "FROM berth-df-base:v1\nCOPY *.nothing /x/\n",
            &["`*.nothing` matches no file in the context", "cases/glob/Dockerfile:2:1"],
        ),
        (
            "url",
            "FROM berth-df-base:v1\nADD https://example.invalid/x /x\n",
            &["fetches from the network, which berth refuses", "cases/url/Dockerfile:2:1"],
        ),
    ];
    for (name, dockerfile, expected) in cases {
        let stderr = failing(name, dockerfile);
        for text in *expected {
            assert!(stderr.contains(text), "{name}: `{text}` not in:\n{stderr}");
        }
    }
}

#[test]
fn a_failing_run_shows_its_stderr_and_line() {
    if skip(NEEDS) {
        return;
    }
    let _serial = serial();
    let stderr = failing("fails", "FROM berth-df-base:v1\nRUN echo fine\nRUN echo broken-step >&2 && exit 3\n");
    for text in ["`RUN` at cases/fails/Dockerfile:3 failed with exit code 3", "broken-step"] {
        assert!(stderr.contains(text), "`{text}` not in:\n{stderr}");
    }
}

/// `FROM host/repository@sha256:...` pulls the pinned image from a real
/// registry on 127.0.0.1 (the base pushed there first) and builds the same
/// image as naming the base through `bases`.
#[test]
fn from_a_pinned_digest_pulls_the_image() {
    if skip(NEEDS) || skip(&[Need::Registry]) {
        return;
    }
    let _serial = serial();
    let registry = crate::util::registry::Registry::start();
    let host = format!("127.0.0.1:{}", registry.port);
    let ws = workspace();
    ws.file("WORKSPACE.star", &format!("registry(\"{host}\", insecure = True)\n"));
    let pushed = ws.berth(&["push", "//base:bb", "--repository", &format!("{host}/bb"), "--tag", "v1"]);
    pushed.success();
    let digest = pushed.stdout.split_whitespace().find(|word| word.starts_with("sha256:")).unwrap().to_owned();
    let body = "RUN echo pulled > /pulled\nCOPY a.txt /a.txt\nCMD [\"cat\", \"/pulled\"]\n";
    ws.file("cases/pinned/a.txt", "a\n").file("cases/named/a.txt", "a\n");
    inline_case(&ws, "pinned", &format!("FROM {host}/bb@{digest}\n{body}"), "");
    inline_case(&ws, "named", &format!("FROM {BASE}\n{body}"), "");
    let (pinned, _) = build(&ws, "//cases/pinned:img");
    let (named, _) = build(&ws, "//cases/named:img");
    assert_eq!(pinned, named, "the pulled base and the built base make the same image");
    let output = ws.berth(&["run", "//cases/pinned:img"]);
    assert_eq!(output.success().stdout, "pulled\n");
}

/// `RUN --mount=type=cache` keeps a directory across builds of the
/// workspace, outside the image: a second, different RUN sees what the
/// first left, and neither image holds the cache's files.
#[test]
fn cache_mounts_persist_outside_the_image() {
    if skip(NEEDS) {
        return;
    }
    let _serial = serial();
    let ws = workspace();
    let dockerfile = |step: &str| {
        format!(
            "FROM {BASE}\nRUN mkdir /tmp/existing && echo image > /tmp/existing/own\n\
             RUN --mount=type=cache,target=/var/cache/app echo {step} >> /var/cache/app/log && cat /var/cache/app/log | wc -l > /count\n\
             RUN --mount=type=cache,id=other,target=/tmp/existing ls /tmp/existing > /listing\n\
             CMD [\"/bin/sh\", \"-c\", \"cat /count /listing /tmp/existing/own; ls /var/cache/app 2>&1 || true\"]\n"
        )
    };
    inline_case(&ws, "cached", &dockerfile("one"), "");
    let first = ws.berth(&["run", "//cases/cached:img"]);
    assert_eq!(first.success().stdout, "1\nimage\nls: /var/cache/app: No such file or directory\n");
    inline_case(&ws, "cached", &dockerfile("two"), "");
    let second = ws.berth(&["run", "//cases/cached:img"]);
    assert_eq!(second.success().stdout, "2\nimage\nls: /var/cache/app: No such file or directory\n");
}

/// `ADD --checksum=sha256:... URL` from an HTTP server on 127.0.0.1: the
/// file lands with Docker's mode 0600; it is fetched once and then found in
/// the cache by its digest (another instruction before it, or another URL
/// for the same bytes, fetches nothing); bytes that do not match the
/// checksum are refused and cached nowhere; a server that is down fails the
/// build with the URL and the Dockerfile line.
#[test]
fn add_url_with_checksum_is_fetched_once_and_verified() {
    if skip(NEEDS) {
        return;
    }
    let _serial = serial();
    let served: &[u8] = b"fetched over http\n";
    let digest = berth::cache::Digest::of(served);
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let server = {
        let requests = requests.clone();
        Server::start(move |request| {
            requests.lock().unwrap().push(request.path().to_owned());
            match request.path() {
                "/dl/tool.txt" | "/mirror/tool.txt" => Reply::Send(HttpResponse::new(200).body(served)),
                "/moved" => Reply::Send(HttpResponse::new(307).header("Location", "/dl/tool.txt")),
                _ => Reply::Send(HttpResponse::new(404)),
            }
        })
    };
    let url = format!("http://{}", server.host());
    let ws = workspace();
    let dockerfile = |before: &str, path: &str, checksum: &berth::cache::Digest| {
        format!(
            "FROM {BASE}\n{before}ADD --checksum={checksum} {url}{path} /opt/\n\
             CMD [\"/bin/sh\", \"-c\", \"cat /opt/*; stat -c '%a %u:%g' /opt/*\"]\n"
        )
    };
    inline_case(&ws, "url", &dockerfile("", "/dl/tool.txt", &digest), "");
    let output = ws.berth(&["run", "//cases/url:img"]);
    assert_eq!(output.success().stdout, "fetched over http\n600 0:0\n");
    assert_eq!(*requests.lock().unwrap(), ["/dl/tool.txt"]);

    // The ADD reruns (an instruction before it changed), the file does not
    // come again; nor through a URL that redirects, nor from a mirror.
    inline_case(&ws, "url", &dockerfile("RUN echo before > /before\n", "/dl/tool.txt", &digest), "");
    let (first, _) = build(&ws, "//cases/url:img");
    inline_case(&ws, "url", &dockerfile("RUN echo before > /before\n", "/mirror/tool.txt", &digest), "");
    let (mirrored, ran) = build(&ws, "//cases/url:img");
    // Only the config (its history names the URL) and the manifest.
    assert_ne!(mirrored, first);
    assert_eq!(ran, 2, "the same checksum is the same layer");
    assert_eq!(*requests.lock().unwrap(), ["/dl/tool.txt"], "fetched once");

    // A redirect is followed; bytes that are not the checksum's are refused.
    let wrong = berth::cache::Digest::of(b"other bytes");
    inline_case(&ws, "url", &dockerfile("", "/moved", &wrong), "");
    let refused = ws.berth(&["build", "//cases/url:img"]);
    refused.failure(1);
    for text in ["`ADD` at cases/url/Dockerfile:2", "not the `--checksum`", &wrong.to_string(), "/moved`"] {
        assert!(refused.stderr.contains(text), "`{text}` not in:\n{}", refused.stderr);
    }
    assert_eq!(*requests.lock().unwrap(), ["/dl/tool.txt", "/moved", "/dl/tool.txt"], "not retried");
    // Nothing of it was cached: asked again, the server is asked again.
    ws.berth(&["build", "//cases/url:img"]).failure(1);
    assert_eq!(requests.lock().unwrap().len(), 5);

    // The server down: a clear error, exit 3 (the environment's fault).
    drop(server);
    let other = berth::cache::Digest::of(b"never served");
    inline_case(&ws, "url", &dockerfile("", "/dl/new.txt", &other), "");
    let down = ws.berth(&["build", "//cases/url:img"]);
    down.failure(3);
    for text in ["`ADD` at cases/url/Dockerfile:2", "Cannot fetch", &format!("{url}/dl/new.txt")] {
        assert!(down.stderr.contains(text), "`{text}` not in:\n{}", down.stderr);
    }
}

/// `ADD` of URLs that berth will not fetch fails in analysis, at the
/// instruction: no `--checksum`, a scheme other than http(s), a checksum
/// that is not sha256, a checksum with two sources.
#[test]
fn add_urls_berth_refuses() {
    let digest = berth::cache::Digest::of(b"x");
    let cases: &[(&str, String, &[&str])] = &[
        (
            "nosum",
            "FROM berth-df-base:v1\nADD http://127.0.0.1:9/x /x\n".to_owned(),
            &["berth refuses without `--checksum`", "cases/nosum/Dockerfile:2:1", "ADD --checksum=sha256:"],
        ),
        (
            "git",
            format!("FROM berth-df-base:v1\nADD --checksum={digest} git@example.invalid:a/b.git /x\n"),
            &["for anything but an http or https URL", "cases/git/Dockerfile:2:1"],
        ),
        (
            "badsum",
            "FROM berth-df-base:v1\nADD --checksum=md5:abc http://127.0.0.1:9/x /x\n".to_owned(),
            &["`--checksum=md5:abc` is not `sha256:`", "cases/badsum/Dockerfile:2:1"],
        ),
        (
            "twosrc",
            format!("FROM berth-df-base:v1\nADD --checksum={digest} http://127.0.0.1:9/x present.txt /x/\n"),
            &["takes exactly one source", "cases/twosrc/Dockerfile:2:1"],
        ),
        (
            "noname",
            format!("FROM berth-df-base:v1\nADD --checksum={digest} http://127.0.0.1:9/ /x/\n"),
            &["has no file name", "cases/noname/Dockerfile:2:1"],
        ),
    ];
    for (name, dockerfile, expected) in cases {
        let stderr = failing(name, dockerfile);
        for text in *expected {
            assert!(stderr.contains(text), "{name}: `{text}` not in:\n{stderr}");
        }
    }
}
