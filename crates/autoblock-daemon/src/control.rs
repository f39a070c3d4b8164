//! The control socket: a unix stream socket (mode 0600, so root only) carrying one JSON
//! request per line and one JSON reply per line.
//!
//! Requests: `{"cmd":"block","entries":[{"net":"192.0.2.7","timeout":3600,"comment":"x"}]}`,
//! `{"cmd":"unblock","nets":["192.0.2.7"]}`, `{"cmd":"list"}`, `{"cmd":"status"}`.
//! Replies: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! This module owns the wire format, the listener (which forwards each request to the daemon's
//! loop and writes back its answer) and a small blocking client for the CLI. It decides
//! nothing itself: the daemon's loop does.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// Longest request line accepted (bytes).
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// One entry of a `block` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEntry {
    /// `ADDR` or `ADDR/LEN`.
    pub net: String,
    /// Seconds until the ban ends; absent = permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// The operator's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Request {
    /// Ban these networks (recorded in the store, then applied).
    Block {
        /// What to ban.
        entries: Vec<BlockEntry>,
    },
    /// Lift bans.
    Unblock {
        /// `ADDR` or `ADDR/LEN` each.
        nets: Vec<String>,
    },
    /// The bans as the kernel holds them, with the jail that set each.
    List,
    /// Per-jail counters, bans active, last self-heal.
    Status,
}

/// A request with the channel its reply goes to.
#[derive(Debug)]
pub struct Envelope {
    /// The request.
    pub request: Request,
    /// Where the daemon sends its JSON reply.
    pub reply: oneshot::Sender<serde_json::Value>,
}

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Creating, binding or securing the socket failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's reply was not JSON.
    #[error("{path}: the daemon's reply is not JSON: {reason} (reply: {text})")]
    BadReply {
        /// The socket path.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
        /// The reply text.
        text: String,
    },
}

/// Binds the socket at `path` (replacing a stale one), mode 0600, parent directory created
/// with mode 0700 if missing.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |what, source| ControlError::Io {
        path: path.to_owned(),
        what,
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating its directory", e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io("securing its directory", e))?;
        }
    }
    if path.exists() {
        // A daemon that is still running answers; never steal its socket.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io(
                "another daemon is listening there",
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
            ));
        }
        std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))?;
    }
    let l = UnixListener::bind(path).map_err(|e| io("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("setting mode 0600", e))?;
    Ok(l)
}

/// Accepts connections until the listener fails or the daemon's loop is gone; each line is a
/// request forwarded to `to_daemon`.
pub async fn serve(listener: UnixListener, to_daemon: mpsc::Sender<Envelope>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tracing::warn!("control socket: accept failed; retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let tx = to_daemon.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                let reply = if line.len() > MAX_REQUEST {
                    error_reply("request too long")
                } else {
                    match serde_json::from_str::<Request>(&line) {
                        Err(e) => error_reply(&format!("bad request: {e}")),
                        Ok(request) => {
                            let (reply, rx) = oneshot::channel();
                            if tx.send(Envelope { request, reply }).await.is_err() {
                                error_reply("the daemon is stopping")
                            } else {
                                rx.await
                                    .unwrap_or_else(|_| error_reply("the daemon is stopping"))
                            }
                        }
                    }
                };
                let mut text = reply.to_string();
                text.push('\n');
                if w.write_all(text.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// A failure reply.
pub fn error_reply(reason: &str) -> serde_json::Value {
    serde_json::json!({"ok": false, "error": reason})
}

/// Sends one request to a running daemon and returns its reply; `Ok(None)` when no daemon
/// listens at `path` (no socket, or nobody accepts).
pub fn call(path: &Path, req: &Request) -> Result<Option<serde_json::Value>, ControlError> {
    let io = |what, source| ControlError::Io {
        path: path.to_owned(),
        what,
        source,
    };
    let mut s = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io("connecting", e)),
    };
    let mut text = serde_json::to_string(req).unwrap_or_default();
    text.push('\n');
    s.write_all(text.as_bytes()).map_err(|e| io("sending", e))?;
    let mut reply = String::new();
    BufReader::new(&s)
        .read_line(&mut reply)
        .map_err(|e| io("reading the reply", e))?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|e| ControlError::BadReply {
            path: path.to_owned(),
            reason: e.to_string(),
            text: reply.trim_end().to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"block","entries":[{"net":"192.0.2.7","timeout":60}]}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::Block {
                entries: vec![BlockEntry {
                    net: "192.0.2.7".into(),
                    timeout: Some(60),
                    comment: None
                }]
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[tokio::test]
    async fn socket_is_0600_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/control.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        tokio::spawn(serve(l, tx));
        tokio::spawn(async move {
            while let Some(env) = rx.recv().await {
                let _ = env
                    .reply
                    .send(serde_json::json!({"ok": true, "echo": format!("{:?}", env.request)}));
            }
        });
        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || call(&p, &Request::List))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply["ok"], true);
        assert_eq!(reply["echo"], "List");
        // A second bind while the first listens is refused.
        assert!(bind(&path).is_err());
        // No socket: no daemon.
        assert!(call(&dir.path().join("none.sock"), &Request::List)
            .unwrap()
            .is_none());
    }
}
