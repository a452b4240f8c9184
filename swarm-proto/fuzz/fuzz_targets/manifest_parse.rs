//! Feeds arbitrary text to `Manifest::from_json`. It may not panic; a
//! manifest it accepts must answer every query without panicking, and the
//! answers must be consistent: validated indexes stay in range, pieces tile
//! their segment exactly, and media time maps to a segment that covers it.
//!
//! Uses only `Manifest` methods, never its fields: the segment sizes and the
//! piece size that the piece ranges are checked against are read from the
//! manifest's own JSON (`to_json`), the format seeds publish.
#![no_main]
use libfuzzer_sys::fuzz_target;
use swarm_proto::manifest::{MAX_PIECE_BYTES, MAX_SEGMENT_BYTES, MIN_PIECE_BYTES};
use swarm_proto::{Manifest, SegmentId};

/// Pieces checked at each end of a segment (a 64 MiB segment of 1 KiB
/// pieces has 65,536 of them; checking all would slow every input down).
const EDGE_PIECES: u32 = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = Manifest::from_json(text) else { return };

    // What was accepted serializes and parses back to the same manifest.
    let json = m.to_json();
    match Manifest::from_json(&json) {
        Ok(again) => assert_eq!(again, m, "manifest changed through to_json"),
        Err(e) => panic!("to_json output does not parse: {e}\n{json}"),
    }

    let doc: serde_json::Value = serde_json::from_str(&json).expect("to_json is JSON");
    let piece_size = doc["piece_size"].as_u64().expect("manifest JSON has a numeric piece_size");
    let sizes = doc["segments"].as_array().expect("manifest JSON has a segments array");

    let n = m.segment_count();
    assert!(n >= 1, "an accepted manifest has no segments");
    assert_eq!(n as usize, sizes.len(), "segment_count() disagrees with the JSON");
    // A raw index derived from the input too, so it is not always the same few.
    let from_input = data.iter().fold(0u32, |h, &b| h.rotate_left(5) ^ b as u32);
    let raws = [0, 1, n / 2, n - 1, n, n.wrapping_add(1), u32::MAX, from_input, from_input % n];
    for raw in raws {
        let Some(seg) = m.segment(raw) else {
            assert!(raw >= n, "segment({raw}) refused with {n} segments");
            continue;
        };
        assert!(raw < n, "segment({raw}) accepted with {n} segments");
        assert_eq!(seg.get(), raw);
        let size = sizes[raw as usize]["size"].as_u64().expect("segment JSON has a numeric size");
        check_pieces(&m, seg, size, piece_size, from_input);
    }

    // Time -> segment.
    let total = m.duration_ms();
    let mut times = vec![0, 1, total / 2, total.saturating_sub(1), total, total + 1, u64::MAX];
    times.push(from_input as u64 % (total + 1));
    times.sort_unstable();
    let mut last = 0;
    for t in times {
        let seg = m.segment_at(t);
        assert!(seg.get() < n, "segment_at({t}) = {seg} with {n} segments");
        assert!(seg.get() >= last, "segment_at is not monotonic at {t} ms");
        last = seg.get();
        let start = m.start_ms(seg);
        assert!(start <= total, "{seg} starts at {start} ms, after the end ({total} ms)");
        if t < total {
            assert!(start <= t, "segment_at({t}) = {seg}, which starts later, at {start} ms");
        } else {
            assert_eq!(seg.get(), n - 1, "segment_at({t}) past the end ({total} ms) is not the last segment");
        }
    }
});

/// Pieces of one segment of `size` bytes: `piece(raw)` accepts exactly
/// `0..piece_count`, and the ranges are contiguous from 0, non-empty, all of
/// `piece_size` bytes but the last, which may be shorter and ends exactly at
/// the segment's size.
fn check_pieces(m: &Manifest, seg: SegmentId, size: u64, piece_size: u64, from_input: u32) {
    assert!((1..=MAX_SEGMENT_BYTES).contains(&size), "{seg}: accepted size {size}");
    assert!(
        (MIN_PIECE_BYTES as u64..=MAX_PIECE_BYTES as u64).contains(&piece_size),
        "accepted piece size {piece_size}"
    );
    let count = m.piece_count(seg);
    assert!(count >= 1, "{seg} has no pieces");
    assert_eq!(count as u64, size.div_ceil(piece_size), "{seg}: {count} pieces for {size} bytes in pieces of {piece_size}");
    for raw in [count, count.wrapping_add(1), u32::MAX] {
        assert!(m.piece(seg, raw).is_none(), "{seg}: piece({raw}) accepted with {count} pieces");
    }
    let first = m.piece(seg, 0).expect("piece 0 of a segment");
    let first_range = m.piece_range(seg, first);
    assert_eq!(first_range.start, 0, "{seg}: piece 0 does not start at 0");
    let step = first_range.len();
    assert_eq!(step as u64, piece_size.min(size), "{seg}: piece 0 is {first_range:?}");

    let last_raw = count - 1;
    let mut raws: Vec<u32> = (0..count.min(EDGE_PIECES)).collect();
    raws.extend(last_raw.saturating_sub(EDGE_PIECES)..=last_raw);
    raws.push(count / 2);
    raws.push(from_input % count);
    raws.sort_unstable();
    raws.dedup();
    let mut prev: Option<(u32, std::ops::Range<usize>)> = None;
    for raw in raws {
        let piece = m.piece(seg, raw).unwrap_or_else(|| panic!("{seg}: piece({raw}) refused with {count} pieces"));
        assert_eq!(piece.get(), raw);
        let r = m.piece_range(seg, piece);
        assert!(r.start < r.end, "{seg} piece {raw}: empty or reversed range {r:?}");
        assert!(r.end as u64 <= size, "{seg} piece {raw}: range {r:?} outside the segment's {size} bytes");
        assert_eq!(r.start, raw as usize * step, "{seg} piece {raw}: range {r:?} is not at raw * {step}");
        if raw < last_raw {
            assert_eq!(r.len(), step, "{seg} piece {raw}: range {r:?} is not a full piece");
        } else {
            assert!(r.len() <= step, "{seg} last piece {raw}: range {r:?} is longer than a full piece");
            assert_eq!(r.end as u64, size, "{seg}: last piece {raw} is {r:?}, the segment has {size} bytes");
        }
        if let Some((p, pr)) = &prev {
            if p + 1 == raw {
                assert_eq!(pr.end, r.start, "{seg}: pieces {p} and {raw} are not contiguous");
            }
        }
        prev = Some((raw, r));
    }
}
