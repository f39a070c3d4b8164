//! The netlink wire layer: writing messages and attributes into a byte buffer, and iterating
//! over messages and attributes of received bytes.
//!
//! This module owns byte order and alignment and nothing else: it knows no nf_tables object
//! and performs no I/O. The netlink header is in host byte order; nf_tables integers inside
//! attributes are big-endian, which the `put_be*`/`be*` helpers encode.

use crate::consts::*;
use crate::error::DecodeError;

/// Rounds `len` up to the 4-byte netlink alignment.
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Writes one netlink message (header, `nfgenmsg`, attributes) at the end of a buffer.
///
/// Lengths are patched in by [`MsgWriter::nest_end`] and [`MsgWriter::finish`], so a message
/// is written once, in place, with no intermediate copies.
#[derive(Debug)]
pub struct MsgWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

/// A nest that was opened and must be closed with [`MsgWriter::nest_end`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Nest(usize);

impl Nest {
    /// Offset of the nest header in the buffer.
    pub(crate) fn offset(self) -> usize {
        self.0
    }
}

impl<'a> MsgWriter<'a> {
    /// Starts a message of `msg_type` with an `nfgenmsg` header for `family`.
    pub fn begin(
        buf: &'a mut Vec<u8>,
        msg_type: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched in finish()
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 towards the kernel
        buf.push(family);
        buf.push(NFNETLINK_V0);
        buf.extend_from_slice(&res_id.to_be_bytes());
        MsgWriter { buf, start }
    }

    /// Continues writing attributes into the message that starts at `start` (used to append
    /// to a message that is still open, such as a set element list).
    pub(crate) fn resume(buf: &'a mut Vec<u8>, start: usize) -> Self {
        MsgWriter { buf, start }
    }

    /// Bytes written so far for this message.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing was written (never true: the header is written by `begin`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of the next attribute relative to the start of this message (what the kernel's
    /// extended ack reports as `NLMSGERR_ATTR_OFFS`).
    pub fn offset(&self) -> usize {
        self.len()
    }

    /// Appends an attribute with a raw payload, padded to 4 bytes.
    pub fn put(&mut self, ty: u16, data: &[u8]) {
        let len = NLA_HDRLEN + data.len();
        debug_assert!(len <= NLA_MAX_LEN, "attribute too long: {len}");
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        let pad = align4(len) - len;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }

    /// Appends a NUL-terminated string attribute.
    pub fn put_str(&mut self, ty: u16, s: &str) {
        let len = NLA_HDRLEN + s.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        let pad = align4(len) - len;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }

    /// Appends a big-endian u32 attribute.
    pub fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    /// Appends a big-endian u64 attribute.
    pub fn put_be64(&mut self, ty: u16, v: u64) {
        self.put(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute (flagged `NLA_F_NESTED`, as libmnl does).
    pub fn nest_start(&mut self, ty: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        Nest(at)
    }

    /// Closes a nest opened by [`MsgWriter::nest_start`], patching its length.
    pub fn nest_end(&mut self, nest: Nest) {
        let len = self.buf.len() - nest.0;
        debug_assert!(len <= NLA_MAX_LEN, "nest too long: {len}");
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&(len as u16).to_ne_bytes());
    }

    /// Length the open nest would have if it were closed now.
    pub fn nest_len(&self, nest: Nest) -> usize {
        self.buf.len() - nest.0
    }

    /// Nested `NFTA_DATA_VALUE` holding raw bytes (used by cmp, bitwise, keys, immediates).
    pub fn put_data_value(&mut self, ty: u16, value: &[u8]) {
        let n = self.nest_start(ty);
        self.put(NFTA_DATA_VALUE, value);
        self.nest_end(n);
    }

    /// Finishes the message: patches `nlmsg_len` and returns it.
    pub fn finish(self) -> usize {
        let len = self.buf.len() - self.start;
        self.buf[self.start..self.start + 4].copy_from_slice(&(len as u32).to_ne_bytes());
        len
    }
}

/// One received netlink message.
#[derive(Debug, Clone, Copy)]
pub struct NlMsg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// For nf_tables messages: the family from `nfgenmsg`.
    pub fn family(&self) -> u8 {
        self.payload.first().copied().unwrap_or(0)
    }

    /// For nf_tables messages: `res_id` (kernel replies: low 16 bits of the generation id).
    pub fn res_id(&self) -> u16 {
        match self.payload.get(2..4) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        }
    }

    /// For nf_tables messages: the attributes after `nfgenmsg`.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.payload.get(4..).unwrap_or(&[]))
    }

    /// The nf_tables message number (`nlmsg_type & 0xff`) if this is an nf_tables message.
    pub fn nft_type(&self) -> Option<u16> {
        (self.ty >> 8 == NFNL_SUBSYS_NFTABLES).then_some(self.ty & 0xff)
    }
}

/// Iterates over the netlink messages of one received datagram.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    data: &'a [u8],
}

impl<'a> Messages<'a> {
    /// Messages packed in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Messages { data }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        if self.data.len() < NLMSG_HDRLEN {
            self.data = &[];
            return Some(Err(DecodeError::new("truncated netlink header")));
        }
        let h = self.data;
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            self.data = &[];
            return Some(Err(DecodeError::new("bad netlink message length")));
        }
        let msg = NlMsg {
            ty: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            pid: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
            payload: &h[NLMSG_HDRLEN..len],
        };
        self.data = h.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

/// One attribute: its type (with the nested/byte-order flags masked off) and payload.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    /// Attribute type, `nla_type & NLA_TYPE_MASK`.
    pub ty: u16,
    /// Payload without padding.
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as a big-endian u32.
    pub fn be32(&self) -> Result<u32, DecodeError> {
        let b: [u8; 4] = self
            .payload
            .try_into()
            .map_err(|_| DecodeError::attr("expected 4 bytes", self.ty))?;
        Ok(u32::from_be_bytes(b))
    }

    /// The payload as a big-endian u64.
    pub fn be64(&self) -> Result<u64, DecodeError> {
        let b: [u8; 8] = self
            .payload
            .try_into()
            .map_err(|_| DecodeError::attr("expected 8 bytes", self.ty))?;
        Ok(u64::from_be_bytes(b))
    }

    /// The payload as a string, without the trailing NUL.
    pub fn str(&self) -> Result<&'a str, DecodeError> {
        let p = self.payload;
        let p = match p.iter().position(|&b| b == 0) {
            Some(n) => &p[..n],
            None => p,
        };
        std::str::from_utf8(p).map_err(|_| DecodeError::attr("string is not UTF-8", self.ty))
    }

    /// The payload as nested attributes.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }

    /// For `NFTA_DATA_*` nests: the raw `NFTA_DATA_VALUE` bytes.
    pub fn data_value(&self) -> Result<&'a [u8], DecodeError> {
        for a in self.nested() {
            let a = a?;
            if a.ty == NFTA_DATA_VALUE {
                return Ok(a.payload);
            }
        }
        Err(DecodeError::attr("missing NFTA_DATA_VALUE", self.ty))
    }
}

/// Iterates over the attributes in a byte range.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Attributes packed in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Attrs { data }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.len() < NLA_HDRLEN {
            self.data = &[];
            return None;
        }
        let d = self.data;
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        let ty = u16::from_ne_bytes([d[2], d[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > d.len() {
            self.data = &[];
            return Some(Err(DecodeError::attr("bad attribute length", ty)));
        }
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(Attr {
            ty,
            payload: &d[NLA_HDRLEN..len],
        }))
    }
}

/// Reads the `nlmsghdr` fields of the message that starts at `at` in `buf` (a buffer this
/// crate wrote). Returns `(len, type, flags, seq)`.
pub(crate) fn header_at(buf: &[u8], at: usize) -> Option<(usize, u16, u16, u32)> {
    let h = buf.get(at..at + NLMSG_HDRLEN)?;
    Some((
        u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize,
        u16::from_ne_bytes([h[4], h[5]]),
        u16::from_ne_bytes([h[6], h[7]]),
        u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
    ))
}
