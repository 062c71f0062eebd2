//! A real `docker-registry` on 127.0.0.1 on a free port, with a temp storage dir.
//!
//! Also the small HTTP servers the registry tests put in front of it or in
//! its place: a fault-injecting proxy, a Bearer token server, a registry
//! that redirects blob GETs to another host, and a registry that corrupts
//! every blob. They speak just enough HTTP/1.1 (one request per connection)
//! for reqwest and skopeo, and stop when dropped.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth::cache::{BlobRef, Cas, Digest};
use sha2::Digest as _;

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// `Some(reason)` when a program the test needs is missing; the test then
/// prints `SKIP: <reason>` and returns.
pub fn missing(programs: &[&str]) -> Option<String> {
    for program in programs {
        let found = if program.starts_with('/') {
            Path::new(program).is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        };
        if !found {
            return Some(format!("`{program}` is not installed (Debian packages `docker-registry`, `skopeo`)"));
        }
    }
    None
}

/// Skips the calling test when a program is missing.
macro_rules! require {
    ($($program:expr),+ $(,)?) => {
        if let Some(reason) = crate::util::registry::missing(&[$($program),+]) {
            println!("SKIP: {reason}");
            return;
        }
    };
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `docker-registry` process serving plain HTTP on 127.0.0.1.
pub struct Registry {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry: anyone may pull and push.
    pub fn start() -> Registry {
        Registry::spawn(None)
    }

    /// A registry that wants Basic credentials (htpasswd, bcrypt).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::spawn(Some((user, password)))
    }

    fn spawn(credentials: Option<(&str, &str)>) -> Registry {
        let mut last_error = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
                dir.path().join("storage").display()
            );
            if let Some((user, password)) = credentials {
                let hash = bcrypt::hash(password, 4).unwrap();
                std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(DOCKER_REGISTRY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry starts");
            let mut registry = Registry { port, child, dir };
            if registry.wait_ready() {
                return registry;
            }
            last_error = std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The blob files the registry stores (its own digest-addressed layout).
    pub fn stored_blob(&self, digest: &Digest) -> bool {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
            .is_file()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Test images.

/// An image made of real gzip'd tar layers, written into a CAS.
pub struct TestImage {
    pub manifest: BlobRef,
    pub manifest_bytes: Vec<u8>,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Deterministic noise (xorshift), so layers do not compress to nothing.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A gzip'd tar holding one file; returns (blob bytes, diff_id).
pub fn layer_tar_gz(name: &str, contents: &[u8]) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, contents).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

impl TestImage {
    /// An image with `layer_sizes.len()` layers of noise, distinct per `seed`.
    pub fn build(cas: &Cas, seed: u64, layer_sizes: &[usize]) -> TestImage {
        TestImage::build_for(cas, seed, layer_sizes, "amd64")
    }

    pub fn build_for(cas: &Cas, seed: u64, layer_sizes: &[usize], architecture: &str) -> TestImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (index, size) in layer_sizes.iter().enumerate() {
            let (bytes, diff_id) =
                layer_tar_gz(&format!("file-{seed}-{index}"), &noise(seed * 1000 + index as u64, *size));
            layers.push(cas.put_bytes(&bytes).unwrap());
            diff_ids.push(diff_id.to_string());
        }
        let config = serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Env": [format!("SEED={seed}")]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let config = cas.put_bytes(config.as_bytes()).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest.to_string(), "size": config.size},
            "layers": layers.iter().map(|layer| serde_json::json!({
                "mediaType": OCI_LAYER, "digest": layer.digest.to_string(), "size": layer.size,
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let manifest_ref = cas.put_bytes(&manifest).unwrap();
        TestImage { manifest: manifest_ref, manifest_bytes: manifest, config, layers }
    }

    /// Every blob: config and layers.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut blobs = vec![self.config];
        blobs.extend(&self.layers);
        blobs
    }
}

/// An index over images, written into a CAS.
pub fn index_of(cas: &Cas, images: &[(&TestImage, &str)]) -> BlobRef {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|(image, architecture)| serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.size,
            "platform": {"os": "linux", "architecture": architecture},
        })).collect::<Vec<_>>(),
    })
    .to_string();
    cas.put_bytes(index.as_bytes()).unwrap()
}

/// Writes `image` as an OCI image layout at `dir` with `tag` (for skopeo).
pub fn write_oci_layout(cas: &Cas, image: &TestImage, dir: &Path, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    for blob in image.blobs().into_iter().chain([image.manifest]) {
        std::fs::copy(cas.path(&blob.digest), blobs.join(blob.digest.hex())).unwrap();
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// Every file under `cas/sha256` hashes to its name: nothing corrupt cached.
pub fn assert_cas_sound(cache_dir: &Path) {
    for entry in std::fs::read_dir(cache_dir.join("cas/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), actual, "corrupt blob cached at {}", path.display());
    }
}

// ---------------------------------------------------------------------------
// A tiny HTTP/1.1 server: one request per connection.

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    pub fn query(&self, key: &str) -> Vec<String> {
        let query = self.target.split_once('?').map_or("", |(_, query)| query);
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, value)| percent_decode(value))
            .collect()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[index + 1..index + 3], 16).unwrap_or(b'?'));
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = body.into();
        self
    }

    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// What a handler does with a connection.
pub enum Reply {
    Send(HttpResponse),
    /// Close without answering (a reset, as the client sees it).
    Drop,
    /// Announce the whole body but send only the first `n` bytes, then close.
    Truncate(HttpResponse, usize),
}

type Head = (String, Vec<(String, String)>);

/// The first line and the headers of a request or response.
fn read_headers(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(Some((first.trim_end().to_owned(), headers)))
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)], until_eof: bool) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if find(headers, "transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
            if size == 0 {
                return Ok(body);
            }
        }
    } else if let Some(length) = find(headers, "content-length") {
        let length: usize = length.parse().map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if until_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

pub fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<HttpRequest>> {
    let Some((first, headers)) = read_headers(reader)? else { return Ok(None) };
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    if find(&headers, "expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue")) {
        reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(reader, &headers, false)?;
    Ok(Some(HttpRequest { method, target, headers, body }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

pub fn write_response(stream: &mut impl Write, response: &HttpResponse, send_bytes: Option<usize>) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if response.get_header("content-length").is_none() {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let end = send_bytes.unwrap_or(response.body.len()).min(response.body.len());
    stream.write_all(&response.body[..end])?;
    stream.flush()
}

type Handler = dyn Fn(HttpRequest) -> Reply + Send + Sync;

/// A server on 127.0.0.1 that runs `handler` for each request.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: impl Fn(HttpRequest) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let handler = handler.clone();
                    std::thread::spawn(move || serve(stream, &*handler));
                }
            })
        };
        Server { port, stop, thread: Some(thread) }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream);
    let Ok(Some(request)) = read_request(&mut reader) else { return };
    let mut stream = reader.into_inner();
    match handler(request) {
        Reply::Send(response) => {
            let _ = write_response(&mut stream, &response, None);
        }
        Reply::Truncate(response, bytes) => {
            let _ = write_response(&mut stream, &response, Some(bytes));
        }
        Reply::Drop => {}
    }
    let _ = stream.shutdown(Shutdown::Both);
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `request` to 127.0.0.1:`port` and reads the whole response.
pub fn forward(port: u16, request: &HttpRequest) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        if ["connection", "content-length", "transfer-encoding", "expect"].iter().any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !request.body.is_empty() || matches!(request.method.as_str(), "PUT" | "POST" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&request.body)?;
    let mut reader = BufReader::new(stream);
    let (status_line, mut headers) = read_headers(&mut reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
    let status: u16 = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(502);
    let no_body = request.method == "HEAD" || status == 204 || status == 304;
    let body = if no_body { Vec::new() } else { read_body(&mut reader, &headers, true)? };
    headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("connection")
            && !name.eq_ignore_ascii_case("transfer-encoding")
            && (no_body || !name.eq_ignore_ascii_case("content-length"))
    });
    Ok(HttpResponse { status, headers, body })
}

// ---------------------------------------------------------------------------
// The fault-injecting proxy.

/// Probabilities, per response, of each fault.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Close the connection without an answer.
    pub drop: f64,
    /// Send only half of the body.
    pub truncate: f64,
    pub error_500: f64,
    /// 429 with `Retry-After: 0`.
    pub error_429: f64,
    /// Flip one byte of a non-empty body.
    pub flip: f64,
}

#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
    pub errors: AtomicU64,
    pub flipped: AtomicU64,
}

/// A deterministic random source shared by a server's threads.
pub struct Rng(Mutex<u64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Mutex::new(seed | 1))
    }

    pub fn next(&self) -> u64 {
        let mut state = self.0.lock().unwrap();
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    pub fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Forwards to an upstream registry and injects faults into responses.
pub struct FaultProxy {
    pub server: Server,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: Faults, seed: u64) -> FaultProxy {
        let counts = Arc::new(FaultCounts::default());
        let rng = Rng::new(seed);
        let server = {
            let counts = counts.clone();
            Server::start(move |request| {
                counts.requests.fetch_add(1, Ordering::SeqCst);
                let roll = rng.unit();
                let mut threshold = faults.drop;
                if roll < threshold {
                    counts.dropped.fetch_add(1, Ordering::SeqCst);
                    return Reply::Drop;
                }
                threshold += faults.error_500;
                if roll < threshold {
                    counts.errors.fetch_add(1, Ordering::SeqCst);
                    return Reply::Send(HttpResponse::new(500).body("injected"));
                }
                threshold += faults.error_429;
                if roll < threshold {
                    counts.errors.fetch_add(1, Ordering::SeqCst);
                    return Reply::Send(HttpResponse::new(429).header("Retry-After", "0"));
                }
                let Ok(mut response) = forward(upstream, &request) else { return Reply::Drop };
                threshold += faults.truncate;
                if roll < threshold && response.body.len() > 1 {
                    counts.truncated.fetch_add(1, Ordering::SeqCst);
                    let half = response.body.len() / 2;
                    return Reply::Truncate(response, half);
                }
                threshold += faults.flip;
                if roll < threshold && !response.body.is_empty() {
                    counts.flipped.fetch_add(1, Ordering::SeqCst);
                    let at = (rng.next() as usize) % response.body.len();
                    response.body[at] ^= 0x20;
                }
                Reply::Send(response)
            })
        };
        FaultProxy { server, counts }
    }
}

// ---------------------------------------------------------------------------
// A Bearer token server in front of a registry.

/// What the token server saw.
#[derive(Debug, Default)]
pub struct TokenLog {
    /// Each token request: (Basic user or "", scopes).
    pub requests: Vec<(String, Vec<String>)>,
}

/// Fronts an upstream registry with the distribution token flow: requests
/// without a valid token get a 401 challenge; `/token` hands out tokens that
/// stop working after `uses` requests (a token expiring mid-pull).
pub struct TokenProxy {
    pub server: Server,
    pub log: Arc<Mutex<TokenLog>>,
}

struct IssuedToken {
    scopes: Vec<String>,
    uses_left: u32,
}

impl TokenProxy {
    /// `credentials`: the Basic user and password the token server wants for
    /// push scopes (pulls are anonymous), or `None` for an open server.
    pub fn start(upstream: u16, uses: u32, credentials: Option<(&str, &str)>) -> TokenProxy {
        let log = Arc::new(Mutex::new(TokenLog::default()));
        let tokens: Arc<Mutex<HashMap<String, IssuedToken>>> = Arc::default();
        let counter = AtomicU64::new(0);
        let expected_basic = credentials.map(|(user, password)| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        });
        let own_port = Arc::new(AtomicU64::new(0));
        let server = {
            let log = log.clone();
            let own_port = own_port.clone();
            Server::start(move |request| {
                let port = own_port.load(Ordering::SeqCst);
                if request.path() == "/token" {
                    let scopes = request.query("scope");
                    let authorization = request.header("authorization").map(str::to_owned);
                    let user = authorization
                        .as_deref()
                        .and_then(|value| value.strip_prefix("Basic "))
                        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                        .map(|pair| String::from_utf8_lossy(&pair).split(':').next().unwrap_or("").to_owned())
                        .unwrap_or_default();
                    log.lock().unwrap().requests.push((user, scopes.clone()));
                    let wants_push = scopes.iter().any(|scope| scope.ends_with("push"));
                    if let Some(expected) = &expected_basic {
                        if wants_push && authorization.as_deref() != Some(expected.as_str()) {
                            return Reply::Send(HttpResponse::new(401));
                        }
                    }
                    let token = format!("token-{}", counter.fetch_add(1, Ordering::SeqCst));
                    tokens.lock().unwrap().insert(token.clone(), IssuedToken { scopes, uses_left: uses });
                    return Reply::Send(
                        HttpResponse::new(200)
                            .header("Content-Type", "application/json")
                            .body(serde_json::json!({"token": token, "expires_in": 300}).to_string()),
                    );
                }
                let needed = needed_scope(&request);
                let presented = request.header("authorization").and_then(|value| value.strip_prefix("Bearer "));
                let valid = presented.is_some_and(|token| {
                    let mut tokens = tokens.lock().unwrap();
                    match tokens.get_mut(token) {
                        Some(issued) if issued.uses_left > 0 && covers(&issued.scopes, &needed) => {
                            issued.uses_left -= 1;
                            true
                        }
                        _ => false,
                    }
                });
                if !valid {
                    let challenge = format!(
                        "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"berth-test\",scope=\"{needed}\""
                    );
                    return Reply::Send(
                        HttpResponse::new(401)
                            .header("WWW-Authenticate", &challenge)
                            .header("Content-Type", "application/json")
                            .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#),
                    );
                }
                match forward(upstream, &request) {
                    Ok(response) => Reply::Send(response),
                    Err(_) => Reply::Drop,
                }
            })
        };
        own_port.store(server.port as u64, Ordering::SeqCst);
        TokenProxy { server, log }
    }
}

/// `repository:<name>:pull` for reads, `:pull,push` for writes.
fn needed_scope(request: &HttpRequest) -> String {
    let path = request.path().trim_start_matches("/v2/");
    let name = ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .find_map(|marker| path.find(marker).map(|at| &path[..at]))
        .unwrap_or("");
    let actions = if matches!(request.method.as_str(), "GET" | "HEAD") { "pull" } else { "pull,push" };
    format!("repository:{name}:{actions}")
}

fn covers(granted: &[String], needed: &str) -> bool {
    let Some((resource, actions)) = needed.rsplit_once(':') else { return false };
    granted.iter().any(|scope| {
        scope.rsplit_once(':').is_some_and(|(granted_resource, granted_actions)| {
            granted_resource == resource
                && actions.split(',').all(|action| granted_actions.split(',').any(|granted| granted == action))
        })
    })
}

/// A fresh cache dir and CAS.
pub fn temp_cas() -> (tempfile::TempDir, Cas) {
    let dir = tempfile::tempdir().unwrap();
    let cas = Cas::open(dir.path()).unwrap();
    (dir, cas)
}

/// A `config.json` directory with Basic credentials for `host`.
pub fn docker_config_with(host: &str, user: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// Runs a program, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An empty dir for test output that outlives nothing.
pub fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
