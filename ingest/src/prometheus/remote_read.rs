//! Prometheus remote read (`/api/v1/read`) with streamed XOR chunks: the server sends each
//! series' stored chunks as they are on disk, without decoding a sample, and the samples are
//! decoded here. Reading a month of DCGM samples this way costs the server a copy of its chunks
//! instead of three PromQL passes over every sample (docs/design.md §5, "Reading DCGM series").
//!
//! The wire format (prompb `remote.proto`, `types.proto`; `storage/remote/chunked.go`) is small
//! enough to write by hand, which keeps a protobuf code generator out of the build: a snappy
//! compressed `ReadRequest` goes out; frames of `uvarint length, big-endian CRC-32C, message`
//! holding `ChunkedReadResponse`s come back.

use std::time::Duration;

use super::{Attempt, PrometheusSource, Transport};
use crate::{Error, Result};

/// A label matcher of a remote read query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
}

/// One series' labels, sorted by name as Prometheus sends them.
pub type Labels = Vec<(String, String)>;

/// How a remote read went when it did not fail outright.
#[derive(Debug)]
pub enum RawRead {
    Done,
    /// The server does not offer streamed remote read (not Prometheus, switched off, or a proxy
    /// in front that only passes PromQL): the reason, for the run's log.
    Unsupported(String),
}

// ---- protobuf, by hand: only the fields remote read uses ------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_int(out: &mut Vec<u8>, field: u32, v: i64) {
    put_varint(out, u64::from(field << 3));
    put_varint(out, v as u64);
}

/// `ReadRequest { queries: [Query { start, end, matchers }], accepted_response_types: [STREAMED_XOR_CHUNKS] }`.
fn read_request(matchers: &[(MatchOp, &str, &str)], start_ms: i64, end_ms: i64) -> Vec<u8> {
    let mut query = Vec::new();
    put_int(&mut query, 1, start_ms);
    put_int(&mut query, 2, end_ms);
    for (op, name, value) in matchers {
        let mut m = Vec::new();
        put_int(&mut m, 1, if *op == MatchOp::Equal { 0 } else { 1 });
        put_bytes(&mut m, 2, name.as_bytes());
        put_bytes(&mut m, 3, value.as_bytes());
        put_bytes(&mut query, 3, &m);
    }
    let mut request = Vec::new();
    put_bytes(&mut request, 1, &query);
    put_int(&mut request, 2, 1);
    request
}

/// A protobuf message being read: (field, wire value) pairs.
struct Fields<'a> {
    data: &'a [u8],
}

enum Wire<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in data.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u32, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let bad = || Some(Err("a remote read message is cut short or malformed".to_string()));
        let Some((key, n)) = varint(self.data) else { return bad() };
        self.data = &self.data[n..];
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => {
                let Some((v, n)) = varint(self.data) else { return bad() };
                self.data = &self.data[n..];
                Some(Ok((field, Wire::Int(v))))
            }
            2 => {
                let Some((len, n)) = varint(self.data) else { return bad() };
                let end = n.checked_add(len as usize).filter(|e| *e <= self.data.len());
                let Some(end) = end else { return bad() };
                let bytes = &self.data[n..end];
                self.data = &self.data[end..];
                Some(Ok((field, Wire::Bytes(bytes))))
            }
            1 if self.data.len() >= 8 => {
                self.data = &self.data[8..];
                Some(Ok((field, Wire::Int(0))))
            }
            5 if self.data.len() >= 4 => {
                self.data = &self.data[4..];
                Some(Ok((field, Wire::Int(0))))
            }
            _ => bad(),
        }
    }
}

fn fields(data: &[u8]) -> Fields<'_> {
    Fields { data }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// CRC-32 with the Castagnoli polynomial, as the frames carry it.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *entry = c;
        }
        table
    });
    !data.iter().fold(!0u32, |c, b| table[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8))
}

// ---- XOR chunks (tsdb/chunkenc/xor.go) ---------------------------------------------------------

/// The bits of a chunk, most significant first.
struct Bits<'a> {
    data: &'a [u8],
    /// Bit position from the start of `data`.
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.at / 8)?;
        let bit = byte >> (7 - self.at % 8) & 1;
        self.at += 1;
        Some(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if self.at + n as usize > self.data.len() * 8 {
            return None;
        }
        let offset = (self.at % 8) as u32;
        if offset + n > 64 {
            let high = self.bits(n - 32)?;
            return Some(high << 32 | self.bits(32)?);
        }
        // Eight bytes from the current one (zeros past the end), the wanted bits at the top.
        let byte = self.at / 8;
        let word = match self.data.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("eight bytes")),
            None => {
                let mut padded = [0u8; 8];
                padded[..self.data.len() - byte].copy_from_slice(&self.data[byte..]);
                u64::from_be_bytes(padded)
            }
        };
        self.at += n as usize;
        Some((word << offset) >> (64 - n))
    }

    /// A varint written byte by byte into the stream (the first sample's fields).
    fn byte_varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

/// Appends the samples of an XOR chunk to `out`.
pub(crate) fn xor_samples(chunk: &[u8], out: &mut Vec<(i64, f64)>) -> std::result::Result<(), String> {
    let bad = || "an XOR chunk is cut short".to_string();
    if chunk.len() < 2 {
        return Err(bad());
    }
    let total = u16::from_be_bytes([chunk[0], chunk[1]]) as usize;
    let mut bits = Bits { data: &chunk[2..], at: 0 };
    let (mut t, mut value, mut delta) = (0i64, 0u64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    out.reserve(total);
    for i in 0..total {
        if i == 0 {
            let zigzag = bits.byte_varint().ok_or_else(bad)?;
            t = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
            value = bits.bits(64).ok_or_else(bad)?;
            out.push((t, f64::from_bits(value)));
            continue;
        }
        if i == 1 {
            delta = bits.byte_varint().ok_or_else(bad)?;
        } else {
            let mut prefix = 0u8;
            for _ in 0..4 {
                prefix <<= 1;
                if !bits.bit().ok_or_else(bad)? {
                    break;
                }
                prefix |= 1;
            }
            let dod = match prefix {
                0b0 => 0i64,
                0b1111 => bits.bits(64).ok_or_else(bad)? as i64,
                _ => {
                    let size = match prefix {
                        0b10 => 14,
                        0b110 => 17,
                        _ => 20,
                    };
                    let raw = bits.bits(size).ok_or_else(bad)? as i64;
                    // Two's complement in `size` bits; the range is -(2^(n-1) - 1) ..= 2^(n-1).
                    if raw > 1 << (size - 1) {
                        raw - (1 << size)
                    } else {
                        raw
                    }
                }
            };
            delta = (delta as i64).wrapping_add(dod) as u64;
        }
        t = t.wrapping_add(delta as i64);
        if bits.bit().ok_or_else(bad)? {
            if bits.bit().ok_or_else(bad)? {
                leading = bits.bits(5).ok_or_else(bad)? as u32;
                let significant = match bits.bits(6).ok_or_else(bad)? as u32 {
                    0 => 64,
                    n => n,
                };
                trailing = 64u32.checked_sub(leading + significant).ok_or_else(bad)?;
            }
            let significant = 64 - leading - trailing;
            value ^= bits.bits(significant).ok_or_else(bad)? << trailing;
        }
        out.push((t, f64::from_bits(value)));
    }
    Ok(())
}

/// Prometheus' staleness marker: a NaN with this exact payload, which queries never see.
pub(crate) fn is_stale(value: f64) -> bool {
    value.to_bits() == 0x7ff0_0000_0000_0002
}

// ---- the request --------------------------------------------------------------------------------

impl PrometheusSource {
    /// Every series matching `matchers` in `[start_ms, end_ms]` (inclusive, as remote read takes
    /// it; whole chunks come back, so samples outside the range are passed too): `visit` gets
    /// each series' labels and samples, in time order. A series may come in more than one call
    /// (the server cuts frames at a size), always one after another.
    pub async fn remote_read(&self, matchers: &[(MatchOp, &str, &str)], start_ms: i64, end_ms: i64, mut visit: impl FnMut(&Labels, &[(i64, f64)])) -> Result<RawRead> {
        let http = match &self.transport {
            Transport::Client(client) => client.inner().clone(),
            Transport::SigV4 { .. } => return Ok(RawRead::Unsupported("Amazon Managed Service for Prometheus is read with PromQL".into())),
        };
        let body =
            snap::raw::Encoder::new().compress_vec(&read_request(matchers, start_ms, end_ms)).map_err(|e| Error::Prometheus { at: self.url.clone(), message: format!("remote read request: {e}") })?;
        let url = format!("{}/api/v1/read", self.url);
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
            }
            let request = http
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Read-Version", "0.1.0")
                .timeout(Duration::from_secs(600))
                .body(body.clone());
            match self.stream_frames(request, &mut visit).await {
                Ok(read) => return Ok(read),
                Err(Attempt::Retry(message)) => last = message,
                Err(Attempt::Fail(message)) => return Err(Error::Prometheus { at: self.url.clone(), message }),
            }
        }
        Err(Error::Prometheus { at: self.url.clone(), message: format!("no answer after {} attempts (remote read): {last}. Check the URL and that Prometheus is running", self.attempts) })
    }

    /// Sends one remote read and decodes its frames as they arrive.
    async fn stream_frames(&self, request: reqwest::RequestBuilder, visit: &mut impl FnMut(&Labels, &[(i64, f64)])) -> std::result::Result<RawRead, Attempt> {
        let mut response = request.send().await.map_err(|e| Attempt::Retry(crate::error_chain(&e)))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let body = response.text().await.unwrap_or_default();
            return Err(Attempt::Retry(format!("HTTP {status}: {}", body.chars().take(300).collect::<String>())));
        }
        if matches!(status.as_u16(), 400 | 404 | 405 | 406 | 415 | 501) {
            let body = response.text().await.unwrap_or_default();
            return Ok(RawRead::Unsupported(format!("remote read answered HTTP {status}: {}", body.trim().chars().take(200).collect::<String>())));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Attempt::Fail(format!("remote read failed: HTTP {status}: {}", body.chars().take(300).collect::<String>())));
        }
        let kind = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if !kind.starts_with("application/x-streamed-protobuf") {
            return Ok(RawRead::Unsupported(format!("remote read answered `{kind}`, not streamed chunks")));
        }
        let mut buffer: Vec<u8> = Vec::new();
        let mut samples: Vec<(i64, f64)> = Vec::new();
        let mut labels: Labels = Vec::new();
        loop {
            let more = response.chunk().await.map_err(|e| Attempt::Retry(crate::error_chain(&e)))?;
            if let Some(bytes) = &more {
                buffer.extend_from_slice(bytes);
            }
            let mut used = 0;
            while let Some((size, n)) = varint(&buffer[used..]) {
                let start = used + n + 4;
                let Some(end) = start.checked_add(size as usize).filter(|e| *e <= buffer.len()) else { break };
                let sum = u32::from_be_bytes(buffer[used + n..start].try_into().expect("four bytes"));
                let frame = &buffer[start..end];
                if crc32c(frame) != sum {
                    return Err(Attempt::Retry("remote read: a frame's checksum does not match (corrupted in transit)".into()));
                }
                decode_frame(frame, &mut labels, &mut samples, visit).map_err(Attempt::Fail)?;
                used = end;
            }
            buffer.drain(..used);
            if more.is_none() {
                if !buffer.is_empty() {
                    return Err(Attempt::Retry("remote read: the answer stopped mid-frame".into()));
                }
                return Ok(RawRead::Done);
            }
        }
    }
}

/// One `ChunkedReadResponse`: each series' labels and samples to `visit`.
fn decode_frame(frame: &[u8], labels: &mut Labels, samples: &mut Vec<(i64, f64)>, visit: &mut impl FnMut(&Labels, &[(i64, f64)])) -> std::result::Result<(), String> {
    for field in fields(frame) {
        let (1, Wire::Bytes(series)) = field? else { continue };
        labels.clear();
        samples.clear();
        for field in fields(series) {
            match field? {
                (1, Wire::Bytes(label)) => {
                    let (mut name, mut value) = (String::new(), String::new());
                    for f in fields(label) {
                        match f? {
                            (1, Wire::Bytes(b)) => name = text(b),
                            (2, Wire::Bytes(b)) => value = text(b),
                            _ => {}
                        }
                    }
                    labels.push((name, value));
                }
                (2, Wire::Bytes(chunk)) => {
                    let (mut encoding, mut data) = (0u64, &[][..]);
                    for f in fields(chunk) {
                        match f? {
                            (3, Wire::Int(e)) => encoding = e,
                            (4, Wire::Bytes(b)) => data = b,
                            _ => {}
                        }
                    }
                    if encoding != 1 {
                        let name = labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.as_str()).unwrap_or_default();
                        return Err(format!("remote read: series `{name}` holds a chunk of encoding {encoding}, not float samples (XOR); a histogram is not a utilisation metric"));
                    }
                    xor_samples(data, samples)?;
                }
                _ => {}
            }
        }
        visit(labels, samples);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an XOR chunk the way Prometheus' appender does, for the decoder's round trip.
    fn xor_chunk(samples: &[(i64, f64)]) -> Vec<u8> {
        struct Out {
            bytes: Vec<u8>,
            bits: usize,
        }
        impl Out {
            fn bit(&mut self, b: bool) {
                if self.bits % 8 == 0 {
                    self.bytes.push(0);
                }
                if b {
                    *self.bytes.last_mut().unwrap() |= 1 << (7 - self.bits % 8);
                }
                self.bits += 1;
            }
            fn bits(&mut self, v: u64, n: u32) {
                for i in (0..n).rev() {
                    self.bit(v >> i & 1 == 1);
                }
            }
        }
        let mut out = Out { bytes: vec![], bits: 0 };
        let (mut t0, mut d0, mut v0, mut lead, mut trail) = (0i64, 0u64, 0u64, 0xffu32, 0u32);
        for (i, (t, v)) in samples.iter().enumerate() {
            let v = v.to_bits();
            if i == 0 {
                let mut buf = vec![];
                put_varint(&mut buf, ((t << 1) ^ (t >> 63)) as u64);
                buf.iter().for_each(|b| out.bits(u64::from(*b), 8));
                out.bits(v, 64);
            } else {
                let d = (t - t0) as u64;
                if i == 1 {
                    let mut buf = vec![];
                    put_varint(&mut buf, d);
                    buf.iter().for_each(|b| out.bits(u64::from(*b), 8));
                } else {
                    let dod = d as i64 - d0 as i64;
                    let fits = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1 << (n - 1);
                    if dod == 0 {
                        out.bit(false);
                    } else if fits(14) {
                        out.bits(0b10, 2);
                        out.bits(dod as u64 & ((1 << 14) - 1), 14);
                    } else if fits(17) {
                        out.bits(0b110, 3);
                        out.bits(dod as u64 & ((1 << 17) - 1), 17);
                    } else if fits(20) {
                        out.bits(0b1110, 4);
                        out.bits(dod as u64 & ((1 << 20) - 1), 20);
                    } else {
                        out.bits(0b1111, 4);
                        out.bits(dod as u64, 64);
                    }
                }
                let x = v ^ v0;
                if x == 0 {
                    out.bit(false);
                } else {
                    out.bit(true);
                    let (l, tr) = (x.leading_zeros().min(31), x.trailing_zeros());
                    if lead != 0xff && l >= lead && tr >= trail {
                        out.bit(false);
                        out.bits(x >> trail, 64 - lead - trail);
                    } else {
                        (lead, trail) = (l, tr);
                        out.bit(true);
                        out.bits(u64::from(l), 5);
                        out.bits(u64::from(64 - l - tr) & 63, 6);
                        out.bits(x >> tr, 64 - l - tr);
                    }
                }
                d0 = d;
            }
            t0 = *t;
            v0 = v;
        }
        let mut chunk = (samples.len() as u16).to_be_bytes().to_vec();
        chunk.extend(out.bytes);
        chunk
    }

    #[test]
    fn xor_chunks_decode_every_timestamp_step_and_value_change() {
        // Steady 60 s scrapes, jitter in every delta-of-delta band, a long gap, a negative
        // timestamp, NaN, a staleness marker and values that change in every bit pattern.
        let mut samples = vec![(-5_000i64, 0.0f64), (55_000, 12.0), (115_000, 12.0), (175_001, 97.5), (235_000, -3.25)];
        let mut t = 235_000i64;
        for (i, jump) in [60_000i64, 60_000, 68_000, 60_000, 130_000, 60_000, 600_000, 60_000, 3_600_000_000, 60_000, 59_999].iter().enumerate() {
            t += jump;
            samples.push((t, [f64::NAN, f64::from_bits(0x7ff0_0000_0000_0002), 1e-300, 42.0, 0.1 + 0.2, f64::MAX][i % 6]));
        }
        let mut out = Vec::new();
        xor_samples(&xor_chunk(&samples), &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for ((t, v), (t2, v2)) in samples.iter().zip(&out) {
            assert_eq!((t, v.to_bits()), (t2, v2.to_bits()));
        }
        assert!(is_stale(out[6].1) && !is_stale(out[5].1));
        // A chunk cut short is an error, never a panic or made-up samples.
        let chunk = xor_chunk(&samples);
        assert!(xor_samples(&chunk[..chunk.len() - 3], &mut Vec::new()).is_err());
    }

    #[test]
    fn frames_carry_the_castagnoli_checksum() {
        // The check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
