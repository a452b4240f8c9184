//! Network groups: a table of CIDR ranges → group name.
//!
//! The server places each client in the group of the most specific range
//! (longest prefix) that holds its address; an address in no range is in
//! [`DEFAULT_GROUP`]. The embedded default table knows loopback and the
//! private ranges; a file imported with `--groups` adds ranges on top of it,
//! and for two ranges of the same prefix the imported one wins.
//!
//! File format: one `CIDR GROUP` per line, `#` starts a comment, blank lines
//! are skipped. A bare address counts as a single-host range.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use swarm_proto::signal::MAX_NAME_LEN;

/// Group of an address that no range holds.
pub const DEFAULT_GROUP: &str = "public";

/// The embedded table.
const DEFAULT_TABLE: &str = "\
127.0.0.0/8     loopback
::1/128         loopback
10.0.0.0/8      private
172.16.0.0/12   private
192.168.0.0/16  private
fc00::/7        private
";

#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("cannot read network groups file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network groups file {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Longest-prefix lookup table from address ranges to group names.
///
/// Invariant: every key stored under prefix length `len` has all bits past
/// `len` cleared, so a lookup masks the address and probes each length.
#[derive(Clone, Debug)]
pub struct GroupTable {
    names: Vec<String>,
    /// Prefix length → (masked network → index into `names`), longest first
    /// when iterated in reverse.
    v4: BTreeMap<u8, HashMap<u32, usize>>,
    v6: BTreeMap<u8, HashMap<u128, usize>>,
    ranges: usize,
}

impl Default for GroupTable {
    /// The embedded table: loopback and private ranges.
    fn default() -> Self {
        let mut t = GroupTable::empty();
        t.add_text(Path::new("<embedded>"), DEFAULT_TABLE)
            .expect("embedded network groups parse");
        t
    }
}

impl GroupTable {
    /// A table with no ranges: every address is [`DEFAULT_GROUP`].
    pub fn empty() -> Self {
        GroupTable {
            names: Vec::new(),
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
            ranges: 0,
        }
    }

    /// The embedded table plus the ranges of the file at `path`.
    pub fn with_file(path: &Path) -> Result<Self, GroupsError> {
        let text = std::fs::read_to_string(path).map_err(|source| GroupsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut t = GroupTable::default();
        t.add_text(path, &text)?;
        Ok(t)
    }

    /// Adds the ranges in `text` (file format above); `origin` names the
    /// source in errors. On error the table is unchanged.
    pub fn add_text(&mut self, origin: &Path, text: &str) -> Result<(), GroupsError> {
        let mut parsed = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| GroupsError::Line {
                path: origin.to_owned(),
                line: i + 1,
                message,
            };
            let mut fields = line.split_whitespace();
            let (Some(cidr), Some(group), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad(format!("expected `CIDR GROUP`, got `{line}`")));
            };
            let net = parse_net(cidr)
                .ok_or_else(|| bad(format!("`{cidr}` is not an address range like 10.0.0.0/8")))?;
            if group.len() > MAX_NAME_LEN {
                return Err(bad(format!(
                    "group name is longer than {MAX_NAME_LEN} characters"
                )));
            }
            parsed.push((net, group.to_owned()));
        }
        for (net, group) in parsed {
            self.insert(net, group);
        }
        Ok(())
    }

    /// Adds one range; a range already present gets the new group.
    pub fn insert(&mut self, net: IpNet, group: String) {
        let idx = match self.names.iter().position(|n| *n == group) {
            Some(i) => i,
            None => {
                self.names.push(group);
                self.names.len() - 1
            }
        };
        let net = net.trunc();
        let len = net.prefix_len();
        let old = match net {
            IpNet::V4(n) => self
                .v4
                .entry(len)
                .or_default()
                .insert(u32::from(n.network()), idx),
            IpNet::V6(n) => self
                .v6
                .entry(len)
                .or_default()
                .insert(u128::from(n.network()), idx),
        };
        if old.is_none() {
            self.ranges += 1;
        }
    }

    /// Number of distinct ranges.
    pub fn len(&self) -> usize {
        self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges == 0
    }

    /// The group of `addr`. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn lookup(&self, addr: IpAddr) -> &str {
        let idx = match addr.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .rev()
                    .find_map(|(&len, m)| m.get(&(a & mask32(len))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .rev()
                    .find_map(|(&len, m)| m.get(&(a & mask128(len))))
            }
        };
        idx.map_or(DEFAULT_GROUP, |&i| self.names[i].as_str())
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn embedded_table_knows_loopback_private_and_public() {
        let t = GroupTable::default();
        assert_eq!(t.lookup(ip("127.0.0.1")), "loopback");
        assert_eq!(t.lookup(ip("127.9.8.7")), "loopback");
        assert_eq!(t.lookup(ip("::1")), "loopback");
        assert_eq!(t.lookup(ip("::ffff:127.0.0.1")), "loopback");
        assert_eq!(t.lookup(ip("10.1.2.3")), "private");
        assert_eq!(t.lookup(ip("172.16.0.1")), "private");
        assert_eq!(t.lookup(ip("172.31.255.255")), "private");
        assert_eq!(t.lookup(ip("172.32.0.1")), "public");
        assert_eq!(t.lookup(ip("192.168.1.1")), "private");
        assert_eq!(t.lookup(ip("8.8.8.8")), "public");
        assert_eq!(t.lookup(ip("2001:db8::1")), "public");
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn file_ranges_add_to_the_default_and_longest_prefix_wins() {
        let mut t = GroupTable::default();
        let text = "\
# ISP table
10.0.0.0/8        campus     # same prefix as the default: file wins
10.20.0.0/16      lab
203.0.113.0/24    isp-a
203.0.113.128/25  isp-b
2001:db8::/32     isp-v6

198.51.100.7      one-host
";
        t.add_text(Path::new("groups.txt"), text).unwrap();
        assert_eq!(t.lookup(ip("10.1.1.1")), "campus");
        assert_eq!(t.lookup(ip("10.20.3.4")), "lab");
        assert_eq!(t.lookup(ip("203.0.113.5")), "isp-a");
        assert_eq!(t.lookup(ip("203.0.113.200")), "isp-b");
        assert_eq!(t.lookup(ip("2001:db8:1::9")), "isp-v6");
        assert_eq!(t.lookup(ip("198.51.100.7")), "one-host");
        assert_eq!(t.lookup(ip("198.51.100.8")), "public");
        assert_eq!(t.lookup(ip("127.0.0.1")), "loopback");
    }

    #[test]
    fn host_bits_in_a_range_are_ignored() {
        let mut t = GroupTable::empty();
        t.add_text(Path::new("g"), "192.0.2.77/24 doc").unwrap();
        assert_eq!(t.lookup(ip("192.0.2.1")), "doc");
    }

    #[test]
    fn zero_length_prefix_matches_everything() {
        let mut t = GroupTable::empty();
        t.add_text(Path::new("g"), "0.0.0.0/0 world4\n::/0 world6")
            .unwrap();
        assert_eq!(t.lookup(ip("1.2.3.4")), "world4");
        assert_eq!(t.lookup(ip("2001:db8::1")), "world6");
    }

    #[test]
    fn bad_line_is_an_error_naming_file_and_line() {
        let mut t = GroupTable::default();
        let err = t
            .add_text(
                Path::new("/etc/shoal/groups.txt"),
                "10.0.0.0/8 a\n\n# c\n10.0.0.0/33 b\n",
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, GroupsError::Line { line: 4, .. }), "{msg}");
        assert!(msg.contains("/etc/shoal/groups.txt"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("10.0.0.0/33"), "{msg}");
        // Nothing from the bad file was added.
        assert_eq!(t.lookup(ip("10.0.0.1")), "private");
    }

    #[test]
    fn missing_group_or_extra_fields_are_errors() {
        for text in [
            "10.0.0.0/8",
            "10.0.0.0/8 a b",
            "not-an-ip g",
            "10.0.0.0/8 # a",
        ] {
            let err = GroupTable::empty()
                .add_text(Path::new("g.txt"), text)
                .unwrap_err();
            assert!(
                matches!(err, GroupsError::Line { line: 1, .. }),
                "{text}: {err}"
            );
        }
        let long = format!("10.0.0.0/8 {}", "x".repeat(MAX_NAME_LEN + 1));
        assert!(GroupTable::empty()
            .add_text(Path::new("g.txt"), &long)
            .is_err());
    }

    #[test]
    fn unreadable_file_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent/shoal-groups.txt");
        let err = GroupTable::with_file(path).unwrap_err();
        assert!(matches!(err, GroupsError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/shoal-groups.txt"),
            "{err}"
        );
    }

    #[test]
    fn file_loads_from_disk() {
        let dir = std::env::temp_dir().join(format!("shoal-groups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("groups.txt");
        std::fs::write(&path, "100.64.0.0/10 cgnat\n").unwrap();
        let t = GroupTable::with_file(&path).unwrap();
        assert_eq!(t.lookup(ip("100.64.1.1")), "cgnat");
        assert_eq!(t.lookup(ip("127.0.0.1")), "loopback");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
