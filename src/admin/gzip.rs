//! gzip for `GET /metrics`: whether a request's `Accept-Encoding` takes it, and a body that
//! compresses another one frame at a time as hyper polls it. Prometheus asks for gzip on every
//! scrape, and the text of tens of thousands of names (the same label names and values over
//! and over) shrinks many times over; compressing as the text streams keeps the scrape from
//! ever holding its whole text, or its whole compressed form.
use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::HeaderMap;
use hyper::body::{Body, Bytes, Frame};
use hyper::header::ACCEPT_ENCODING;
use tracing::warn;

/// The compression level of a scrape: the fastest. On the 50,000-name scrape (15.6 MB of
/// text) level 1 took 10 ms of CPU for 0.69 MB, level 2 34 ms for 0.63 MB and the default
/// (6) 73 ms for 0.66 MB (bench/README.md, "What scale.sh measures").
pub const LEVEL: Compression = Compression::fast();

/// How a response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As it is (no `Content-Encoding`).
    Identity,
    Gzip,
}

/// The encoding of a response to a request with `headers` (RFC 9110, 12.5.3): gzip when
/// `Accept-Encoding` gives `gzip`, or else `*`, a weight above 0 and not below the one it
/// gives `identity` (or else `*`). `gzip;q=0` refuses it; `x-gzip` is not taken for it; an
/// element with a malformed weight counts as absent. Anything else is answered as it is, as
/// it was before this existed: a request refusing identity too still gets the text.
pub fn negotiate(headers: &HeaderMap) -> Encoding {
    let mut gzip = None;
    let mut identity = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let slot = if coding.eq_ignore_ascii_case("gzip") {
                &mut gzip
            } else if coding.eq_ignore_ascii_case("identity") {
                &mut identity
            } else if coding == "*" {
                &mut any
            } else {
                continue;
            };
            if let Some(q) = weight(parts) {
                *slot = Some(q);
            }
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    let identity = identity.or(any);
    if gzip > 0 && identity.is_none_or(|i| gzip >= i) {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// The weight in an element's parameters, in thousandths (1000 without a `q`); `None` when
/// the `q` is not a qvalue (`0` to `1` with at most three decimals).
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let thousandths = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        return match int {
            "0" => Some(thousandths),
            "1" if thousandths == 0 => Some(1000),
            _ => None,
        };
    }
    Some(1000)
}

/// `inner` gzip-compressed: each frame of it is compressed when hyper asks for the next one,
/// and the gzip trailer (CRC-32 and length) follows its last. A frame whose compressed form is
/// still buffered in the compressor yields nothing by itself; the next frames carry it.
pub struct Gzip<B> {
    inner: B,
    /// `None` once the trailer has been handed out.
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl<B> Gzip<B> {
    pub fn new(inner: B, level: Compression) -> Gzip<B> {
        Gzip {
            inner,
            encoder: Some(GzEncoder::new(Vec::new(), level)),
        }
    }
}

impl<B> Body for Gzip<B>
where
    B: Body<Data = Bytes, Error = Infallible> + Unpin,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            let Some(frame) = ready!(Pin::new(&mut this.inner).poll_frame(cx)) else {
                // The end: what the compressor still holds, then the trailer.
                let last = this.encoder.take().map(GzEncoder::finish);
                return Poll::Ready(match last {
                    Some(Ok(rest)) => Some(Ok(Frame::data(Bytes::from(rest)))),
                    Some(Err(e)) => {
                        // Ending without the trailer: the client's decoder reports the
                        // truncated stream rather than taking it as the whole text.
                        warn!(error = %e, "gzip of /metrics failed; response cut short");
                        None
                    }
                    None => None,
                });
            };
            // `/metrics` has no trailers; only data frames are compressed.
            let Ok(frame) = frame;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Err(e) = encoder.write_all(&data) {
                warn!(error = %e, "gzip of /metrics failed; response cut short");
                this.encoder = None;
                return Poll::Ready(None);
            }
            let out = std::mem::take(encoder.get_mut());
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io::Read as _;

    use http_body_util::BodyExt as _;
    use hyper::header::HeaderValue;

    use super::*;

    fn accept(values: &[&str]) -> Encoding {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(v).expect("header"));
        }
        negotiate(&headers)
    }

    #[test]
    fn accept_encoding_takes_gzip_by_its_weight() {
        use Encoding::{Gzip, Identity};
        for (values, want) in [
            (&[][..], Identity),
            (&["gzip"], Gzip),
            // What Prometheus sends, and what browsers and curl --compressed send.
            (&["gzip, deflate, br"], Gzip),
            (&["deflate, gzip;q=1.0, *;q=0.5"], Gzip),
            (&["GZip"], Gzip),
            (&["  gzip ; q=0.5 "], Gzip),
            (&["gzip;Q=0.001"], Gzip),
            (&["gzip;q=1.000"], Gzip),
            (&["*"], Gzip),
            (&["br, *;q=0.1"], Gzip),
            // Two header lines are one list.
            (&["br", "gzip"], Gzip),
            (&["gzip;q=0.5, identity;q=0.5"], Gzip),
            // Refused, or not offered.
            (&["gzip;q=0"], Identity),
            (&["gzip;q=0.000"], Identity),
            (&["gzip;q=0, *"], Identity),
            (&["*;q=0"], Identity),
            (&["identity"], Identity),
            (&["deflate, br"], Identity),
            (&["x-gzip"], Identity),
            (&["gzipped"], Identity),
            (&[""], Identity),
            // Identity preferred.
            (&["gzip;q=0.5, identity"], Identity),
            (&["gzip;q=0.5, *"], Identity),
            // Malformed weights: the element counts as absent.
            (&["gzip;q=2"], Identity),
            (&["gzip;q=1.5"], Identity),
            (&["gzip;q=0.5000"], Identity),
            (&["gzip;q=.5"], Identity),
            (&["gzip;q=-1"], Identity),
            (&["gzip;q="], Identity),
            (&["gzip;q=0.5x"], Identity),
            (&["gzip;q=abc, *"], Gzip),
            // A weight for identity alone refuses nothing the text needs.
            (&["identity;q=0"], Identity),
        ] {
            assert_eq!(accept(values), want, "{values:?}");
        }
    }

    /// A body of the given frames, each returned on its own poll.
    struct Frames(VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("a whole gzip stream");
        out
    }

    /// Each frame of the output, in order.
    async fn frames<B: Body<Data = Bytes> + Unpin>(mut body: B) -> Vec<Bytes>
    where
        B::Error: std::fmt::Debug,
    {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(frame.expect("frame").into_data().expect("data"));
        }
        assert!(body.is_end_stream());
        out
    }

    #[tokio::test]
    async fn frames_are_compressed_as_they_come_and_end_with_the_trailer() {
        // Text like a scrape's, 2 MB in 40 frames: output comes before the input ends.
        let line = |i: usize| {
            format!("meridian_region_up{{region=\"eu\",service=\"g{i}.example.com.\"}} 1\n")
        };
        let input: Vec<Bytes> = (0..40)
            .map(|f| Bytes::from((0..700).map(|i| line(f * 700 + i)).collect::<String>()))
            .collect();
        let text: Vec<u8> = input.iter().flat_map(|b| b.iter().copied()).collect();
        let mut gz = Gzip::new(Frames(input.into()), LEVEL);
        let first = gz.frame().await.expect("a frame").expect("data");
        let first = first.into_data().expect("data");
        assert!(
            !gz.inner.0.is_empty(),
            "the first output waited for the whole input"
        );
        let mut out = vec![first];
        out.extend(frames(gz).await);
        assert!(out.iter().all(|f| !f.is_empty()));
        let wire: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        assert!(
            wire.len() * 5 < text.len(),
            "{} of {}",
            wire.len(),
            text.len()
        );
        assert_eq!(gunzip(&wire), text);
        // The trailer: CRC-32 and length of the text, little-endian.
        let mut crc = flate2::Crc::new();
        crc.update(&text);
        let tail = &wire[wire.len() - 8..];
        assert_eq!(tail[..4], crc.sum().to_le_bytes());
        assert_eq!(tail[4..], (text.len() as u32).to_le_bytes());
    }

    #[tokio::test]
    async fn an_empty_body_is_an_empty_gzip_stream() {
        let out = frames(Gzip::new(Frames(VecDeque::new()), LEVEL)).await;
        assert_eq!(out.len(), 1);
        assert!(gunzip(&out[0]).is_empty());
    }
}
