//! Certificates for local servers that speak TLS (a Kafka SASL_SSL listener,
//! a PostgreSQL with `ssl=on`): a CA of their own and a server certificate
//! for 127.0.0.1 and localhost, made with the `openssl` command. For tests
//! and development; production brings its own.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of a local CA and the server certificate it signed.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, unencrypted).
    pub key: PathBuf,
    /// Key, certificate and CA in one PEM file (Kafka's PEM keystore).
    pub keystore: PathBuf,
}

impl Certs {
    /// The certificates in `dir`, made once.
    pub fn make(dir: &Path) -> anyhow::Result<Certs> {
        std::fs::create_dir_all(dir)?;
        let certs = Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            keystore: dir.join("keystore.pem"),
        };
        if certs.keystore.exists() {
            return Ok(certs);
        }
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        ec_key(&ca_key)?;
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-days",
                "3650",
                "-subj",
                "/CN=Tally local CA",
                "-key",
            ],
            &[&ca_key, Path::new("-out"), &certs.ca],
        )?;
        ec_key(&certs.key)?;
        openssl(
            &["req", "-new", "-subj", "/CN=127.0.0.1", "-key"],
            &[&certs.key, Path::new("-out"), &csr],
        )?;
        openssl(
            &["x509", "-req", "-days", "3650", "-set_serial", "1", "-in"],
            &[
                &csr,
                Path::new("-CA"),
                &certs.ca,
                Path::new("-CAkey"),
                &ca_key,
                Path::new("-extfile"),
                &ext,
                Path::new("-out"),
                &certs.cert,
            ],
        )?;
        let mut keystore = std::fs::read_to_string(&certs.key)?;
        keystore.push_str(&std::fs::read_to_string(&certs.cert)?);
        keystore.push_str(&std::fs::read_to_string(&certs.ca)?);
        std::fs::write(&certs.keystore, keystore)?;
        Ok(certs)
    }
}

/// A P-256 private key (PKCS#8) in `path`.
fn ec_key(path: &Path) -> anyhow::Result<()> {
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ],
        &[path],
    )
}

fn openssl(args: &[&str], paths: &[&Path]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .context("running openssl (install Debian's openssl package)")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
