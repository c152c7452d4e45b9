//! Which discovered addresses may receive users' requests (`discovery.allowed_cidrs`,
//! `discovery.denied_ports`): loopback, link-local and cloud-metadata addresses are always
//! refused, and the rest must fall within an allowed range. Pure: [`crate::discovery`] applies it
//! to every entry, [`crate::config`] builds it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Envoy's admin port (its documentation's default) and Istio's sidecar admin port: refused by
/// default (`discovery.denied_ports` replaces the list).
pub const DEFAULT_DENIED_PORTS: [u16; 2] = [9901, 15000];
/// Longest accepted `discovery.allowed_cidrs` / `denied_ports` lists.
pub const MAX_ADMISSION_ENTRIES: usize = 1024;

/// An address range, `10.0.0.0/8` or `fd00::/8` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `ip/len` or a bare `ip`. Host bits must be zero, and IPv4 ranges must be written
    /// in IPv4 form (discovered IPv4-mapped addresses are matched as IPv4).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| format!("{s:?} is not an IP range (ip/len)"))?;
        if let IpAddr::V6(v6) = net
            && v6.to_ipv4_mapped().is_some()
        {
            return Err(format!("{s:?} is IPv4-mapped; write the IPv4 range instead"));
        }
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(l) if l <= max => l,
                _ => return Err(format!("{s:?} has a prefix length outside 0..={max}")),
            },
        };
        let cidr = Cidr { net, len };
        if cidr.masked(net) != net {
            return Err(format!("{s:?} has host bits set (the range starts at {})", cidr.masked(net)));
        }
        Ok(cidr)
    }

    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        let (bits, width) = Cidr::bits(ip);
        let host_bits = u32::from(width - self.len.min(width));
        let mask = if host_bits >= 128 { 0 } else { !0u128 << host_bits };
        let net = bits & mask;
        match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
        }
    }

    /// Whether `ip` (canonical: IPv4-mapped addresses as IPv4) is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.is_ipv4() == ip.is_ipv4() && self.masked(ip) == self.net
    }

    /// Whether this whole range lies inside `outer`.
    fn within(&self, outer: &Cidr) -> bool {
        self.len >= outer.len && outer.contains(self.net)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Where a special address class lies, and what it is called in counters and logs.
struct Special {
    reason: SkipReason,
    ranges: &'static [(&'static str, u8)],
}

/// Refused unless `allowed_cidrs` lists a range inside them. Cloud metadata endpoints
/// (AWS/GCP/Azure/Oracle 169.254.169.254, AWS IPv6 fd00:ec2::254, Alibaba 100.100.100.200) come
/// first: they need their exact address listed.
const SPECIAL: [Special; 3] = [
    Special {
        reason: SkipReason::Metadata,
        ranges: &[("169.254.169.254", 32), ("fd00:ec2::254", 128), ("100.100.100.200", 32)],
    },
    Special { reason: SkipReason::Loopback, ranges: &[("127.0.0.0", 8), ("::1", 128)] },
    Special { reason: SkipReason::LinkLocal, ranges: &[("169.254.0.0", 16), ("fe80::", 10)] },
];

/// Why a discovered entry was left out of the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not a usable `ip:port` (port 0, not an IP literal, multicast, broadcast, unspecified), or
    /// a name with control characters, blank, or over 256 bytes.
    BadEntry,
    /// Its port is in `discovery.denied_ports` (by default Envoy's and Istio's admin ports).
    DeniedPort,
    /// A cloud metadata endpoint.
    Metadata,
    /// Loopback (127.0.0.0/8, ::1): this proxy itself, its admin listener, its sidecars.
    Loopback,
    /// Link-local (169.254.0.0/16, fe80::/10).
    LinkLocal,
    /// Not inside any of `discovery.allowed_cidrs`.
    OutsideAllowed,
    /// Its name is a configured host's id, or another endpoint's address: taking it would take
    /// that host's sessions.
    IdCollision,
}

impl SkipReason {
    pub const ALL: [SkipReason; 7] = [
        SkipReason::BadEntry,
        SkipReason::DeniedPort,
        SkipReason::Metadata,
        SkipReason::Loopback,
        SkipReason::LinkLocal,
        SkipReason::OutsideAllowed,
        SkipReason::IdCollision,
    ];

    /// Counter suffix: `session_router.discovery.skipped.<this>`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::BadEntry => "bad_entry",
            SkipReason::DeniedPort => "denied_port",
            SkipReason::Metadata => "metadata",
            SkipReason::Loopback => "loopback",
            SkipReason::LinkLocal => "link_local",
            SkipReason::OutsideAllowed => "outside_allowed",
            SkipReason::IdCollision => "id_collision",
        }
    }
}

/// One entry left out, and why. `entry` describes it for the log (its address, or its position
/// in the answer when it has none; its name, escaped).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Skipped {
    pub reason: SkipReason,
    pub entry: String,
}

/// Which discovered addresses may join the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Empty: any unicast address outside the special classes (loopback, link-local, metadata).
    pub allowed: Vec<Cidr>,
    pub denied_ports: Vec<u16>,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission { allowed: Vec::new(), denied_ports: DEFAULT_DENIED_PORTS.to_vec() }
    }
}

/// The address Envoy would connect to: IPv4-mapped IPv6 as IPv4, so `::ffff:127.0.0.1` is loopback.
pub fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// The IPv4 address a NAT64 gateway (64:ff9b::/96) would translate `ip` to.
fn nat64_v4(ip: IpAddr) -> Option<IpAddr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    })
}

impl Admission {
    /// `Ok(canonical address)` when `address` may join the membership.
    pub fn check(&self, address: SocketAddr) -> Result<SocketAddr, SkipReason> {
        let address = canonical(address);
        let ip = address.ip();
        if !usable(address) {
            return Err(SkipReason::BadEntry);
        }
        if self.denied_ports.contains(&address.port()) {
            return Err(SkipReason::DeniedPort);
        }
        let listed = |range: &Cidr| self.allowed.iter().any(|c| c.contains(ip) && c.within(range));
        for class in &SPECIAL {
            for &(net, len) in class.ranges {
                let Ok(net) = net.parse::<IpAddr>() else { continue };
                let range = Cidr { net, len };
                let hit = range.contains(ip) || nat64_v4(ip).is_some_and(|v4| range.contains(v4));
                if hit && !listed(&range) {
                    return Err(class.reason);
                }
            }
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|c| c.contains(ip)) {
            return Err(SkipReason::OutsideAllowed);
        }
        Ok(address)
    }
}

/// A unicast `ip:port` Envoy can connect to.
fn usable(address: SocketAddr) -> bool {
    let ip = address.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    address.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}
