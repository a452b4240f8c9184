//! A small reader for the fragmented MP4 ffmpeg writes to a pipe
//! (`-movflags +frag_keyframe+empty_moov+default_base_moof`): a stream of top-level
//! ISO-BMFF boxes grouped into one init segment (`ftyp` + `moov`) and media fragments
//! (`moof` + `mdat`, with any `styp`/`prft` written just before the `moof`).
//!
//! Sans-IO: [`Mp4Stream`] is fed bytes as they come ([`Mp4Stream::push`] or
//! [`Mp4Stream::buffer_mut`]) and hands out complete items ([`Mp4Stream::next_item`]).
//!
//! Invariants:
//! - No byte input makes it panic; a malformed stream is an [`Mp4Error`], after which the
//!   stream must be dropped (the reader does not resynchronise).
//! - Memory is bounded: a box header announcing more than the stream's `max_box` bytes is
//!   an error as soon as the header is read, so the buffer never holds more than one box
//!   (at most `max_box`) plus what the caller pushed in one go. Box sizes of 0 ("to end of
//!   file") are rejected; size 1 means a 64-bit largesize.
//! - Only the boxes needed for timing are parsed: per track `tkhd` (id), `mdhd`
//!   (timescale), `hdlr` (kind), `trex` (defaults); per fragment `tfhd`, `tfdt`, `trun`.
//!   Anything else is carried as opaque bytes or skipped (`free`, `sidx`, `mfra`, ...).

use bytes::{Bytes, BytesMut};

/// Largest top-level box accepted by default (64 MiB).
pub const DEFAULT_MAX_BOX: u64 = 64 * 1024 * 1024;

/// Bytes kept ahead of a `moof` (`styp`, `prft`) before the stream counts as malformed.
const MAX_PREFIX: usize = 64 * 1024;

/// What makes a stream unreadable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    #[error("box '{kind}' declares size 0 (to end of stream), which a live stream cannot use")]
    SizeZero { kind: String },
    #[error("box '{kind}' declares {size} bytes, less than its own header")]
    TooSmall { kind: String, size: u64 },
    #[error("box '{kind}' declares {size} bytes, more than the {max} allowed")]
    TooLarge { kind: String, size: u64, max: u64 },
    #[error("box '{kind}' is truncated (wanted {wanted} bytes, {have} left)")]
    Truncated {
        kind: String,
        wanted: usize,
        have: usize,
    },
    #[error("'{0}' arrived out of order (expected ftyp, moov, then moof and mdat pairs)")]
    OutOfOrder(String),
    #[error("init segment has no {0}")]
    MissingInInit(&'static str),
    #[error("fragment has no {0}")]
    MissingInFragment(&'static str),
    #[error("more than {MAX_PREFIX} bytes of boxes before a moof")]
    PrefixTooLarge,
}

fn fourcc(k: [u8; 4]) -> String {
    k.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

/// A box header: its type, the length of the header itself and the whole box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: [u8; 4],
    pub header_len: usize,
    pub total_len: u64,
}

/// Reads the header at the start of `buf`. `Ok(None)`: not enough bytes yet.
pub fn parse_header(buf: &[u8], max: u64) -> Result<Option<BoxHeader>, Mp4Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = [buf[4], buf[5], buf[6], buf[7]];
    let (header_len, total_len) = match size32 {
        0 => return Err(Mp4Error::SizeZero { kind: fourcc(kind) }),
        1 => {
            let Some(large) = buf.get(8..16) else {
                return Ok(None);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(large);
            (16usize, u64::from_be_bytes(b))
        }
        n => (8usize, u64::from(n)),
    };
    if total_len < header_len as u64 {
        return Err(Mp4Error::TooSmall {
            kind: fourcc(kind),
            size: total_len,
        });
    }
    if total_len > max {
        return Err(Mp4Error::TooLarge {
            kind: fourcc(kind),
            size: total_len,
            max,
        });
    }
    Ok(Some(BoxHeader {
        kind,
        header_len,
        total_len,
    }))
}

/// Iterates over the child boxes of a container body: `(type, body)`.
fn children(body: &[u8]) -> Children<'_> {
    Children { rest: body }
}

struct Children<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<([u8; 4], &'a [u8]), Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let res = match parse_header(self.rest, self.rest.len() as u64) {
            Ok(Some(h)) => {
                // total_len <= rest.len() was checked by parse_header (max).
                let total = h.total_len as usize;
                let body = &self.rest[h.header_len..total];
                self.rest = &self.rest[total..];
                Ok((h.kind, body))
            }
            Ok(None) => Err(Mp4Error::Truncated {
                kind: "header".into(),
                wanted: 8,
                have: self.rest.len(),
            }),
            Err(Mp4Error::TooLarge { kind, size, .. }) => Err(Mp4Error::Truncated {
                kind,
                wanted: size as usize,
                have: self.rest.len(),
            }),
            Err(e) => Err(e),
        };
        if res.is_err() {
            self.rest = &[];
        }
        Some(res)
    }
}

/// The first child of `body` of type `kind`.
fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    for c in children(body) {
        let (k, b) = c?;
        if &k == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// Big-endian reads that fail instead of panicking.
struct Reader<'a> {
    kind: &'static str,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(kind: &'static str, buf: &'a [u8]) -> Self {
        Reader { kind, buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if self.buf.len() < n {
            return Err(Mp4Error::Truncated {
                kind: self.kind.into(),
                wanted: n,
                have: self.buf.len(),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, Mp4Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Mp4Error> {
        let hi = self.u32()?;
        let lo = self.u32()?;
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }
    /// Full-box version and flags.
    fn version_flags(&mut self) -> Result<(u8, u32), Mp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

/// One track of the init segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u32,
    /// `hdlr` handler type: `vide`, `soun`, ...
    pub handler: [u8; 4],
    /// `mdhd` timescale (ticks per second), never 0.
    pub timescale: u32,
    /// `trex` default_sample_duration (0 when there is no `trex`).
    pub default_sample_duration: u32,
    /// `trex` default_sample_flags.
    pub default_sample_flags: u32,
}

/// What the init segment says about timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitInfo {
    pub tracks: Vec<TrackInfo>,
}

impl InitInfo {
    /// Parses the body of a `moov` box (without its header).
    pub fn parse_moov(moov_body: &[u8]) -> Result<InitInfo, Mp4Error> {
        let mut tracks = Vec::new();
        let mut trex = Vec::new();
        for c in children(moov_body) {
            let (k, body) = c?;
            match &k {
                b"trak" => tracks.push(parse_trak(body)?),
                b"mvex" => {
                    for c in children(body) {
                        let (k, body) = c?;
                        if &k == b"trex" {
                            let mut r = Reader::new("trex", body);
                            r.version_flags()?;
                            let id = r.u32()?;
                            let _desc = r.u32()?;
                            let dur = r.u32()?;
                            let _size = r.u32()?;
                            let flags = r.u32()?;
                            trex.push((id, dur, flags));
                        }
                    }
                }
                _ => {}
            }
        }
        for t in &mut tracks {
            if let Some(&(_, dur, flags)) = trex.iter().find(|(id, _, _)| *id == t.track_id) {
                t.default_sample_duration = dur;
                t.default_sample_flags = flags;
            }
        }
        Ok(InitInfo { tracks })
    }

    /// The first video track.
    pub fn video(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| &t.handler == b"vide")
    }

    pub fn has_audio(&self) -> bool {
        self.tracks.iter().any(|t| &t.handler == b"soun")
    }
}

fn parse_trak(body: &[u8]) -> Result<TrackInfo, Mp4Error> {
    let tkhd = child(body, b"tkhd")?.ok_or(Mp4Error::MissingInInit("tkhd"))?;
    let mut r = Reader::new("tkhd", tkhd);
    let (v, _) = r.version_flags()?;
    r.take(if v == 1 { 16 } else { 8 })?; // creation and modification times
    let track_id = r.u32()?;
    let mdia = child(body, b"mdia")?.ok_or(Mp4Error::MissingInInit("mdia"))?;
    let mdhd = child(mdia, b"mdhd")?.ok_or(Mp4Error::MissingInInit("mdhd"))?;
    let mut r = Reader::new("mdhd", mdhd);
    let (v, _) = r.version_flags()?;
    r.take(if v == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(Mp4Error::MissingInInit("track timescale (mdhd says 0)"));
    }
    let hdlr = child(mdia, b"hdlr")?.ok_or(Mp4Error::MissingInInit("hdlr"))?;
    let mut r = Reader::new("hdlr", hdlr);
    r.version_flags()?;
    r.take(4)?; // pre_defined
    let h = r.take(4)?;
    Ok(TrackInfo {
        track_id,
        handler: [h[0], h[1], h[2], h[3]],
        timescale,
        default_sample_duration: 0,
        default_sample_flags: 0,
    })
}

/// Timing of one track's run in a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafTiming {
    pub track_id: u32,
    /// `tfdt` baseMediaDecodeTime, in the track's timescale.
    pub base_decode_time: u64,
    /// Sum of the sample durations of all its `trun`s.
    pub duration: u64,
    pub sample_count: u64,
    /// The first sample is a sync sample (a keyframe).
    pub starts_with_sync: bool,
}

/// Parses the body of a `moof` box: the timing of the traf of `track`.
/// `Ok(None)`: the fragment has no traf for that track.
pub fn parse_moof(moof_body: &[u8], track: &TrackInfo) -> Result<Option<TrafTiming>, Mp4Error> {
    for c in children(moof_body) {
        let (k, body) = c?;
        if &k != b"traf" {
            continue;
        }
        let tfhd = child(body, b"tfhd")?.ok_or(Mp4Error::MissingInFragment("tfhd"))?;
        let mut r = Reader::new("tfhd", tfhd);
        let (_, flags) = r.version_flags()?;
        let track_id = r.u32()?;
        if track_id != track.track_id {
            continue;
        }
        if flags & 0x1 != 0 {
            r.u64()?; // base_data_offset
        }
        if flags & 0x2 != 0 {
            r.u32()?; // sample_description_index
        }
        let default_duration = if flags & 0x8 != 0 {
            r.u32()?
        } else {
            track.default_sample_duration
        };
        if flags & 0x10 != 0 {
            r.u32()?; // default_sample_size
        }
        let default_flags = if flags & 0x20 != 0 {
            r.u32()?
        } else {
            track.default_sample_flags
        };
        let tfdt = child(body, b"tfdt")?.ok_or(Mp4Error::MissingInFragment("tfdt"))?;
        let mut r = Reader::new("tfdt", tfdt);
        let (v, _) = r.version_flags()?;
        let base_decode_time = if v == 1 {
            r.u64()?
        } else {
            u64::from(r.u32()?)
        };
        let mut timing = TrafTiming {
            track_id,
            base_decode_time,
            duration: 0,
            sample_count: 0,
            starts_with_sync: false,
        };
        let mut first = true;
        for c in children(body) {
            let (k, trun) = c?;
            if &k != b"trun" {
                continue;
            }
            let mut r = Reader::new("trun", trun);
            let (_, tflags) = r.version_flags()?;
            let count = r.u32()?;
            if tflags & 0x1 != 0 {
                r.u32()?; // data_offset
            }
            let first_flags = if tflags & 0x4 != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            let per_sample = [0x100u32, 0x200, 0x400, 0x800]
                .iter()
                .filter(|&&f| tflags & f != 0)
                .count();
            // Every sample entry must be there: bounds the loop by the box's own length.
            let needed = (count as usize).saturating_mul(per_sample * 4);
            if needed > r.buf.len() {
                return Err(Mp4Error::Truncated {
                    kind: "trun".into(),
                    wanted: needed,
                    have: r.buf.len(),
                });
            }
            for i in 0..count {
                let d = if tflags & 0x100 != 0 {
                    r.u32()?
                } else {
                    default_duration
                };
                if tflags & 0x200 != 0 {
                    r.u32()?;
                }
                let f = if tflags & 0x400 != 0 {
                    r.u32()?
                } else {
                    default_flags
                };
                if tflags & 0x800 != 0 {
                    r.u32()?;
                }
                if first && i == 0 {
                    let f = first_flags.unwrap_or(f);
                    // sample_is_non_sync_sample is bit 16; sample_depends_on == 2 means an I-frame.
                    timing.starts_with_sync = f & 0x0001_0000 == 0;
                }
                timing.duration = timing.duration.saturating_add(u64::from(d));
            }
            if count > 0 {
                first = false;
            }
            timing.sample_count += u64::from(count);
        }
        return Ok(Some(timing));
    }
    Ok(None)
}

/// `ticks` of `timescale` in milliseconds (rounded down, saturating).
pub fn ticks_to_ms(ticks: u64, timescale: u32) -> u64 {
    let ms = u128::from(ticks) * 1000 / u128::from(timescale.max(1));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A complete item of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mp4Item {
    /// `ftyp` + `moov`, byte for byte.
    Init { data: Bytes, info: InitInfo },
    /// Any `styp`/`prft` + `moof` + `mdat`, byte for byte, with the video track's timing
    /// (`None` when the init has no video track or the fragment no traf for it).
    Fragment {
        data: Bytes,
        video: Option<TrafTiming>,
    },
}

/// Splits a byte stream into [`Mp4Item`]s. See the module docs for its invariants.
#[derive(Debug)]
pub struct Mp4Stream {
    buf: BytesMut,
    max_box: u64,
    ftyp: Option<Bytes>,
    init: Option<InitInfo>,
    prefix: BytesMut,
    moof: Option<(Bytes, Option<TrafTiming>)>,
    failed: bool,
}

impl Default for Mp4Stream {
    fn default() -> Self {
        Mp4Stream::new(DEFAULT_MAX_BOX)
    }
}

impl Mp4Stream {
    pub fn new(max_box: u64) -> Self {
        Mp4Stream {
            buf: BytesMut::new(),
            max_box,
            ftyp: None,
            init: None,
            prefix: BytesMut::new(),
            moof: None,
            failed: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The input buffer, for reading into it directly (`AsyncReadExt::read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet part of a returned item.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.prefix.len() + self.moof.as_ref().map_or(0, |(m, _)| m.len())
    }

    /// The init segment's timing, once it has been read.
    pub fn init(&self) -> Option<&InitInfo> {
        self.init.as_ref()
    }

    /// The next complete item; `Ok(None)` when more bytes are needed. After an error every
    /// later call returns an error too.
    pub fn next_item(&mut self) -> Result<Option<Mp4Item>, Mp4Error> {
        if self.failed {
            return Err(Mp4Error::OutOfOrder("data after an error".into()));
        }
        let r = self.next_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Mp4Item>, Mp4Error> {
        loop {
            let Some(h) = parse_header(&self.buf, self.max_box)? else {
                return Ok(None);
            };
            // total_len <= max_box, which fits in memory by the caller's choice.
            let total = usize::try_from(h.total_len).map_err(|_| Mp4Error::TooLarge {
                kind: fourcc(h.kind),
                size: h.total_len,
                max: self.max_box,
            })?;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let whole = self.buf.split_to(total).freeze();
            let body = whole.slice(h.header_len..);
            match &h.kind {
                b"ftyp" => {
                    if self.init.is_some() {
                        return Err(Mp4Error::OutOfOrder("ftyp".into()));
                    }
                    self.ftyp = Some(whole);
                }
                b"moov" => {
                    if self.init.is_some() {
                        return Err(Mp4Error::OutOfOrder("moov".into()));
                    }
                    let ftyp = self
                        .ftyp
                        .take()
                        .ok_or_else(|| Mp4Error::OutOfOrder("moov".into()))?;
                    let info = InitInfo::parse_moov(&body)?;
                    self.init = Some(info.clone());
                    let mut data = BytesMut::with_capacity(ftyp.len() + whole.len());
                    data.extend_from_slice(&ftyp);
                    data.extend_from_slice(&whole);
                    return Ok(Some(Mp4Item::Init {
                        data: data.freeze(),
                        info,
                    }));
                }
                b"styp" | b"prft" => {
                    if self.init.is_none() || self.moof.is_some() {
                        return Err(Mp4Error::OutOfOrder(fourcc(h.kind)));
                    }
                    if self.prefix.len() + whole.len() > MAX_PREFIX {
                        return Err(Mp4Error::PrefixTooLarge);
                    }
                    self.prefix.extend_from_slice(&whole);
                }
                b"moof" => {
                    let Some(init) = &self.init else {
                        return Err(Mp4Error::OutOfOrder("moof".into()));
                    };
                    if self.moof.is_some() {
                        return Err(Mp4Error::OutOfOrder("moof".into()));
                    }
                    let video = match init.video() {
                        Some(t) => parse_moof(&body, t)?,
                        None => None,
                    };
                    self.moof = Some((whole, video));
                }
                b"mdat" => {
                    let Some((moof, video)) = self.moof.take() else {
                        return Err(Mp4Error::OutOfOrder("mdat".into()));
                    };
                    let mut data =
                        BytesMut::with_capacity(self.prefix.len() + moof.len() + whole.len());
                    data.extend_from_slice(&self.prefix);
                    data.extend_from_slice(&moof);
                    data.extend_from_slice(&whole);
                    self.prefix.clear();
                    return Ok(Some(Mp4Item::Fragment {
                        data: data.freeze(),
                        video,
                    }));
                }
                // free, skip, sidx, mfra (written when ffmpeg ends), udta, ...
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn full(kind: &[u8; 4], version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut b = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
        b.extend_from_slice(rest);
        bx(kind, &b)
    }

    fn be(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    fn trak(id: u32, handler: &[u8; 4], timescale: u32) -> Vec<u8> {
        let tkhd = full(b"tkhd", 0, 3, &be(&[0, 0, id, 0, 0]));
        let mdhd = full(b"mdhd", 0, 0, &be(&[0, 0, timescale, 0, 0]));
        let mut h = be(&[0]);
        h.extend_from_slice(handler);
        h.extend_from_slice(&[0; 12]);
        let hdlr = full(b"hdlr", 0, 0, &h);
        let mdia = bx(b"mdia", &[mdhd, hdlr].concat());
        bx(b"trak", &[tkhd, mdia].concat())
    }

    fn init() -> Vec<u8> {
        let trex = full(b"trex", 0, 0, &be(&[1, 1, 512, 0, 0x0101_0000]));
        let moov = bx(
            b"moov",
            &[
                trak(1, b"vide", 12800),
                trak(2, b"soun", 48000),
                bx(b"mvex", &trex),
            ]
            .concat(),
        );
        [bx(b"ftyp", b"iso5\0\0\0\0"), moov].concat()
    }

    /// A fragment of `n` video samples of 512 ticks (12800 per s) from `tfdt`, keyframe first.
    fn fragment(tfdt: u64, n: u32) -> Vec<u8> {
        let tfhd = full(b"tfhd", 0, 0x02_0000, &be(&[1]));
        let tfdt = full(b"tfdt", 1, 0, &tfdt.to_be_bytes());
        let mut samples = vec![n, 0, 0x0200_0000];
        for _ in 0..n {
            samples.extend_from_slice(&[512, 100]);
        }
        let trun = full(b"trun", 0, 0x305, &be(&samples));
        let traf = bx(b"traf", &[tfhd, tfdt, trun].concat());
        let moof = bx(b"moof", &[full(b"mfhd", 0, 0, &be(&[1])), traf].concat());
        [moof, bx(b"mdat", &vec![7u8; n as usize * 100])].concat()
    }

    fn drain(s: &mut Mp4Stream) -> Result<Vec<Mp4Item>, Mp4Error> {
        let mut out = Vec::new();
        while let Some(i) = s.next_item()? {
            out.push(i);
        }
        Ok(out)
    }

    #[test]
    fn reads_init_and_fragments_with_their_timing() {
        let mut s = Mp4Stream::default();
        s.push(&init());
        s.push(&fragment(0, 25));
        s.push(&bx(b"free", b"xx"));
        s.push(&bx(b"styp", b"msdh"));
        s.push(&fragment(12800, 25));
        let items = drain(&mut s).unwrap();
        assert_eq!(items.len(), 3);
        let Mp4Item::Init { info, .. } = &items[0] else {
            panic!("init first")
        };
        assert_eq!(info.video().unwrap().timescale, 12800);
        assert!(info.has_audio());
        let Mp4Item::Fragment { data, video } = &items[2] else {
            panic!("fragment")
        };
        assert_eq!(&data[4..8], b"styp");
        let v = video.unwrap();
        assert_eq!((v.base_decode_time, v.duration), (12800, 12800));
        assert!(v.starts_with_sync);
        assert_eq!(ticks_to_ms(v.base_decode_time, 12800), 1000);
    }

    #[test]
    fn largesize_is_read_and_size_zero_rejected() {
        let mut big = 1u32.to_be_bytes().to_vec();
        big.extend_from_slice(b"free");
        big.extend_from_slice(&20u64.to_be_bytes());
        big.extend_from_slice(&[0; 4]);
        let mut s = Mp4Stream::default();
        s.push(&big);
        s.push(&init());
        assert!(matches!(drain(&mut s).unwrap()[..], [Mp4Item::Init { .. }]));

        let mut s = Mp4Stream::default();
        s.push(&[0, 0, 0, 0, b'm', b'd', b'a', b't']);
        assert!(matches!(s.next_item(), Err(Mp4Error::SizeZero { .. })));
        assert!(s.next_item().is_err(), "stays failed");
    }

    #[test]
    fn oversized_and_undersized_boxes_are_errors_before_buffering() {
        let mut s = Mp4Stream::new(1024);
        s.push(&[0, 1, 0, 0, b'm', b'd', b'a', b't']);
        assert!(matches!(s.next_item(), Err(Mp4Error::TooLarge { .. })));
        let mut s = Mp4Stream::new(1024);
        s.push(&[0, 0, 0, 7, b'm', b'o', b'o', b'f']);
        assert!(matches!(s.next_item(), Err(Mp4Error::TooSmall { .. })));
    }

    #[test]
    fn out_of_order_boxes_are_errors() {
        for bad in [fragment(0, 1), bx(b"moov", &[])] {
            let mut s = Mp4Stream::default();
            s.push(&bad);
            assert!(matches!(s.next_item(), Err(Mp4Error::OutOfOrder(_))));
        }
    }

    #[test]
    fn every_truncation_waits_or_fails_without_panicking() {
        let whole = [init(), fragment(0, 3), fragment(1536, 3)].concat();
        for cut in 0..whole.len() {
            let mut s = Mp4Stream::default();
            s.push(&whole[..cut]);
            let _ = drain(&mut s);
        }
        // Truncating inside a box body (with a consistent size) must be an error, not a panic.
        let (i, f) = (init(), fragment(0, 3));
        let moov_body = &i[16 + 8..]; // after ftyp (16 bytes) and the moov header
        let video = InitInfo::parse_moov(moov_body)
            .unwrap()
            .video()
            .unwrap()
            .clone();
        let moof_len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        for cut in 0..moof_len - 8 {
            let _ = parse_moof(&f[8..8 + cut], &video);
        }
        for cut in 0..moov_body.len() {
            let _ = InitInfo::parse_moov(&moov_body[..cut]);
        }
    }

    #[test]
    fn trun_sample_count_larger_than_box_is_an_error() {
        let tfhd = full(b"tfhd", 0, 0, &be(&[1]));
        let tfdt = full(b"tfdt", 0, 0, &be(&[0]));
        let trun = full(b"trun", 0, 0x100, &be(&[u32::MAX, 1]));
        let traf = bx(b"traf", &[tfhd, tfdt, trun].concat());
        let t = TrackInfo {
            track_id: 1,
            handler: *b"vide",
            timescale: 1000,
            default_sample_duration: 0,
            default_sample_flags: 0,
        };
        assert!(matches!(
            parse_moof(&traf, &t),
            Err(Mp4Error::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                chunk in 1usize..64) {
            let mut s = Mp4Stream::new(4096);
            for c in data.chunks(chunk) {
                s.push(c);
                if drain(&mut s).is_err() { break; }
            }
            let t = TrackInfo { track_id: 1, handler: *b"vide", timescale: 1,
                                default_sample_duration: 1, default_sample_flags: 0 };
            let _ = parse_moof(&data, &t);
            let _ = InitInfo::parse_moov(&data);
        }

        #[test]
        fn corrupted_stream_never_panics(pos in 0usize..600, byte in any::<u8>()) {
            let mut whole = [init(), fragment(0, 3), fragment(1536, 3)].concat();
            let p = pos % whole.len();
            whole[p] = byte;
            let mut s = Mp4Stream::default();
            s.push(&whole);
            let _ = drain(&mut s);
        }

        #[test]
        fn chunking_does_not_change_items(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
            let whole = [init(), fragment(0, 25), fragment(12800, 25)].concat();
            let mut once = Mp4Stream::default();
            once.push(&whole);
            let expected = drain(&mut once).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % whole.len()).collect();
            cuts.sort_unstable();
            let mut s = Mp4Stream::default();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([whole.len()]) {
                s.push(&whole[at..c.max(at)]);
                at = c.max(at);
                got.extend(drain(&mut s).unwrap());
            }
            prop_assert_eq!(got, expected);
        }
    }
}
