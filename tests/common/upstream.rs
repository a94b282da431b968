//! A small real upstream app for proxy tests: plain HTTP/1.1 on 127.0.0.1:0.
//! - any path: JSON of what it received (method, path, headers in order,
//!   body length counted while streaming, never buffered);
//! - `/slow` (and paths that start so): answers after 3 seconds;
//! - `/big`: [`BIG`] bytes of zeros;
//! - `/drip`: [`DRIP_CHUNK`], then 3 seconds later the same again (a
//!   streamed answer whose app pauses, like server-sent events);
//! - `/ws` with `Upgrade`: 101, then echoes every byte back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The length of `/big`'s answer: more than the socket buffers between a
/// client and the upstream hold (a few MiB each on loopback).
pub const BIG: usize = 64 << 20;

/// Allocated once, when first asked for. A `static [u8; BIG]` would sit in
/// `.rodata`: 64 MiB in every test binary, which filled a CI machine's disk.
static ZEROS: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(vec![0; BIG]));

/// What `/drip` sends twice.
pub const DRIP_CHUNK: &[u8] = b"data: drip\n\n";

/// `/drip`'s body: a chunk, a pause, a chunk.
struct Drip {
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    sent: u8,
}

impl Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        if self.sent == 2 {
            return Poll::Ready(None);
        }
        if self.sent == 1 {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_secs(3))));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.sent += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(DRIP_CHUNK)))))
    }
}

pub struct EchoUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    open: Arc<AtomicUsize>,
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let counted = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let open = counted.clone();
                open.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(answer);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                    open.fetch_sub(1, SeqCst);
                });
            }
        });
        EchoUpstream { addr, task, open }
    }

    /// Connections to the upstream that are open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type AnswerBody = BoxBody<Bytes, Infallible>;

fn full(bytes: Bytes) -> AnswerBody {
    Full::new(bytes).boxed()
}

async fn answer(mut req: Request<Incoming>) -> Result<Response<AnswerBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if path == "/big" {
        return Ok(Response::new(full(ZEROS.clone())));
    }
    if path == "/drip" {
        return Ok(Response::new(
            Drip {
                pause: None,
                sent: 0,
            }
            .boxed(),
        ));
    }
    if path == "/ws" && req.headers().contains_key(hyper::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        });
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert(hyper::header::UPGRADE, "websocket".parse().unwrap());
        response
            .headers_mut()
            .insert(hyper::header::CONNECTION, "upgrade".parse().unwrap());
        return Ok(response);
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_owned);
    let mut body = req.into_body();
    let mut body_len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map(|f| f.into_data()) {
            body_len += data.map(|d| d.len() as u64).unwrap_or(0);
        } else {
            break;
        }
    }
    let json = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": body_len,
    });
    Ok(Response::new(full(Bytes::from(json.to_string()))))
}

/// The values of a header the upstream received (lowercase name).
pub fn received<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().unwrap())
        .collect()
}
