//! Registries behind TLS from a private CA, and behind mutual TLS, through
//! the real binary: Debian's `docker-registry` with certificates an
//! `openssl` CA made for 127.0.0.1 (IP SAN). Push, pin, and build on the
//! pushed image as a pulled base; the failures (no `ca`, a missing file, no
//! or the wrong client key) are clear errors with exit 3.

use crate::util::certs::TestCa;
use crate::util::need::{skip, Need};
use crate::util::registry::{Registry, RegistryTls};
use crate::util::workspace::{Output, TestWorkspace};

/// A workspace with one image whose `repository` is on `host`, and
/// `registry(host, <tls>)` in `WORKSPACE.star`.
fn workspace(host: &str, tls: &str) -> TestWorkspace {
    let workspace = TestWorkspace::new();
    workspace.file("WORKSPACE.star", &format!("workspace(name = \"tls\")\nregistry(\"{host}\"{tls})\n"));
    workspace.file(
        "app/BUILD.star",
        &format!(
            "oci_layer(name = \"files\", contents = {{\"/hello.txt\": \"over TLS\\n\"}})\n\
             oci_image_build(name = \"app\", layers = [\":files\"], repository = \"{host}/team/app\", tag = \"v1\")\n"
        ),
    );
    workspace
}

fn copy(from: &std::path::Path, workspace: &TestWorkspace, to: &str) {
    workspace.bytes(to, &std::fs::read(from).unwrap());
}

/// Push, pin the pushed tag, and build an image on it as a pulled base.
fn push_pin_and_build_on(workspace: &TestWorkspace, host: &str) {
    let push = workspace.berth(&["--console", "none", "push", "//app:app"]);
    push.success();
    let digest = push.stdout.trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{}", push.stdout);

    let pin = workspace.berth(&["pin", &format!("{host}/team/app:v1")]);
    pin.success();
    assert!(pin.stdout.contains(&format!("digest = \"{digest}\"")), "{}", pin.stdout);

    workspace.file(
        "derived/BUILD.star",
        &format!(
            "oci_pull_image(name = \"base\", repository = \"{host}/team/app\", digest = \"{digest}\")\n\
             oci_layer(name = \"more\", contents = {{\"/more.txt\": \"more\\n\"}})\n\
             oci_image_build(name = \"derived\", base = \":base\", layers = [\":more\"])\n"
        ),
    );
    let fresh = TestWorkspace::new();
    for file in ["WORKSPACE.star", "app/BUILD.star", "derived/BUILD.star"] {
        copy(&workspace.path(file), &fresh, file);
    }
    if workspace.path("certs").is_dir() {
        crate::util::workspace::copy_tree(&workspace.path("certs"), &fresh.path("certs"));
    }
    fresh.berth(&["--console", "none", "build", "//derived:derived"]).success();
}

#[track_caller]
fn assert_error(output: &Output, code: i32, wanted: &[&str]) {
    output.failure(code);
    for text in wanted {
        assert!(output.stderr.contains(text), "stderr lacks `{text}`:\n{}", output.stderr);
    }
}

#[test]
fn tls_registry_with_a_private_ca_push_pin_and_pull_as_base() {
    if skip(&[Need::Registry, Need::Openssl]) {
        return;
    }
    let ca = TestCa::new("berth test CA");
    let server = ca.server("registry");
    let registry =
        Registry::start_tls(&RegistryTls { certificate: server.certificate, key: server.key, client_ca: None });
    let host = registry.host();

    // Without `ca`: the public roots do not know this CA.
    let untrusted = workspace(&host, "");
    let pin = untrusted.berth(&["pin", &format!("{host}/team/app:v1")]);
    assert_error(
        &pin,
        3,
        &[
            &format!("error: TLS with registry `{host}` failed: the registry's certificate is signed by a CA berth does not trust"),
            "hint: trust the registry's CA with `registry(",
            "BERTH_REGISTRY_CA_127_0_0_1_",
        ],
    );
    let push = untrusted.berth(&["--console", "none", "push", "//app:app"]);
    assert_error(&push, 3, &["signed by a CA berth does not trust"]);

    // `ca` in WORKSPACE.star, relative to the workspace root.
    let trusted = workspace(&host, ", ca = \"certs/ca.pem\"");
    copy(&ca.certificate(), &trusted, "certs/ca.pem");
    push_pin_and_build_on(&trusted, &host);

    // The same CA as PEM text in the environment (a CI secret).
    let mut from_env = workspace(&host, "");
    let variable = format!("BERTH_REGISTRY_CA_{}", host.replace(['.', ':'], "_"));
    from_env.env(&variable, &std::fs::read_to_string(ca.certificate()).unwrap());
    from_env.berth(&["pin", &format!("{host}/team/app:v1")]).success();

    // `BERTH_REGISTRY_CA` (no host) trusts a CA for every registry.
    let mut global = workspace(&host, "");
    global.env("BERTH_REGISTRY_CA", ca.certificate().to_str().unwrap());
    global.berth(&["pin", &format!("{host}/team/app:v1")]).success();

    // `skip_verify` trusts anything: for throwaway test registries only.
    workspace(&host, ", skip_verify = True").berth(&["pin", &format!("{host}/team/app:v1")]).success();

    // A `ca` that is missing or holds no certificate is named.
    let missing = workspace(&host, ", ca = \"certs/missing.pem\"");
    assert_error(
        &missing.berth(&["pin", &format!("{host}/team/app:v1")]),
        3,
        &[&format!(
            "error: The CA certificate `certs/missing.pem` for registry `{host}` cannot be used: cannot read it"
        )],
    );
    let garbage = workspace(&host, ", ca = \"certs/ca.pem\"");
    garbage.file("certs/ca.pem", "not a certificate\n");
    assert_error(
        &garbage.berth(&["pin", &format!("{host}/team/app:v1")]),
        3,
        &["The CA certificate `certs/ca.pem`", "holds no `BEGIN CERTIFICATE` PEM block"],
    );
}

#[test]
fn mtls_registry_needs_the_right_client_certificate() {
    if skip(&[Need::Registry, Need::Openssl]) {
        return;
    }
    let ca = TestCa::new("berth test CA");
    let server = ca.server("registry");
    let client = ca.client("builder");
    let other = ca.client("someone-else");
    let registry = Registry::start_tls(&RegistryTls {
        certificate: server.certificate,
        key: server.key,
        client_ca: Some(ca.certificate()),
    });
    let host = registry.host();
    let mtls = ", ca = \"certs/ca.pem\", client_cert = \"certs/client.pem\", client_key = \"certs/client-key.pem\"";

    let good = workspace(&host, mtls);
    copy(&ca.certificate(), &good, "certs/ca.pem");
    copy(&client.certificate, &good, "certs/client.pem");
    copy(&client.key, &good, "certs/client-key.pem");
    push_pin_and_build_on(&good, &host);

    // The client certificate for every declared registry, from CI secrets.
    let mut from_env = workspace(&host, ", ca = \"certs/ca.pem\"");
    copy(&ca.certificate(), &from_env, "certs/ca.pem");
    from_env.env("BERTH_REGISTRY_CLIENT_CERT", client.certificate.to_str().unwrap());
    from_env.env("BERTH_REGISTRY_CLIENT_KEY", &std::fs::read_to_string(&client.key).unwrap());
    from_env.berth(&["pin", &format!("{host}/team/app:v1")]).success();

    // No client certificate: the registry ends the handshake.
    let anonymous = workspace(&host, ", ca = \"certs/ca.pem\"");
    copy(&ca.certificate(), &anonymous, "certs/ca.pem");
    assert_error(
        &anonymous.berth(&["pin", &format!("{host}/team/app:v1")]),
        3,
        &[&format!("error: TLS with registry `{host}` failed: the registry refused the connection"), "client_cert"],
    );

    // The wrong key for the certificate is named before connecting.
    let wrong = workspace(&host, mtls);
    copy(&ca.certificate(), &wrong, "certs/ca.pem");
    copy(&client.certificate, &wrong, "certs/client.pem");
    copy(&other.key, &wrong, "certs/client-key.pem");
    assert_error(
        &wrong.berth(&["pin", &format!("{host}/team/app:v1")]),
        3,
        &[&format!(
            "error: The client certificate `certs/client.pem` for registry `{host}` cannot be used: its private key `certs/client-key.pem` does not belong to it"
        )],
    );
    // A key file that holds no key.
    wrong.file("certs/client-key.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    assert_error(
        &wrong.berth(&["pin", &format!("{host}/team/app:v1")]),
        3,
        &["The client key `certs/client-key.pem`", "holds no PEM private key"],
    );
}
