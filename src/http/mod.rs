//! The routes `mtls serve` answers itself: JSON for programs, HTML pages for
//! browsers.

pub mod html;
pub mod negotiate;

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ALLOW, CONTENT_TYPE, HeaderValue, STRICT_TRANSPORT_SECURITY, VARY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::cert::CertDetails;
use crate::config::ClientAuthMode;
use crate::identity::{ConnectionInfo, PeerIdentity, TlsFacts, VerifiedClient};
use crate::metrics::Metrics;
use crate::policy::{Policy, Verdict};
use crate::rejection::{ReasonCode, Rejection};
use html::Page;

pub type Body = Full<Bytes>;

/// Settings the routes need, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Routes {
    welcome_message: String,
    welcome_json: Bytes,
    client_auth: ClientAuthMode,
    policy: Policy,
    metrics: Arc<Metrics>,
    answers: AnswerHeaders,
}

/// Why a request was let in, for `/whoami`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<'a> {
    /// Client auth is off: there is no identity to check.
    Open,
    PublicPath,
    /// A verified certificate, and no allowlist is configured.
    AnyVerified,
    /// A verified certificate that the allowlist rule of this name allows.
    Rule(&'a str),
}

const ROUTES: [&str; 6] = ["/", "/healthz", "/cert", "/headers", "/whoami", "/hello"];

const ALLOWED_METHODS: &str = "GET, HEAD";

impl Routes {
    pub fn new(
        welcome_message: &str,
        client_auth: ClientAuthMode,
        policy: Policy,
        metrics: Arc<Metrics>,
        hsts: Option<&HeaderValue>,
    ) -> Self {
        Routes {
            welcome_message: welcome_message.to_owned(),
            welcome_json: json_bytes(&json!({ "message": welcome_message })),
            client_auth,
            policy,
            metrics,
            answers: AnswerHeaders::new(hsts),
        }
    }

    /// Decides whether the connection's client may call `path`. Runs before
    /// routing, so unknown paths reveal nothing to refused clients.
    fn admit(&self, path: &str, conn: &ConnectionInfo) -> Result<Admission<'_>, Rejection> {
        if self.client_auth == ClientAuthMode::Off {
            return Ok(Admission::Open);
        }
        if self.policy.is_public(path) {
            return Ok(Admission::PublicPath);
        }
        let client = match &conn.peer {
            PeerIdentity::Verified(client) => client,
            PeerIdentity::Rejected(rejection) => return Err((**rejection).clone()),
            PeerIdentity::None => return Err(Rejection::no_certificate()),
        };
        let Some(details) = client.details() else {
            return Err(Rejection::not_allowed("(undecodable)", path, "the policy"));
        };
        match self.policy.judge(path, details) {
            Verdict::AnyVerified => Ok(Admission::AnyVerified),
            Verdict::Rule(name) => Ok(Admission::Rule(name)),
            Verdict::Denied { tried } => Err(Rejection::not_allowed(
                &details.subject.rfc4514,
                path,
                &tried,
            )),
        }
    }

    /// Admission and the built-in routes.
    pub fn handle<B>(&self, req: &Request<B>, conn: &ConnectionInfo) -> Response<Body> {
        match self.admit_request(req, conn) {
            Ok(admission) => self.route(req, conn, &admission),
            Err(rejection) => self.refuse(req, &rejection),
        }
    }

    /// The 403 for a refused request, as the client prefers it.
    pub fn refuse<B>(&self, req: &Request<B>, rejection: &Rejection) -> Response<Body> {
        forbidden(
            &self.answers,
            rejection,
            negotiate::prefers_html(req.headers()),
        )
    }

    /// Lets the request in, or says why not (and counts the refusal).
    pub fn admit_request<B>(
        &self,
        req: &Request<B>,
        conn: &ConnectionInfo,
    ) -> Result<Admission<'_>, Rejection> {
        self.admit(req.uri().path(), conn).inspect_err(|rejection| {
            self.metrics.refused("request", rejection.reason);
        })
    }

    /// The built-in routes, for an admitted request.
    pub fn route<B>(
        &self,
        req: &Request<B>,
        conn: &ConnectionInfo,
        admission: &Admission,
    ) -> Response<Body> {
        let path = req.uri().path();
        let answers = &self.answers;
        if !ROUTES.contains(&path) {
            return answers.json(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not found", "path": path }),
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = answers.json(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": "method not allowed", "allow": ALLOWED_METHODS }),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            return response;
        }
        match path {
            "/healthz" => return answers.json(StatusCode::OK, &json!({ "status": "ok" })),
            "/whoami" => return whoami(answers, conn, admission),
            "/hello" => return hello(answers, conn),
            _ => {}
        }
        // The rest answer HTML or JSON as the client prefers.
        let html = negotiate::prefers_html(req.headers());
        match (path, html) {
            ("/", false) => with_body(
                StatusCode::OK,
                &answers.negotiated_json,
                self.welcome_json.clone(),
            ),
            ("/", true) => self.welcome_page(conn),
            ("/cert", _) => certificate(answers, conn, html),
            (_, _) => headers(answers, req, conn, html),
        }
    }

    fn welcome_page(&self, conn: &ConnectionInfo) -> Response<Body> {
        let mut page = Page::new(&self.welcome_message);
        match &conn.peer {
            PeerIdentity::Verified(client) => {
                page.status(true, "You presented a valid client certificate.");
                if let Some(details) = client.details() {
                    page.table(&[
                        ("You are", details.subject.rfc4514.as_str()),
                        ("Issued by", details.issuer.rfc4514.as_str()),
                        ("Valid until", details.not_after.as_str()),
                    ]);
                }
            }
            PeerIdentity::None | PeerIdentity::Rejected(_) => {
                page.paragraph(
                    "Your browser did not present a client certificate on this connection.",
                );
            }
        }
        tls_section(&mut page, &conn.tls);
        self.answers.html(StatusCode::OK, &page)
    }
}

/// 403 with the reason, as JSON or as a page that explains it to a person.
fn forbidden(answers: &AnswerHeaders, rejection: &Rejection, html: bool) -> Response<Body> {
    let error = match rejection.reason {
        ReasonCode::NotAllowed => "client certificate not allowed",
        _ => "client certificate required",
    };
    if html {
        let mut page = Page::new("Access denied");
        page.status(
            false,
            &format!("{}: {}", capitalise(error), rejection.detail),
        )
        .heading("What you can do")
        .paragraph(&rejection.hint)
        .table(&[("Reason code", rejection.reason.as_str())]);
        answers.html(StatusCode::FORBIDDEN, &page)
    } else {
        answers.negotiated_json(
            StatusCode::FORBIDDEN,
            &json!({
                "error": error,
                "reason": rejection.reason,
                "detail": rejection.detail,
                "hint": rejection.hint,
            }),
        )
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `GET /whoami`: the verified identity and what let it in.
fn whoami(answers: &AnswerHeaders, conn: &ConnectionInfo, admission: &Admission) -> Response<Body> {
    let rule;
    let allowed_by = match admission {
        Admission::Open => "client auth is off",
        Admission::PublicPath => "public path",
        Admission::AnyVerified => "any verified certificate",
        Admission::Rule(name) => {
            rule = format!("rule `{name}`");
            &rule
        }
    };
    let identity = match &conn.peer {
        PeerIdentity::Verified(client) => client.details().map(|d| {
            json!({
                "subject": d.subject.rfc4514,
                "common_name": d.subject.first("CN"),
                "issuer": d.issuer.rfc4514,
                "serial": d.serial,
                "sha256_fingerprint": d.fingerprints.sha256,
                "sha1_thumbprint": d.fingerprints.sha1,
                "spiffe_id": d.spiffe_id,
                "not_after": d.not_after,
            })
        }),
        _ => None,
    };
    answers.json(
        StatusCode::OK,
        &json!({ "identity": identity, "allowed_by": allowed_by }),
    )
}

/// `GET /hello`: `Hello {CN}!`, as the Apache demo answers.
fn hello(answers: &AnswerHeaders, conn: &ConnectionInfo) -> Response<Body> {
    let name = match &conn.peer {
        PeerIdentity::Verified(client) => client.common_name.clone(),
        _ => None,
    };
    let text = format!("Hello {}!\n", name.as_deref().unwrap_or("anonymous"));
    with_body(StatusCode::OK, &answers.text, Bytes::from(text))
}

/// `GET /cert`: the verified client certificate, its chain and the TLS facts.
fn certificate(answers: &AnswerHeaders, conn: &ConnectionInfo, html: bool) -> Response<Body> {
    let PeerIdentity::Verified(client) = &conn.peer else {
        // Only reachable with client auth off: otherwise admission refused it.
        if html {
            let mut page = Page::new("No client certificate");
            page.status(false, "No client certificate was presented on this connection.")
                .paragraph("Import your .p12 bundle into the browser (or the system keychain), reload, and pick the certificate when asked.");
            return answers.html(StatusCode::NOT_FOUND, &page);
        }
        return answers.negotiated_json(
            StatusCode::NOT_FOUND,
            &json!({ "error": "no client certificate presented" }),
        );
    };
    let Some(leaf) = client.details() else {
        return answers.negotiated_json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "error": "the verified client certificate could not be decoded" }),
        );
    };
    let chain = chain_details(client);
    if html {
        let mut page = Page::new("Your client certificate");
        page.certificate(leaf);
        for (i, cert) in chain.iter().enumerate().skip(1) {
            page.heading(&format!("Chain certificate {i}"))
                .certificate(cert);
        }
        tls_section(&mut page, &conn.tls);
        return answers.html(StatusCode::OK, &page);
    }
    #[derive(Serialize)]
    struct CertView<'a> {
        client_certificate: &'a CertDetails,
        chain: &'a [CertDetails],
        tls: &'a TlsFacts,
    }
    answers.negotiated_json(
        StatusCode::OK,
        &CertView {
            client_certificate: leaf,
            chain: &chain,
            tls: &conn.tls,
        },
    )
}

/// `GET /headers`: the request as the server saw it, with the TLS facts and
/// the client certificate in the forms upstream apps receive it.
fn headers<B>(
    answers: &AnswerHeaders,
    req: &Request<B>,
    conn: &ConnectionInfo,
    html: bool,
) -> Response<Body> {
    let mut header_map = Map::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match header_map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                header_map.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let client = match &conn.peer {
        PeerIdentity::Verified(client) => client.chain.first().map(|leaf| {
            json!({
                "pem": pem_certificate(leaf),
                "der_base64": BASE64.encode(leaf),
                "details": client.details(),
            })
        }),
        _ => None,
    };
    let view = json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "authority": req.uri().authority().map(|a| a.as_str()),
        "http_version": format!("{:?}", req.version()),
        "remote_addr": conn.remote_addr.to_string(),
        "headers": header_map,
        "tls": &conn.tls,
        "client_certificate": client,
    });
    if !html {
        return answers.negotiated_json(StatusCode::OK, &view);
    }
    let mut page = Page::new("Request headers");
    page.table(&[
        ("Method", req.method().as_str()),
        ("Path", req.uri().path()),
        ("HTTP version", &format!("{:?}", req.version())),
        ("Client address", &conn.remote_addr.to_string()),
    ]);
    page.heading("Headers");
    let rows: Vec<(String, String)> = header_map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    page.table(&rows);
    tls_section(&mut page, &conn.tls);
    if let PeerIdentity::Verified(client) = &conn.peer {
        if let Some(details) = client.details() {
            page.heading("Client certificate").certificate(details);
        }
        if let Some(leaf) = client.chain.first() {
            page.heading("As PEM").preformatted(&pem_certificate(leaf));
            page.heading("As base64 DER (the X-ARR-ClientCert form)")
                .preformatted(&BASE64.encode(leaf));
        }
    }
    answers.html(StatusCode::OK, &page)
}

fn chain_details(client: &VerifiedClient) -> Vec<CertDetails> {
    client
        .chain
        .iter()
        .filter_map(|der| CertDetails::from_der(der).ok())
        .collect()
}

fn tls_section(page: &mut Page, tls: &TlsFacts) {
    page.heading("TLS").table(&[
        ("Version", tls.version),
        ("Cipher suite", tls.cipher_suite),
        ("ALPN", tls.alpn.as_deref().unwrap_or("-")),
        ("SNI", tls.sni.as_deref().unwrap_or("-")),
    ]);
}

/// A certificate as PEM text, 64 base64 characters a line.
pub fn pem_certificate(der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A JSON response; the body ends with a newline, as Flask's `jsonify` does.
/// For answers outside the built-in routes (the admin endpoint, errors of
/// the proxy); the routes use `AnswerHeaders`.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    static JSON: LazyLock<HeaderMap> = LazyLock::new(|| own_headers("application/json"));
    with_body(status, &JSON, json_bytes(value))
}

/// Every answer mtls writes itself (not an upstream's) goes through here.
fn with_body(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers.clone();
    response
}

/// The content type and the security headers of an answer of ours.
fn own_headers(content_type: &'static str) -> HeaderMap {
    // Room for hyper's `date` and `content-length`, which its HTTP/2 side
    // inserts into the map (HTTP/1.1 writes them straight out): a copy of a
    // full map would be rehashed into a larger one on every answer
    // (callgrind, h2 keep-alive `GET /`: 39.6 k -> 39.0 k instructions).
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // JSON is never to be sniffed as HTML, and pages that show a client's
    // identity have no business inside another site's frame.
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
}

/// The headers the built-in routes' answers start from, built once: the
/// content type and the security headers, `Vary: accept` where the route
/// answers HTML or JSON as the client prefers, and Strict-Transport-Security
/// when it is on (`hsts::apply` then finds it in place). A copy of a
/// finished map costs less than inserting the headers one by one, while
/// one header more makes the copy grow (callgrind, keep-alive `GET /`).
#[derive(Debug, Clone)]
struct AnswerHeaders {
    json: HeaderMap,
    text: HeaderMap,
    negotiated_json: HeaderMap,
    /// Every HTML answer is negotiated.
    html: HeaderMap,
}

impl AnswerHeaders {
    fn new(hsts: Option<&HeaderValue>) -> Self {
        let build = |content_type, negotiated| {
            let mut headers = own_headers(content_type);
            if negotiated {
                headers.insert(VARY, HeaderValue::from_static("accept"));
            }
            if let Some(hsts) = hsts {
                headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            headers
        };
        AnswerHeaders {
            json: build("application/json", false),
            text: build("text/plain; charset=utf-8", false),
            negotiated_json: build("application/json", true),
            html: build("text/html; charset=utf-8", true),
        }
    }

    fn json<T: Serialize + ?Sized>(&self, status: StatusCode, value: &T) -> Response<Body> {
        with_body(status, &self.json, json_bytes(value))
    }

    fn negotiated_json<T: Serialize + ?Sized>(
        &self,
        status: StatusCode,
        value: &T,
    ) -> Response<Body> {
        with_body(status, &self.negotiated_json, json_bytes(value))
    }

    fn html(&self, status: StatusCode, page: &Page) -> Response<Body> {
        with_body(status, &self.html, Bytes::from(page.render()))
    }
}

fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serializing our own plain data types cannot fail.
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use hyper::header::ACCEPT;

    use super::*;

    fn conn() -> ConnectionInfo {
        ConnectionInfo::for_tests("127.0.0.1:4000".parse().unwrap(), PeerIdentity::None)
    }

    fn names(response: &Response<Body>) -> Vec<&str> {
        response
            .headers()
            .keys()
            .map(|name| name.as_str())
            .collect()
    }

    #[test]
    fn answers_carry_vary_where_negotiated_and_hsts_once_when_on() {
        let hsts = HeaderValue::from_static("max-age=60");
        for (client_auth, method, path, accept, expected_status, vary) in [
            (ClientAuthMode::Off, "GET", "/", "*/*", 200, true),
            (ClientAuthMode::Off, "GET", "/", "text/html", 200, true),
            (ClientAuthMode::Off, "GET", "/healthz", "*/*", 200, false),
            (ClientAuthMode::Off, "GET", "/hello", "*/*", 200, false),
            (ClientAuthMode::Off, "GET", "/cert", "*/*", 404, true),
            (ClientAuthMode::Off, "GET", "/nowhere", "*/*", 404, false),
            (ClientAuthMode::Required, "GET", "/", "*/*", 403, true),
            (ClientAuthMode::Required, "GET", "/", "text/html", 403, true),
        ] {
            for hsts in [Some(&hsts), None] {
                let routes = Routes::new(
                    "hi",
                    client_auth,
                    Policy::default(),
                    Arc::new(Metrics::default()),
                    hsts,
                );
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(ACCEPT, accept)
                    .body(())
                    .unwrap();
                let response = routes.handle(&req, &conn());
                let case = format!("{method} {path} ({accept}, {client_auth:?}, {hsts:?})");
                assert_eq!(response.status().as_u16(), expected_status, "{case}");
                let mut expected =
                    vec!["content-type", "x-content-type-options", "x-frame-options"];
                if vary {
                    expected.push("vary");
                }
                if hsts.is_some() {
                    expected.push("strict-transport-security");
                }
                assert_eq!(names(&response), expected, "{case}");
                assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
                assert_eq!(response.headers()[X_FRAME_OPTIONS], "DENY");
                if let Some(hsts) = hsts {
                    assert_eq!(response.headers()[STRICT_TRANSPORT_SECURITY], hsts);
                }
            }
        }
    }

    #[test]
    fn other_methods_are_refused_with_allow() {
        let routes = Routes::new(
            "hi",
            ClientAuthMode::Off,
            Policy::default(),
            Arc::new(Metrics::default()),
            None,
        );
        let req = Request::post("/").body(()).unwrap();
        let response = routes.handle(&req, &conn());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], ALLOWED_METHODS);
    }
}
