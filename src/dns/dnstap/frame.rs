//! Frame Streams (<https://farsightsec.github.io/fstrm/>), the framing dnstap travels in: a
//! data frame is a 4-byte big-endian length and the payload; a control frame is an escape (a
//! zero length), its own length, its type and fields (here only the content type). Pure
//! encoding and decoding over byte buffers; the writer does the I/O. No maintained crate fits
//! (the one on crates.io has been untouched for years), and this is all there is to it.

/// The content type dnstap is sent under.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Control frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Accept = 0x01,
    Start = 0x02,
    Stop = 0x03,
    Ready = 0x04,
    Finish = 0x05,
}

impl Control {
    fn from_u32(v: u32) -> Option<Control> {
        Some(match v {
            0x01 => Control::Accept,
            0x02 => Control::Start,
            0x03 => Control::Stop,
            0x04 => Control::Ready,
            0x05 => Control::Finish,
            _ => return None,
        })
    }
}

/// The control field carrying a content type.
const FIELD_CONTENT_TYPE: u32 = 0x01;
/// Longest control frame accepted from a collector (the spec's limit).
pub const MAX_CONTROL: usize = 512;

/// Appends a control frame. READY, ACCEPT and START carry the dnstap content type; STOP and
/// FINISH carry nothing.
pub fn control(kind: Control, out: &mut Vec<u8>) {
    let typed = matches!(kind, Control::Ready | Control::Accept | Control::Start);
    let fields = if typed { 8 + CONTENT_TYPE.len() } else { 0 };
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(4 + fields as u32).to_be_bytes());
    out.extend_from_slice(&(kind as u32).to_be_bytes());
    if typed {
        out.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        out.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        out.extend_from_slice(CONTENT_TYPE);
    }
}

/// Appends a data frame holding `payload` (which must not be empty: a zero length is the
/// control frame escape).
pub fn data(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A control frame read from the collector: its type, and whether it names the dnstap
/// content type.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub kind: Control,
    pub dnstap: bool,
}

/// Reads the body of a control frame (what follows the escape and the length).
pub fn parse_control(body: &[u8]) -> Option<Received> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?))
    };
    let kind = Control::from_u32(word(0)?)?;
    let mut dnstap = false;
    let mut at = 4;
    while at < body.len() {
        let (field, len) = (word(at)?, word(at + 4)? as usize);
        let value = body.get(at + 8..at + 8 + len)?;
        dnstap |= field == FIELD_CONTENT_TYPE && value == CONTENT_TYPE;
        at += 8 + len;
    }
    Some(Received { kind, dnstap })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_names_the_content_type() {
        let mut out = Vec::new();
        control(Control::Start, &mut out);
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 22];
        want.extend_from_slice(b"protobuf:dnstap.Dnstap");
        assert_eq!(out, want);
    }

    #[test]
    fn stop_and_finish_are_bare() {
        let mut out = Vec::new();
        control(Control::Stop, &mut out);
        control(Control::Finish, &mut out);
        assert_eq!(
            out,
            [
                0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 5
            ]
        );
    }

    #[test]
    fn data_frames_are_length_prefixed() {
        let mut out = Vec::new();
        data(b"abc", &mut out);
        data(&[7; 300], &mut out);
        assert_eq!(&out[..7], &[0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&out[7..11], &[0, 0, 1, 44]);
        assert_eq!(out.len(), 7 + 4 + 300);
    }

    #[test]
    fn reads_what_it_writes() {
        for kind in [Control::Accept, Control::Ready, Control::Finish] {
            let mut out = Vec::new();
            control(kind, &mut out);
            let len = u32::from_be_bytes(out[4..8].try_into().unwrap()) as usize;
            assert_eq!(out.len(), 8 + len);
            let got = parse_control(&out[8..]).unwrap();
            assert_eq!(got.kind, kind);
            assert_eq!(got.dnstap, kind != Control::Finish);
        }
    }

    #[test]
    fn an_accept_for_another_content_type_is_not_ours() {
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4];
        body.extend_from_slice(b"json");
        assert_eq!(
            parse_control(&body),
            Some(Received {
                kind: Control::Accept,
                dnstap: false
            })
        );
        assert_eq!(parse_control(&[0, 0, 0, 9]), None);
        assert_eq!(parse_control(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9]), None);
    }
}
