//! What the loopback servers of these tests share (the Slack receiver, the Lambda Runtime API).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// Reads one HTTP/1.1 request: its request line and its body (by Content-Length). `None` when
/// the client closed the connection.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return None;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((request.trim_end().to_string(), body))
}
