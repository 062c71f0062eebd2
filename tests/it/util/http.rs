//! A tiny HTTP/1.1 server on 127.0.0.1 that runs a handler per request,
//! and a client that forwards a request upstream. The registry tests build
//! their proxies and fake registries on it (a registry that redirects blob
//! GETs to another host, one that corrupts every blob, ...). It speaks just
//! enough HTTP (one request per connection) for reqwest and skopeo, and
//! stops when dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Send the first `n` bytes of the body, pause, then send the rest.
    Stall(HttpResponse, usize, Duration),
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
    /// The loopback address it listens on (127.0.0.1 unless told).
    pub ip: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: impl Fn(HttpRequest) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_on("127.0.0.1", handler)
    }

    /// A server on another loopback address (`127.0.0.2` plays another host).
    pub fn start_on(ip: &str, handler: impl Fn(HttpRequest) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
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
        Server { port, ip: ip.to_owned(), stop, thread: Some(thread) }
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
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
        Reply::Stall(response, bytes, pause) => {
            if write_response(&mut stream, &response, Some(bytes)).is_ok() {
                std::thread::sleep(pause);
                let _ = stream.write_all(&response.body[bytes.min(response.body.len())..]);
            }
        }
        Reply::Drop => {}
    }
    let _ = stream.shutdown(Shutdown::Both);
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.ip.as_str(), self.port));
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
