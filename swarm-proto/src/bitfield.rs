//! Segment availability maps: bit `i` set means segment `i` is held and
//! verified. Bits are packed most-significant first, as in BitTorrent.

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bitfield {
    len: u32,
    bytes: Vec<u8>,
}

impl Bitfield {
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            len,
            bytes: vec![0; (len as usize).div_ceil(8)],
        }
    }

    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Rebuilds a bitfield from the wire. `None` if the byte count does not
    /// match `len` or a bit past `len` is set.
    pub fn from_bytes(len: u32, bytes: &[u8]) -> Option<Bitfield> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let b = Bitfield {
            len,
            bytes: bytes.to_vec(),
        };
        let spare = b.bytes.len() * 8 - len as usize;
        if spare > 0 && b.bytes[b.bytes.len() - 1] & ((1u8 << spare) - 1) != 0 {
            return None;
        }
        Some(b)
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; out-of-range indices are ignored.
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        }
    }

    pub fn clear(&mut self, i: u32) {
        if i < self.len {
            self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
        }
    }

    pub fn count_ones(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test(unsupported = test)]
    fn set_get_clear() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        b.set(10); // ignored
        assert!(b.get(0) && b.get(9) && !b.get(5) && !b.get(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        b.clear(0);
        assert_eq!(b.count_ones(), 1);
        assert_eq!(Bitfield::full(10).count_ones(), 10);
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn from_bytes_rejects_wrong_length_and_spare_bits() {
        assert!(Bitfield::from_bytes(10, &[0xff]).is_none());
        assert!(Bitfield::from_bytes(10, &[0xff, 0x20]).is_none());
        assert_eq!(
            Bitfield::from_bytes(10, &[0xff, 0xc0])
                .unwrap()
                .count_ones(),
            10
        );
    }
}
