//! The routes `mtls serve` answers itself.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::identity::{ConnectionInfo, PeerIdentity};

pub type Body = Full<Bytes>;

/// Settings the routes need, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Routes {
    welcome: Bytes,
}

const ALLOWED_METHODS: &str = "GET, HEAD";

impl Routes {
    pub fn new(welcome_message: &str) -> Self {
        Routes {
            welcome: json_bytes(&json!({ "message": welcome_message })),
        }
    }

    pub fn handle<B>(&self, req: &Request<B>, conn: &ConnectionInfo) -> Response<Body> {
        let path = req.uri().path();
        let known = matches!(path, "/" | "/healthz" | "/cert");
        if !known {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not found", "path": path }),
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": "method not allowed", "allow": ALLOWED_METHODS }),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            return response;
        }
        match path {
            "/" => with_json_body(StatusCode::OK, self.welcome.clone()),
            "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
            _ => client_certificate(conn),
        }
    }
}

fn client_certificate(conn: &ConnectionInfo) -> Response<Body> {
    match &conn.peer {
        PeerIdentity::Verified(client) => match &client.leaf {
            Some(summary) => json_response(StatusCode::OK, summary),
            None => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": "the verified client certificate could not be decoded" }),
            ),
        },
        PeerIdentity::None => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "no client certificate presented" }),
        ),
    }
}

/// A JSON response; the body ends with a newline, as Flask's `jsonify` does.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    with_json_body(status, json_bytes(value))
}

fn with_json_body(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serializing our own plain data types cannot fail.
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    Bytes::from(body)
}
