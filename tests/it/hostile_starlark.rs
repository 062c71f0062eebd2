//! Hostile BUILD and `.star` files through the real binary: deep values,
//! huge strings and lists, long loops, deep calls and `load` chains. Each
//! ends with a clear error naming the file, exit 1, and never an abort (a
//! native stack overflow or a failed allocation would be exit 134). Long
//! loops run with `--load-timeout 2`, so the suite stays fast.

use std::time::{Duration, Instant};

use crate::util::workspace::TestWorkspace;

/// A hostile case: its `app/BUILD.star`, extra files, and a piece of the
/// error it must end with.
struct Case {
    name: &'static str,
    build: String,
    files: Vec<(String, String)>,
    expect: &'static str,
    /// `--load-timeout`: 2 s for the long loops; generous for the rest, so a
    /// busy machine does not turn their error into a timeout.
    load_timeout: &'static str,
}

fn case(name: &'static str, build: &str, expect: &'static str) -> Case {
    let load_timeout = if expect.starts_with("error: Evaluating `app/BUILD.star` took") { "2" } else { "60" };
    Case { name, build: build.to_owned(), files: Vec::new(), expect, load_timeout }
}

/// `x` nested `depth` levels deep with `wrap` (`[x]`, `(x,)`, ...).
fn deep(wrap: &str, depth: usize) -> String {
    format!("x = None\nfor i in range({depth}):\n    x = {wrap}\n")
}

fn cases() -> Vec<Case> {
    let too_deep = "nests more than 100 levels deep";
    let recursion = "Too many recursion levels";
    // The step budget or the 2 s deadline, whichever a busy machine hits first.
    let timeout = "error: Evaluating `app/BUILD.star` took";
    let steps = "error: Evaluating `app/BUILD.star` took";
    let allocation = "tried to allocate";
    // A refused allocation, or the loader's memory budget, whichever comes first.
    let memory = "error: Evaluating `app/BUILD.star`";
    let calls = "nested calls";
    let mut cases = vec![
        case("json_encode_deep_list", &(deep("[x]", 1500) + "json.encode(x)\n"), too_deep),
        case("json_encode_very_deep_list", &(deep("[x]", 200000) + "json.encode(x)\n"), too_deep),
        case("json_encode_deep_tuple", &(deep("(x,)", 5000) + "json.encode(x)\n"), too_deep),
        case("json_encode_deep_dict", &(deep("{'k': x}", 5000) + "json.encode(x)\n"), too_deep),
        case("json_encode_deep_struct", &(deep("struct(a = x)", 5000) + "json.encode(x)\n"), too_deep),
        case("json_encode_deep_dict_keys", &(deep("{'k': [x, (1, x)]}", 3000) + "json.encode(x)\n"), too_deep),
        case(
            "json_encode_deep_mixed",
            &(deep("struct(a = [{'b': (x,)}])", 2000) + "json.encode({'top': x})\n"),
            too_deep,
        ),
        case("json_decode_deep_text", "json.decode('[' * 100000 + ']' * 100000)\n", "recursion limit exceeded"),
        case("compare_deep_lists", &(deep("[x]", 100000) + "y = x\nz = (x == [y])\n"), recursion),
        case("order_deep_lists", &(deep("[x]", 100000) + "z = x < [x]\n"), recursion),
        case("compare_deep_dicts", &(deep("{'k': x}", 100000) + "z = x == {'k': x}\n"), recursion),
        case("sort_deep_lists", &(deep("[x]", 100000) + "z = sorted([x, [x]])\n"), recursion),
        case("membership_of_deep_lists", &(deep("[x]", 100000) + "z = [x] in [[[x]]]\n"), recursion),
        case("huge_string_repetition", "s = 'x' * ((1 << 30) + 1)\n", allocation),
        case("huge_list_repetition", "l = [0] * (1 << 28)\n", allocation),
        case("huge_list_of_a_range", "l = list(range(1 << 30))\n", memory),
        case("huge_join", "s = ','.join(['abc'] * 10) * (1 << 30)\n", allocation),
        case("string_doubling", "s = 'x'\nfor i in range(40):\n    s = s + s\n", memory),
        case(
            "long_loop_of_string_ops",
            "s = 'x' * 1000000\nfor i in range(900000):\n    t = s.replace('x', 'yy')\n",
            timeout,
        ),
        case("long_loop_of_splits", "s = 'a b ' * 500000\nfor i in range(900000):\n    t = s.split(' ')\n", timeout),
        case(
            "nested_loops_past_the_step_budget",
            "for i in range(2000):\n    for j in range(2000):\n        pass\n",
            steps,
        ),
        case("comprehension_past_the_step_budget", "d = {i: i for i in range(10000000)}\n", steps),
        case("function_called_in_a_loop", "def f(i):\n    return i\n[f(i) for i in range(5000000)]\n", steps),
        case("endless_recursion", "def f(n):\n    return f(n + 1)\nf(0)\n", calls),
        case("mutual_recursion", "def f(n):\n    return g(n)\ndef g(n):\n    return f(n)\nf(0)\n", calls),
        case("deep_brackets_in_source", &format!("x = {}{}\n", "[".repeat(5000), "]".repeat(5000)), "nests too deeply"),
        case("deep_operators_in_source", &format!("x = {}1\n", "-".repeat(5000)), "nests too deeply"),
        case("deep_indentation", &format!("if True:\n{}pass\n", " ".repeat(5000)), "nests too deeply"),
        case("deep_value_as_an_attribute", &(deep("[x]", 5000) + "files(name = 'x', srcs = x)\n"), "srcs"),
        case("deep_struct_equality", &(deep("struct(a = x)", 100000) + "z = x == struct(a = x)\n"), recursion),
    ];
    // A chain of `.star` files loading each other, deeper than berth takes.
    let mut chain = case("deep_load_chain", "load('//lib:f0.star', 'v')\n", "Load chain deeper than 500 files");
    chain.files.push(("lib/BUILD.star".into(), String::new()));
    for i in 0..600 {
        chain.files.push((format!("lib/f{i}.star"), format!("load('//lib:f{}.star', 'v')\n", i + 1)));
    }
    chain.files.push(("lib/f600.star".into(), "v = 1\n".into()));
    cases.push(chain);
    // A load cycle.
    let mut cycle = case("load_cycle", "load('//lib:a.star', 'v')\n", "Load cycle");
    cycle.files.push(("lib/BUILD.star".into(), String::new()));
    cycle.files.push(("lib/a.star".into(), "load('//lib:b.star', 'w')\nv = 1\n".into()));
    cycle.files.push(("lib/b.star".into(), "load('//lib:a.star', 'v')\nw = 1\n".into()));
    cases.push(cycle);
    // A deep value in a loaded file, frozen when the file is done, then
    // encoded by its user.
    let mut frozen = case("json_encode_deep_frozen_value", "load('//lib:deep.star', 'x')\njson.encode(x)\n", too_deep);
    frozen.files.push(("lib/BUILD.star".into(), String::new()));
    frozen.files.push(("lib/deep.star".into(), deep("[x]", 50000)));
    cases.push(frozen);
    cases
}

#[test]
fn hostile_files_end_with_a_clear_error_and_never_abort() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let workspace = TestWorkspace::new();
        workspace.file("WORKSPACE.star", "workspace(name = \"hostile\")\n").file("app/BUILD.star", &case.build);
        for (path, text) in &case.files {
            workspace.file(path, text);
        }
        let started = Instant::now();
        let output = workspace.berth(&["--console", "none", "--load-timeout", case.load_timeout, "query", "//app/..."]);
        let elapsed = started.elapsed();
        let ok = output.code == 1
            && output.stderr.starts_with("error: ")
            && output.stderr.contains(case.expect)
            && !output.stderr.contains("panicked")
            && !output.stderr.contains("overflow");
        if !ok {
            failures.push(format!("{}: exit {} after {elapsed:?}\n{}", case.name, output.code, output.stderr));
        }
        // Not a timing assertion: a guard against a case that hangs the suite.
        assert!(elapsed < Duration::from_secs(120), "{} ran {elapsed:?}", case.name);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn a_bad_load_timeout_is_refused() {
    let workspace = TestWorkspace::new();
    let output = workspace.berth(&["--load-timeout", "0", "query", "//..."]);
    output.failure(2);
    assert!(output.stderr.contains("`--load-timeout 0` is not a number of seconds"), "{}", output.stderr);
}

/// WORKSPACE.star is evaluated on the main thread: the same guards hold.
#[test]
fn a_hostile_workspace_file_ends_cleanly() {
    let workspace = TestWorkspace::new();
    workspace.file("WORKSPACE.star", &(deep("[x]", 5000) + "json.encode(x)\n"));
    let output = workspace.berth(&["--console", "none", "query", "//..."]);
    output.failure(1);
    assert!(output.stderr.contains("nests more than 100 levels deep"), "{}", output.stderr);
}

/// A loop of few, heavy steps stays far inside the step budget: only the
/// wall-clock deadline ends it.
#[test]
fn the_load_timeout_ends_a_loop_of_heavy_steps() {
    let workspace = TestWorkspace::new();
    workspace.file("app/BUILD.star", "s = 'x' * (64 << 20)\nfor i in range(1000):\n    t = s.replace('x', 'y')\n");
    let output = workspace.berth(&["--console", "none", "--load-timeout", "2", "query", "//app/..."]);
    output.failure(1);
    assert!(
        output.stderr.starts_with("error: Evaluating `app/BUILD.star` took longer than 2 s (`--load-timeout`)"),
        "{}",
        output.stderr
    );
}
