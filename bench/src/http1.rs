//! The load generator's HTTP/1.1 client, written by hand: one fixed request,
//! and a response read by its Content-Length. It does the least work a
//! client can, so that the client (on one core) stays as fast as possible.

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `GET path` for `host`; with `close`, the server is asked to close the
/// connection after the response (a new connection per request).
pub fn request(host: &str, path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mtls-bench-loadgen\r\nAccept: */*\r\nConnection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

/// The parts of a response head the load generator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub content_length: usize,
}

/// Parses a response head at the start of `buf`; `None` until the blank line
/// that ends it has arrived.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("response head longer than 64 KiB");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line `{line}`");
        };
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("bad Content-Length `{value}`"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the load generator");
        }
    }
    Ok(Some(Head {
        status,
        len: end + 4,
        content_length: content_length.context("response without Content-Length")?,
    }))
}

/// Sends `request` and reads one response; fails unless it is a 200 whose
/// body contains `expect`. `buf` is reused between calls.
pub async fn exchange<S>(
    stream: &mut S,
    request: &[u8],
    expect: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request).await.context("sending request")?;
    stream.flush().await.context("sending request")?;
    buf.clear();
    let mut head = None;
    loop {
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(8192);
        }
        let n = stream.read_buf(buf).await.context("reading response")?;
        if n == 0 {
            bail!("connection closed before the response was complete");
        }
        if head.is_none() {
            head = parse_head(buf)?;
        }
        if let Some(head) = head
            && buf.len() >= head.len + head.content_length
        {
            if head.status != 200 {
                bail!("status {} instead of 200", head.status);
            }
            let body = &buf[head.len..head.len + head.content_length];
            if !body.windows(expect.len()).any(|w| w == expect) {
                bail!(
                    "unexpected body: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
            }
            if buf.len() > head.len + head.content_length {
                bail!("bytes after the response that nobody asked for");
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_incomplete_until_the_blank_line() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n").unwrap(),
            None
        );
    }

    #[test]
    fn head_gives_status_length_and_content_length_in_any_case() {
        let text = b"HTTP/1.1 200 OK\r\ncontent-length: 45\r\nServer: x\r\n\r\nbody";
        assert_eq!(
            parse_head(text).unwrap(),
            Some(Head {
                status: 200,
                len: text.len() - 4,
                content_length: 45
            })
        );
    }

    #[test]
    fn chunked_and_lengthless_responses_are_refused() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn exchange_reads_a_response_split_across_reads_and_checks_the_body() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let serve = tokio::spawn(async move {
            let mut request = vec![0u8; 1024];
            let n = server.read(&mut request).await.unwrap();
            assert!(request[..n].starts_with(b"GET /x HTTP/1.1\r\nHost: h\r\n"));
            for piece in [
                &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
                b"ngth: 5\r\n\r\nhel",
                b"lo",
            ] {
                server.write_all(piece).await.unwrap();
                server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        let mut buf = Vec::new();
        exchange(&mut client, &request("h", "/x", false), b"ell", &mut buf)
            .await
            .unwrap();
        let mut server = serve.await.unwrap();

        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let err = exchange(&mut client, b"", b"bye", &mut buf)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unexpected body"), "{err}");

        server
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let err = exchange(&mut client, b"", b"", &mut buf).await.unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
    }
}
