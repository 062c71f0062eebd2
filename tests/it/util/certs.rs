//! A throwaway certificate authority made with `openssl`: a CA, server
//! certificates for 127.0.0.1 (IP SAN) and client certificates for mTLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA in a temp dir; every certificate it signs lives there too.
pub struct TestCa {
    dir: tempfile::TempDir,
    name: String,
}

/// A certificate and its private key, both PEM files.
pub struct KeyPair {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa { dir, name: name.to_owned() };
        openssl(
            ca.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        ca
    }

    /// The CA certificate (PEM).
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for 127.0.0.1 (IP SAN), signed by this CA.
    pub fn server(&self, name: &str) -> KeyPair {
        self.sign(name, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    }

    /// A client certificate, signed by this CA.
    pub fn client(&self, name: &str) -> KeyPair {
        self.sign(name, "extendedKeyUsage=clientAuth\n")
    }

    fn sign(&self, name: &str, extensions: &str) -> KeyPair {
        let dir = self.dir.path();
        let extfile = format!("{name}.ext");
        std::fs::write(dir.join(&extfile), format!("basicConstraints=CA:FALSE\n{extensions}")).unwrap();
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name} of {}", self.name),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
        KeyPair { certificate: dir.join(pem), key: dir.join(key) }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}
