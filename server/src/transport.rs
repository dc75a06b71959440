//! The byte stream between the client and tower-lsp-server's transport.
//!
//! tower-lsp-server decodes frames with a tokio-util codec, and a codec error ends
//! the stream: one malformed message from the client would shut the server down.
//! So frames are read here first. Well-formed JSON-RPC messages are passed on
//! unchanged; a body that is not JSON gets a Parse error (-32700) and one that is
//! JSON but not a JSON-RPC message gets an Invalid Request (-32600), written by us
//! between the server's own frames, and the server never sees them.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{Request, Response};

/// The largest message body accepted (an opened file's text travels in one).
const MAX_BODY: usize = 1 << 30;

/// One frame's body, or why there is none.
enum Frame {
    Body(Vec<u8>),
    /// A broken header; the reader skipped to the next one.
    BadHeader(String),
    Eof,
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Frame> {
    let mut len: Option<usize> = None;
    let mut bad: Option<String> = None;
    let mut line = Vec::new();
    let mut saw_any = false;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(if saw_any {
                Frame::BadHeader("the stream ended inside a header".into())
            } else {
                Frame::Eof
            });
        }
        saw_any = true;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if len.is_some() || bad.is_some() {
                break;
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                match value.trim().parse::<usize>() {
                    Ok(n) if n <= MAX_BODY => len = Some(n),
                    Ok(n) => {
                        bad = Some(format!(
                            "a {n}-byte message is over the limit of {MAX_BODY}"
                        ))
                    }
                    Err(_) => bad = Some(format!("bad Content-Length `{}`", value.trim())),
                }
            }
            Some((name, _)) if name.eq_ignore_ascii_case("content-type") => {}
            _ => {
                bad = Some(format!(
                    "unexpected header line `{}`",
                    text.chars().take(80).collect::<String>()
                ))
            }
        }
    }
    match (len, bad) {
        (Some(n), None) => {
            let mut body = vec![0u8; n];
            r.read_exact(&mut body).await?;
            Ok(Frame::Body(body))
        }
        (_, Some(why)) => Ok(Frame::BadHeader(why)),
        (None, None) => Ok(Frame::BadHeader("a header without Content-Length".into())),
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn error_response(id: Value, code: i64, message: String) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
        .into_bytes()
}

/// Checks a body; `Err` is the error response to send instead of passing it on.
///
/// tower-lsp-server's decoder reads a body as its own `Response`, else its own
/// `Request`, and a body that is neither ends its input stream for good: the
/// server would stop reading while the process lives on. So a body passes only
/// if it deserialises into one of those same two types.
fn check(body: &[u8]) -> Result<(), Vec<u8>> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(error_response(
                Value::Null,
                -32700,
                format!("parse error: {e}"),
            ))
        }
    };
    let decodable = serde_json::from_value::<Response>(v.clone()).is_ok()
        || serde_json::from_value::<Request>(v.clone()).is_ok();
    if !decodable {
        // Echo the id when it is one JSON-RPC allows (a string or an integer).
        let id = v
            .get("id")
            .cloned()
            .filter(|id| id.is_string() || id.is_i64() || id.is_u64());
        return Err(error_response(
            id.unwrap_or(Value::Null),
            -32600,
            "invalid request: not a JSON-RPC 2.0 request, notification or response".into(),
        ));
    }
    Ok(())
}

/// Pumps client → server frames, answering malformed ones itself.
pub async fn pump_input<R, W>(input: R, mut to_server: W, errors: mpsc::UnboundedSender<Vec<u8>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(input);
    loop {
        let body = match read_frame(&mut reader).await {
            Ok(Frame::Body(b)) => b,
            Ok(Frame::BadHeader(why)) => {
                tracing::warn!("malformed message header: {why}");
                let _ = errors.send(error_response(
                    Value::Null,
                    -32700,
                    format!("parse error: {why}"),
                ));
                continue;
            }
            Ok(Frame::Eof) => break,
            Err(e) => {
                tracing::info!("client input closed: {e}");
                break;
            }
        };
        match check(&body) {
            Ok(()) => {
                if to_server.write_all(&frame(&body)).await.is_err() {
                    break;
                }
            }
            Err(response) => {
                tracing::warn!("answered a malformed message with an error");
                let _ = errors.send(response);
            }
        }
    }
    let _ = to_server.shutdown().await;
}

/// Pumps server → client frames, putting our own error responses between them.
///
/// The server's frames are read on their own loop and handed over through a
/// channel: reading a frame is not cancellation-safe (a `select!` that dropped a
/// half-read frame would lose it and misread the rest), receiving from a channel is.
pub async fn pump_output<R, W>(
    from_server: R,
    mut output: W,
    mut errors: mpsc::UnboundedReceiver<Vec<u8>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(64);
    let read = async move {
        let mut reader = BufReader::new(from_server);
        loop {
            match read_frame(&mut reader).await {
                Ok(Frame::Body(body)) => {
                    if frames_tx.send(body).await.is_err() {
                        break;
                    }
                }
                Ok(Frame::BadHeader(why)) => tracing::error!("the server wrote a bad frame: {why}"),
                Ok(Frame::Eof) | Err(_) => break,
            }
        }
    };
    let write = async {
        let mut errors_open = true;
        loop {
            // Our errors first: the error for a malformed message is queued
            // before any later message reaches the server, so this keeps the
            // answers in the order of the messages they answer. An unbiased
            // select could write a later request's response before it.
            let body = tokio::select! {
                biased;
                injected = errors.recv(), if errors_open => match injected {
                    Some(body) => body,
                    None => {
                        errors_open = false;
                        continue;
                    }
                },
                body = frames.recv() => match body {
                    Some(body) => body,
                    None => break,
                },
            };
            if output.write_all(&frame(&body)).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
        // Stop the reader too (it may be waiting to hand over a frame).
        drop(frames);
        let _ = output.flush().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        assert!(check(br#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#).is_ok());
        assert!(check(br#"{"jsonrpc":"2.0","id":3,"result":null}"#).is_ok());
        let e: Value = serde_json::from_slice(&check(b"{nope").unwrap_err()).unwrap();
        assert_eq!(
            (e["id"].clone(), e["error"]["code"].as_i64()),
            (Value::Null, Some(-32700))
        );
        let e: Value =
            serde_json::from_slice(&check(br#"{"id":4,"method":"x"}"#).unwrap_err()).unwrap();
        assert_eq!(
            (e["id"].as_i64(), e["error"]["code"].as_i64()),
            (Some(4), Some(-32600))
        );
        let e: Value = serde_json::from_slice(&check(b"[1,2]").unwrap_err()).unwrap();
        assert_eq!(e["error"]["code"], -32600);
        // Ids tower-lsp-server cannot decode would end its input stream: they are
        // answered here, with a null id when the id itself is what is wrong.
        for body in [
            &br#"{"jsonrpc":"2.0","id":{"a":1},"method":"workspace/symbol"}"#[..],
            br#"{"jsonrpc":"2.0","id":2.5,"method":"workspace/symbol"}"#,
            br#"{"jsonrpc":"2.0","id":[1],"result":null}"#,
        ] {
            let e: Value = serde_json::from_slice(&check(body).unwrap_err()).unwrap();
            assert_eq!(
                (e["id"].clone(), e["error"]["code"].as_i64()),
                (Value::Null, Some(-32600)),
                "{e}"
            );
        }
        let e: Value = serde_json::from_slice(
            &check(br#"{"jsonrpc":"1.0","id":"old","method":"x"}"#).unwrap_err(),
        )
        .unwrap();
        assert_eq!(e["id"], "old");
    }

    /// The server's frames and our error responses as they reach the client.
    async fn client_sees(server_frames: &[&[u8]], errors: &[&[u8]]) -> Vec<Value> {
        let from_server: Vec<u8> = server_frames.iter().flat_map(|b| frame(b)).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        for e in errors {
            tx.send(e.to_vec()).unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        pump_output(&from_server[..], &mut out, rx).await;
        let mut r = BufReader::new(&out[..]);
        let mut seen = Vec::new();
        while let Frame::Body(b) = read_frame(&mut r).await.unwrap() {
            seen.push(serde_json::from_slice(&b).unwrap());
        }
        seen
    }

    #[tokio::test]
    async fn an_error_already_queued_goes_out_before_later_frames() {
        // Both are ready at once: the error answers a message the client sent
        // before the request whose response the server wrote. Repeated: an
        // unbiased choice takes the response first about half the time, and then
        // finds the server's stream ended and never writes the error at all.
        for _ in 0..32 {
            let seen = client_sees(
                &[br#"{"jsonrpc":"2.0","id":1,"result":null}"#],
                &[&check(b"{nope").unwrap_err()],
            )
            .await;
            let codes: Vec<_> = seen.iter().map(|m| m["error"]["code"].as_i64()).collect();
            assert_eq!(codes, [Some(-32700), None], "{seen:?}");
        }
    }

    #[tokio::test]
    async fn frames_survive_garbage_between_them() {
        let input = b"Content-Length: 2\r\n\r\n{}garbage line\r\n\r\nContent-Length: 4\r\n\r\nnull"
            .to_vec();
        let mut r = BufReader::new(&input[..]);
        assert!(matches!(read_frame(&mut r).await.unwrap(), Frame::Body(b) if b == b"{}"));
        assert!(matches!(
            read_frame(&mut r).await.unwrap(),
            Frame::BadHeader(_)
        ));
        assert!(matches!(read_frame(&mut r).await.unwrap(), Frame::Body(b) if b == b"null"));
        assert!(matches!(read_frame(&mut r).await.unwrap(), Frame::Eof));
    }
}
