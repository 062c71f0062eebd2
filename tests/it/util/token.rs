//! A Bearer token server in front of a registry: the distribution token
//! flow, with tokens that run out after a number of uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::util::http::{forward, HttpRequest, HttpResponse, Reply, Server};

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
    /// The next this-many token requests fail (a 500, then a dropped
    /// connection, alternately) before any token is handed out.
    pub token_faults: Arc<AtomicU64>,
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
        let token_faults = Arc::new(AtomicU64::new(0));
        let server = {
            let log = log.clone();
            let own_port = own_port.clone();
            let token_faults = token_faults.clone();
            Server::start(move |request| {
                let port = own_port.load(Ordering::SeqCst);
                if request.path() == "/token" {
                    if let Ok(left) =
                        token_faults.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
                    {
                        return if left % 2 == 1 { Reply::Send(HttpResponse::new(500)) } else { Reply::Drop };
                    }
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
        TokenProxy { server, log, token_faults }
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
