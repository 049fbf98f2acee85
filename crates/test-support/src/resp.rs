//! A few lines of RESP over a plain blocking TCP connection: for the harness's checks of a Redis or
//! sentinel node it started (roles, replication links, sentinel state), where no client library is set up
//! and the caller may not be async.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A RESP reply, as far as the harness needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// Sends one command to `127.0.0.1:port` and reads its reply; `None` when the node does not answer.
pub fn command(port: u16, args: &[&str]) -> Option<Reply> {
    command_as(port, None, args)
}

/// As [`command`], first authenticating as `(user, password)` when given (a node whose `default` user is
/// off). A refused `AUTH` is returned as its error reply instead of the command's.
pub fn command_as(port: u16, auth: Option<(&str, &str)>, args: &[&str]) -> Option<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = String::new();
    let mut replies = 1;
    if let Some((user, password)) = auth {
        encode(&mut req, &["AUTH", user, password]);
        replies += 1;
    }
    encode(&mut req, args);
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut at = 0;
    loop {
        while let Some((reply, used)) = buf.get(at..).and_then(parse) {
            at += used;
            replies -= 1;
            if replies == 0 || matches!(reply, Reply::Error(_)) {
                return Some(reply);
            }
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Appends `args` as one RESP command (an array of bulk strings).
fn encode(req: &mut String, args: &[&str]) {
    req.push_str(&format!("*{}\r\n", args.len()));
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
}

/// Parses one reply from the start of `buf`: the reply and the bytes it used, `None` when incomplete.
fn parse(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(buf.get(1..end)?).ok()?;
    let next = end + 2;
    match buf.first()? {
        b'+' => Some((Reply::Simple(line.to_owned()), next)),
        b'-' => Some((Reply::Error(line.to_owned()), next)),
        b':' => Some((Reply::Int(line.parse().ok()?), next)),
        b'$' => {
            let len: i64 = line.parse().ok()?;
            let Ok(len) = usize::try_from(len) else {
                return Some((Reply::Bulk(None), next));
            };
            let body = buf.get(next..next + len)?;
            buf.get(next + len..next + len + 2)?;
            Some((
                Reply::Bulk(Some(String::from_utf8_lossy(body).into_owned())),
                next + len + 2,
            ))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..n.max(0) {
                let (item, used) = parse(buf.get(at..)?)?;
                items.push(item);
                at += used;
            }
            Some((Reply::Array(items), at))
        }
        _ => None,
    }
}

/// A field of `INFO section` on a data node.
pub fn info_field(port: u16, section: &str, name: &str) -> Option<String> {
    let Some(Reply::Bulk(Some(text))) = command(port, &["INFO", section]) else {
        return None;
    };
    let prefix = format!("{name}:");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies_and_waits_for_complete_ones() {
        let raw = b"*3\r\n$9\r\n127.0.0.1\r\n:42\r\n*1\r\n$-1\r\n";
        let Some((reply, used)) = parse(raw) else {
            panic!("incomplete")
        };
        assert_eq!(used, raw.len());
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Bulk(Some("127.0.0.1".into())),
                Reply::Int(42),
                Reply::Array(vec![Reply::Bulk(None)]),
            ])
        );
        assert!(parse(&raw[..raw.len() - 3]).is_none());
    }
}
