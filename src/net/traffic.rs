//! The traffic matrix among endpoints, counted from packets seen on chosen interfaces with
//! AF_PACKET sockets: bytes and packets per (source address, destination address), mapped to
//! endpoint names at the end.
//!
//! Per-interface counters (`/proc/net/dev`) give only each endpoint's total sent and received,
//! the row and column sums of the matrix; many matrices share those sums, so the packets
//! themselves are counted. What is counted is the IP packet's length (IPv4 total length, IPv6
//! 40 + payload length): no link-layer header, padding or FCS, so a packet counts the same on
//! every kind of link.
//!
//! A packet crossing several watched interfaces (a veth pair's two ends, a bridge's ports) is
//! counted once, where it enters the watched set; [`Counter`] holds the rule, and
//! docs/network.md explains it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;

use crate::trace::csv_field;

/// What a captured frame holds, as far as the matrix cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// An IPv4 or IPv6 packet.
    Ip(IpPacket),
    /// Not IP (ARP, LLDP, …): counted and reported, never in the matrix.
    NotIp,
    /// IP by its type, but too short or inconsistent to read.
    Malformed,
}

/// The parts of an IP packet the matrix needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP packet length in bytes (header included, link layer excluded).
    pub len: u32,
}

/// How a link frames its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header (Ethernet, veth, tap, bridge, loopback), possibly VLAN-tagged.
    Ethernet,
    /// The IP packet with no link header (tun, WireGuard, GRE, PPP).
    RawIp,
    /// A link whose framing is not known: nothing on it is read.
    Other,
}

impl Link {
    /// The framing of a link from its ARPHRD hardware type (`sll_hatype`).
    pub fn from_hatype(hatype: u16) -> Link {
        match hatype {
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Link::Ethernet,
            // none (tun), ppp, rawip (519), tunnel, tunnel6, sit, ipgre, ip6gre
            libc::ARPHRD_NONE | libc::ARPHRD_PPP | 519 | 768 | 769 | 776 | 778 | 823 => Link::RawIp,
            _ => Link::Other,
        }
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88A8;

/// Reads the addresses and IP length of a frame. `bytes` may be a prefix of the frame (the
/// headers are enough); `frame_len` is its whole length, used when the IP header's own length
/// is 0 (a TSO/GSO super-packet over 64 KiB, an IPv6 jumbogram).
pub fn parse_frame(bytes: &[u8], frame_len: usize, link: Link) -> Frame {
    let mut off = 0usize;
    let ethertype = match link {
        Link::Other => return Frame::NotIp,
        Link::RawIp => match bytes.first().map(|b| b >> 4) {
            Some(4) => ETH_IPV4,
            Some(6) => ETH_IPV6,
            _ => return Frame::NotIp,
        },
        Link::Ethernet => {
            if bytes.len() < 14 {
                return Frame::NotIp;
            }
            let mut t = u16::from_be_bytes([bytes[12], bytes[13]]);
            off = 14;
            // Up to two tags (802.1ad outer, 802.1Q inner). The kernel usually strips the
            // outer tag into metadata before a packet socket sees it; both forms parse.
            for _ in 0..2 {
                if t == ETH_VLAN || t == ETH_QINQ {
                    if bytes.len() < off + 4 {
                        return Frame::Malformed;
                    }
                    t = u16::from_be_bytes([bytes[off + 2], bytes[off + 3]]);
                    off += 4;
                }
            }
            t
        }
    };
    let ip = &bytes[off.min(bytes.len())..];
    let available = frame_len.saturating_sub(off);
    match ethertype {
        ETH_IPV4 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 || ip[0] & 0x0F < 5 {
                return Frame::Malformed;
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            let len = if total == 0 { available } else { total };
            if len < 20 {
                return Frame::Malformed;
            }
            Frame::Ip(IpPacket {
                src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                len: len.min(u32::MAX as usize) as u32,
            })
        }
        ETH_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return Frame::Malformed;
            }
            let payload = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let len = if payload == 0 {
                available.max(40)
            } else {
                40 + payload
            };
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            Frame::Ip(IpPacket {
                src: IpAddr::V6(Ipv6Addr::from(s)),
                dst: IpAddr::V6(Ipv6Addr::from(d)),
                len: len.min(u32::MAX as usize) as u32,
            })
        }
        _ => Frame::NotIp,
    }
}

/// Whether `a` is a multicast or limited-broadcast address.
pub fn is_group(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_multicast(),
    }
}

/// What a watched interface is to the endpoints, which decides where its packets count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The endpoint's own interface: it has addresses other than link-local ones.
    Own,
    /// A port facing the endpoint (tap, bridge port, a veth's host end): no addresses of
    /// its own but link-local ones; the endpoint is whatever sends into it.
    Port,
    /// The loopback: everything on it is sent by this machine.
    Loopback,
}

/// A watched interface as the counter sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// Endpoint name (several interfaces may share one).
    pub name: String,
    /// Interface name.
    pub ifname: String,
    /// Network namespace it lives in (`None`: vmmon's own).
    pub netns: Option<String>,
    /// Its role.
    pub role: Role,
    /// Its addresses (those of an own interface name its endpoint).
    pub addrs: Vec<IpAddr>,
    /// The bridge (or bond) it is a port of, if any.
    pub master: Option<String>,
    /// Its IPv4 broadcast addresses (counted as group destinations).
    #[serde(skip)]
    pub broadcast: Vec<IpAddr>,
}

impl Interface {
    /// `IFACE`, or `IFACE@NETNS` for another namespace.
    pub fn label(&self) -> String {
        match &self.netns {
            Some(ns) => format!("{}@{ns}", self.ifname),
            None => self.ifname.clone(),
        }
    }
}

/// Bytes and packets of one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// IP bytes.
    pub bytes: u64,
    /// IP packets.
    pub packets: u64,
}

impl Cell {
    fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.packets += 1;
    }
}

/// Counts per (source, destination) address pair, bounded to `max` pairs.
#[derive(Debug, Clone, Default)]
pub struct PairCounts {
    map: HashMap<(IpAddr, IpAddr), Cell>,
    /// Traffic of pairs beyond the bound, not in the matrix.
    pub overflow: Cell,
    max: usize,
}

impl PairCounts {
    fn new(max: usize) -> PairCounts {
        PairCounts {
            map: HashMap::new(),
            overflow: Cell::default(),
            max,
        }
    }

    fn add(&mut self, src: IpAddr, dst: IpAddr, bytes: u64) {
        let full = self.map.len() >= self.max;
        match self.map.get_mut(&(src, dst)) {
            Some(c) => c.add(bytes),
            None if full => self.overflow.add(bytes),
            None => self.map.entry((src, dst)).or_default().add(bytes),
        }
    }

    /// Every pair with its counts.
    pub fn iter(&self) -> impl Iterator<Item = (&(IpAddr, IpAddr), &Cell)> {
        self.map.iter()
    }
}

/// What happened to the packets seen on one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceStats {
    /// Frames read from the socket.
    pub seen: u64,
    /// Counted in the matrix here.
    pub counted: u64,
    /// IP bytes counted here.
    pub counted_bytes: u64,
    /// Not counted here: already counted where the packet entered the watched set, or in
    /// transit (forwarded by a watched machine).
    pub counted_elsewhere: u64,
    /// Counted here but to a multicast or broadcast destination, left out of the matrix.
    pub group: u64,
    /// Not IP (ARP, LLDP, …).
    pub not_ip: u64,
    /// IP by type but unreadable.
    pub malformed: u64,
    /// Packets the kernel dropped because the socket's buffer was full.
    pub kernel_drops: u64,
}

/// A packet whose counting waits until the port sockets have been read again.
#[derive(Debug, Clone, Copy)]
struct Pending {
    iface: usize,
    packet: IpPacket,
}

/// Decides, packet by packet, where a packet counts, and accumulates the counts.
///
/// A packet counts once, at the first watched interface on its path from its sender:
/// 1. **going out** of an interface, when its source is an own interface's address and it
///    was sent here: the source is this interface's address, or that of another own
///    interface in the same namespace that is not the bridge this one is a port of (a
///    packet from the bridge's address counted at the bridge already). On the
///    **loopback**, every packet going out.
/// 2. **coming in** on a **port**, when its source is no own interface's address (the
///    endpoint behind the port sent it); its source is then learned as that port's endpoint.
/// 3. coming in on an own interface, or going out of any, when its source is neither an own
///    interface's address nor learned behind a port: its sender is not watched at all, and
///    this is the first watched interface it meets.
///
/// Everything else was counted elsewhere: a packet from an own interface in another
/// namespace at that interface; from behind a port at that port.
///
/// Case 3 cannot be decided at once: the same packet may sit unread in a port's socket,
/// where it entered earlier. Such packets wait ([`Counter::observe`] queues them) until the
/// port sockets have been read once more ([`Counter::resolve`]); the kernel hands a packet to
/// the port's socket before it reaches the later interface, so by then its source is known.
#[derive(Debug)]
pub struct Counter {
    ifaces: Vec<Interface>,
    own_addr: HashMap<IpAddr, usize>,
    group_addr: HashSet<IpAddr>,
    hints: HashMap<IpAddr, String>,
    learned: HashMap<IpAddr, usize>,
    learn_conflicts: BTreeMap<IpAddr, Vec<usize>>,
    outside: HashSet<IpAddr>,
    pending: Vec<Pending>,
    max_addrs: usize,
    learn: bool,
    keep_groups: bool,
    /// Cumulative counts.
    pub total: PairCounts,
    /// Counts since the last [`Counter::take_interval`].
    pub interval: PairCounts,
    /// Per-interface statistics, in the order of `ifaces`.
    pub stats: Vec<InterfaceStats>,
}

/// Options of the counter.
#[derive(Debug, Clone)]
pub struct CountOptions {
    /// Name addresses by the port they arrive on.
    pub learn: bool,
    /// Keep multicast and broadcast destinations in the matrix.
    pub keep_groups: bool,
    /// Largest number of address pairs (and learned addresses) kept.
    pub max_pairs: usize,
    /// `ADDR=NAME` hints, which win over every other naming.
    pub hints: Vec<(IpAddr, String)>,
}

impl Default for CountOptions {
    fn default() -> Self {
        CountOptions {
            learn: true,
            keep_groups: false,
            max_pairs: 65_536,
            hints: Vec::new(),
        }
    }
}

impl Counter {
    /// A counter for these interfaces (indices are the `iface` arguments of `observe`).
    pub fn new(ifaces: Vec<Interface>, opts: &CountOptions) -> Counter {
        let mut own_addr = HashMap::new();
        let mut group_addr = HashSet::new();
        for (k, i) in ifaces.iter().enumerate() {
            if i.role != Role::Port {
                for a in &i.addrs {
                    own_addr.entry(*a).or_insert(k);
                }
            }
            group_addr.extend(i.broadcast.iter().copied());
        }
        let n = ifaces.len();
        Counter {
            ifaces,
            own_addr,
            group_addr,
            hints: opts.hints.iter().cloned().collect(),
            learned: HashMap::new(),
            learn_conflicts: BTreeMap::new(),
            outside: HashSet::new(),
            pending: Vec::new(),
            max_addrs: opts.max_pairs,
            learn: opts.learn,
            keep_groups: opts.keep_groups,
            total: PairCounts::new(opts.max_pairs),
            interval: PairCounts::new(opts.max_pairs),
            stats: vec![InterfaceStats::default(); n],
        }
    }

    /// The watched interfaces.
    pub fn interfaces(&self) -> &[Interface] {
        &self.ifaces
    }

    /// Whether some packet waits for [`Counter::resolve`].
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes one frame seen on interface `iface`, going out of it (`outgoing`) or coming in.
    pub fn observe(&mut self, iface: usize, outgoing: bool, frame: Frame) {
        let st = &mut self.stats[iface];
        st.seen += 1;
        let p = match frame {
            Frame::NotIp => {
                st.not_ip += 1;
                return;
            }
            Frame::Malformed => {
                st.malformed += 1;
                return;
            }
            Frame::Ip(p) => p,
        };
        let role = self.ifaces[iface].role;
        let src_own = self.own_addr.get(&p.src).copied();
        match (role, outgoing) {
            (Role::Loopback, true) => self.count(iface, p),
            (Role::Loopback, false) => self.stats[iface].counted_elsewhere += 1,
            (_, true) => match src_own {
                Some(j) if j == iface || !self.counted_at(j, iface) => self.count(iface, p),
                Some(_) => self.stats[iface].counted_elsewhere += 1,
                None => self.unknown_sender(iface, p),
            },
            (Role::Port, false) => {
                if src_own.is_some() {
                    self.stats[iface].counted_elsewhere += 1;
                } else {
                    self.learn_source(p.src, iface);
                    self.count(iface, p);
                }
            }
            (Role::Own, false) => match src_own {
                Some(_) => self.stats[iface].counted_elsewhere += 1,
                None => self.unknown_sender(iface, p),
            },
        }
    }

    /// Whether a packet from own interface `j`'s address, seen going out of `i`, was counted
    /// at `j` already: `j` is in another namespace (it went out of `j` there), or `i` is a
    /// port of bridge `j` (it went out of the bridge first).
    fn counted_at(&self, j: usize, i: usize) -> bool {
        let (a, b) = (&self.ifaces[j], &self.ifaces[i]);
        a.netns != b.netns || b.master.as_deref() == Some(a.ifname.as_str())
    }

    /// Case 3: a packet whose source is no own address.
    fn unknown_sender(&mut self, iface: usize, p: IpPacket) {
        if self.learned.contains_key(&p.src) {
            self.stats[iface].counted_elsewhere += 1;
        } else if self.outside.contains(&p.src) {
            self.count(iface, p);
        } else {
            self.pending.push(Pending { iface, packet: p });
        }
    }

    /// Decides the packets that waited, once the port sockets have been read again since
    /// they were seen: those whose source is still unknown were sent from outside the
    /// watched set, and count where they were seen.
    pub fn resolve(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for Pending { iface, packet: p } in pending {
            if self.own_addr.contains_key(&p.src) || self.learned.contains_key(&p.src) {
                self.stats[iface].counted_elsewhere += 1;
            } else {
                if self.outside.len() < self.max_addrs {
                    self.outside.insert(p.src);
                }
                self.count(iface, p);
            }
        }
    }

    fn learn_source(&mut self, src: IpAddr, iface: usize) {
        if !self.learn || src.is_unspecified() || is_group(&src) {
            return;
        }
        match self.learned.get(&src) {
            Some(&k) if self.ifaces[k].name == self.ifaces[iface].name => {}
            Some(&k) => {
                // The same address behind two endpoints: keep it as an address.
                let e = self.learn_conflicts.entry(src).or_default();
                for x in [k, iface] {
                    if !e.contains(&x) {
                        e.push(x);
                    }
                }
            }
            None if self.learned.len() < self.max_addrs => {
                self.learned.insert(src, iface);
                self.outside.remove(&src);
            }
            None => {}
        }
    }

    fn count(&mut self, iface: usize, p: IpPacket) {
        let st = &mut self.stats[iface];
        st.counted += 1;
        st.counted_bytes += p.len as u64;
        if !self.keep_groups && (is_group(&p.dst) || self.group_addr.contains(&p.dst)) {
            st.group += 1;
            return;
        }
        self.total.add(p.src, p.dst, p.len as u64);
        self.interval.add(p.src, p.dst, p.len as u64);
    }

    /// The counts since the last call, and a fresh interval.
    pub fn take_interval(&mut self) -> PairCounts {
        let max = self.interval.max;
        std::mem::replace(&mut self.interval, PairCounts::new(max))
    }

    /// The endpoint name of an address: a hint, else the own interface holding it, else the
    /// port it was learned behind, else the address itself.
    pub fn endpoint(&self, a: &IpAddr) -> String {
        if let Some(n) = self.hints.get(a) {
            return n.clone();
        }
        if let Some(&k) = self.own_addr.get(a) {
            return self.ifaces[k].name.clone();
        }
        if !self.learn_conflicts.contains_key(a)
            && let Some(&k) = self.learned.get(a)
        {
            return self.ifaces[k].name.clone();
        }
        a.to_string()
    }

    /// Addresses named after the endpoint they were learned behind, by endpoint.
    pub fn learned_names(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for (a, &k) in &self.learned {
            if !self.learn_conflicts.contains_key(a) && !self.hints.contains_key(a) {
                out.entry(self.ifaces[k].name.clone()).or_default().push(*a);
            }
        }
        out.into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v.iter().map(IpAddr::to_string).collect())
            })
            .collect()
    }

    /// Notes for the user: addresses seen behind two endpoints.
    pub fn notes(&self) -> Vec<String> {
        self.learn_conflicts
            .iter()
            .map(|(a, ks)| {
                let names: Vec<String> = ks.iter().map(|&k| self.ifaces[k].label()).collect();
                format!(
                    "{a} arrived from the far side of {}: kept as an address, not named",
                    names.join(" and ")
                )
            })
            .collect()
    }

    /// The matrix of `counts` over `seconds`, endpoints named.
    pub fn matrix(&self, counts: &PairCounts, seconds: f64) -> TrafficMatrix {
        let mut endpoints: Vec<String> = Vec::new();
        let push = |s: &str, v: &mut Vec<String>| {
            if !v.iter().any(|e| e == s) {
                v.push(s.to_string());
            }
        };
        for i in &self.ifaces {
            push(&i.name, &mut endpoints);
        }
        let mut hinted: Vec<(&IpAddr, &String)> = self.hints.iter().collect();
        hinted.sort();
        for (_, n) in hinted {
            push(n, &mut endpoints);
        }
        let mut cells: HashMap<(String, String), Cell> = HashMap::new();
        let mut loose: Vec<IpAddr> = Vec::new();
        for ((s, d), c) in counts.iter() {
            let (sn, dn) = (self.endpoint(s), self.endpoint(d));
            for (a, n) in [(s, &sn), (d, &dn)] {
                if *n == a.to_string() {
                    loose.push(*a);
                }
            }
            let e = cells.entry((sn, dn)).or_default();
            e.bytes += c.bytes;
            e.packets += c.packets;
        }
        loose.sort();
        loose.dedup();
        for a in loose {
            push(&a.to_string(), &mut endpoints);
        }
        let n = endpoints.len();
        let index: HashMap<&str, usize> = endpoints
            .iter()
            .enumerate()
            .map(|(k, s)| (s.as_str(), k))
            .collect();
        let mut grid = vec![Cell::default(); n * n];
        for ((s, d), c) in cells {
            grid[index[s.as_str()] * n + index[d.as_str()]] = c;
        }
        TrafficMatrix {
            endpoints,
            cells: grid,
            seconds,
        }
    }
}

/// The traffic matrix: endpoints, and bytes and packets per (source, destination).
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficMatrix {
    /// Endpoint names: the interfaces' names in the order given, then hint names, then
    /// addresses not named.
    pub endpoints: Vec<String>,
    /// Row-major cells: `cells[i * n + j]` from endpoint i to endpoint j.
    pub cells: Vec<Cell>,
    /// The time the counts cover, in seconds.
    pub seconds: f64,
}

/// A rate with at most three decimals, as CSV text.
fn rate(bytes: u64, seconds: f64) -> String {
    let r = if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    };
    format!("{}", (r * 1000.0).round() / 1000.0)
}

impl TrafficMatrix {
    /// Number of endpoints.
    pub fn n(&self) -> usize {
        self.endpoints.len()
    }

    /// The cell from endpoint `src` to endpoint `dst`, by name.
    pub fn get(&self, src: &str, dst: &str) -> Option<Cell> {
        let i = self.endpoints.iter().position(|e| e == src)?;
        let j = self.endpoints.iter().position(|e| e == dst)?;
        Some(self.cells[i * self.n() + j])
    }

    /// The N×N CSV: header `src\dst,NAME…`, one row per source, bytes/s per cell.
    pub fn to_csv(&self) -> String {
        let n = self.n();
        let mut s = String::from("src\\dst");
        for e in &self.endpoints {
            s.push(',');
            s.push_str(&csv_field(e));
        }
        s.push('\n');
        for i in 0..n {
            s.push_str(&csv_field(&self.endpoints[i]));
            for j in 0..n {
                s.push(',');
                s.push_str(&rate(self.cells[i * n + j].bytes, self.seconds));
            }
            s.push('\n');
        }
        s
    }

    /// Tidy rows `src,dst,bytes,packets,bytes_per_s` of the non-zero cells, each prefixed
    /// by `prefix` (e.g. `time,elapsed,` values) when given.
    pub fn tidy_rows(&self, prefix: &str) -> String {
        let n = self.n();
        let mut s = String::new();
        for i in 0..n {
            for j in 0..n {
                let c = self.cells[i * n + j];
                if c.packets == 0 {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "{prefix}{},{},{},{},{}",
                    csv_field(&self.endpoints[i]),
                    csv_field(&self.endpoints[j]),
                    c.bytes,
                    c.packets,
                    rate(c.bytes, self.seconds)
                );
            }
        }
        s
    }
}

/// Header of the tidy format.
pub const TIDY_HEADER: &str = "src,dst,bytes,packets,bytes_per_s";

/// An interface to watch: `NAME=IFACE` or `NAME=IFACE@NETNS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceSpec {
    /// Endpoint name.
    pub name: String,
    /// Interface name.
    pub iface: String,
    /// Network namespace: a name under /run/netns or a path (`/proc/PID/ns/net`).
    pub netns: Option<String>,
}

impl std::str::FromStr for IfaceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' is not NAME=IFACE"))?;
        let (iface, netns) = match rest.split_once('@') {
            Some((i, ns)) => (i, Some(ns.to_string())),
            None => (rest, None),
        };
        if name.is_empty() || iface.is_empty() || netns.as_ref().is_some_and(String::is_empty) {
            return Err(format!("'{s}' is not NAME=IFACE (or NAME=IFACE@NETNS)"));
        }
        if iface.len() > 15 || iface.contains('/') {
            return Err(format!(
                "'{iface}' is not an interface name (at most 15 characters, no /)"
            ));
        }
        Ok(IfaceSpec {
            name: name.to_string(),
            iface: iface.to_string(),
            netns,
        })
    }
}

/// Parses an `ADDR=NAME` hint.
pub fn parse_hint(s: &str) -> Result<(IpAddr, String), String> {
    let (a, n) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ADDR=NAME"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("'{a}' in '{s}' is not an IP address"))?;
    if n.is_empty() {
        return Err(format!("'{s}' has an empty name"));
    }
    Ok((addr, n.to_string()))
}

/// Options of a capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Interfaces to watch.
    pub ifaces: Vec<IfaceSpec>,
    /// Counting options.
    pub count: CountOptions,
    /// How long to capture (until stopped when `None`).
    pub duration: Option<Duration>,
    /// Report an interval's counts this often.
    pub interval: Option<Duration>,
    /// Requested socket receive buffer, bytes.
    pub socket_buffer: usize,
}

/// An error that means "not permitted": capturing needs CAP_NET_RAW.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open a packet socket: {0}; capturing needs CAP_NET_RAW (run as root, or give the \
     binary the capability: setcap cap_net_raw+ep vmmon)"
)]
pub struct NotPermitted(pub std::io::Error);

/// One open, bound packet socket.
#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    iface: usize,
}

/// Number of frames read per recvmmsg call.
const BATCH: usize = 64;
/// Bytes of each frame copied out: Ethernet, two VLAN tags and an IPv6 header fit.
const SNAP: usize = 96;
/// Batches read from one socket before the others get a turn (keeps the waiting list short
/// under a flood).
const MAX_BATCHES: usize = 16;

/// A running capture: the sockets and the counter.
#[derive(Debug)]
pub struct Capture {
    sockets: Vec<Socket>,
    /// The counter (its statistics and counts so far).
    pub counter: Counter,
    config: CaptureConfig,
    bufs: Vec<[u8; SNAP]>,
    notes: Vec<String>,
}

/// The outcome of a capture.
#[derive(Debug, Clone)]
pub struct CaptureReport {
    /// The matrix over the whole capture.
    pub matrix: TrafficMatrix,
    /// Seconds captured.
    pub seconds: f64,
    /// Signal that stopped the capture, if any.
    pub signal: Option<usize>,
    /// Traffic of address pairs beyond the bound.
    pub overflow: Cell,
    /// Notes for the user.
    pub notes: Vec<String>,
}

/// One interval's counts, for streaming.
#[derive(Debug, Clone)]
pub struct IntervalCounts {
    /// Seconds since the start at the interval's end.
    pub elapsed: f64,
    /// The interval's matrix (its `seconds` is the interval's length).
    pub matrix: TrafficMatrix,
}

/// Runs `f` in a thread that has joined the network namespace `ns` (a name under
/// /run/netns, or a path); sockets made there stay in that namespace.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let path = if ns.contains('/') {
        std::path::PathBuf::from(ns)
    } else {
        std::path::Path::new("/run/netns").join(ns)
    };
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
    let shown = path.display().to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on a valid descriptor; it changes only this thread's namespace,
            // and the thread ends when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                bail!("cannot enter network namespace {}: {e}", path.display());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("the thread opening a socket in {shown} panicked"))?
    })
}

/// The addresses (and IPv4 broadcast addresses) of interface `ifname` in this thread's
/// network namespace, and whether it is a loopback.
fn interface_addresses(ifname: &str) -> anyhow::Result<(Vec<IpAddr>, Vec<IpAddr>, bool)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot list interface addresses");
    }
    let mut addrs = Vec::new();
    let mut bcast = Vec::new();
    let mut loopback = false;
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned, which is valid until freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        loopback |= ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        // SAFETY: the sockaddr pointers are null or point at an address of the family they
        // declare.
        if let Some(a) = unsafe { sockaddr_ip(ifa.ifa_addr) } {
            addrs.push(a);
        }
        // The subnet's broadcast address from the netmask: glibc fills the broadcast field
        // with the interface's own address when none was configured.
        // SAFETY: as above.
        if let (Some(IpAddr::V4(a)), Some(IpAddr::V4(m))) =
            unsafe { (sockaddr_ip(ifa.ifa_addr), sockaddr_ip(ifa.ifa_netmask)) }
            && m.to_bits().leading_ones() <= 30
        {
            bcast.push(IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() | !m.to_bits())));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok((addrs, bcast, loopback))
}

/// The IP address in a sockaddr, if it is IPv4 or IPv6.
///
/// # Safety
/// `sa` is null or points at a valid sockaddr of the family it declares.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the contract above.
    unsafe {
        match (*sa).sa_family as i32 {
            libc::AF_INET => {
                let v = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let v = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::V6(Ipv6Addr::from(v.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xFFC0 == 0xFE80,
    }
}

/// Opens and binds a packet socket to `ifname` in this thread's namespace, and reads its
/// addresses.
fn open_socket(
    ifname: &str,
    buffer: usize,
) -> anyhow::Result<(OwnedFd, Vec<IpAddr>, Vec<IpAddr>, bool)> {
    let cname = std::ffi::CString::new(ifname).context("interface name has a NUL byte")?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        let mut known: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        bail!(
            "no network interface named '{ifname}' (there are: {})",
            known.join(", ")
        );
    }
    // Protocol 0: the socket receives nothing until bound, so no packet of another
    // interface slips in between socket() and bind().
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            return Err(NotPermitted(e).into());
        }
        return Err(e).with_context(|| format!("cannot open a packet socket for {ifname}"));
    }
    // SAFETY: `fd` was just created and is owned here alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = buffer.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a c_int value of the right size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = index as i32;
    // SAFETY: binding with a valid sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot bind a packet socket to {ifname}"));
    }
    let (addrs, bcast, loopback) = interface_addresses(ifname)?;
    Ok((fd, addrs, bcast, loopback))
}

/// The kernel's count of packets dropped on a socket since the last call.
fn socket_drops(fd: &OwnedFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: getsockopt into a tpacket_stats of the declared size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r == 0 { st.tp_drops as u64 } else { 0 }
}

impl Capture {
    /// Opens and binds a socket on every interface (nothing is counted until [`Capture::run`]).
    pub fn open(config: CaptureConfig) -> anyhow::Result<Capture> {
        let mut seen = HashSet::new();
        for s in &config.ifaces {
            if !seen.insert((s.iface.clone(), s.netns.clone())) {
                return Err(anyhow::Error::new(crate::record::UsageError(format!(
                    "interface {} is given twice: its packets would be counted twice",
                    s.iface
                ))));
            }
        }
        let mut sockets = Vec::new();
        let mut ifaces = Vec::new();
        let mut notes = Vec::new();
        for (k, spec) in config.ifaces.iter().enumerate() {
            let buffer = config.socket_buffer;
            let name = spec.iface.clone();
            let (fd, addrs, bcast, loopback) = match &spec.netns {
                Some(ns) => in_netns(ns, move || open_socket(&name, buffer))
                    .with_context(|| format!("in network namespace {ns}"))?,
                None => open_socket(&name, buffer)?,
            };
            let role = if loopback {
                Role::Loopback
            } else if addrs.iter().any(|a| !is_link_local(a)) {
                Role::Own
            } else {
                Role::Port
            };
            // A port's link-local addresses are the host's, not its endpoint's.
            let addrs = if role == Role::Port {
                Vec::new()
            } else {
                addrs
            };
            // The bridge this is a port of (sysfs shows vmmon's own namespace only).
            let master = match &spec.netns {
                Some(_) => None,
                None => std::fs::read_link(
                    std::path::Path::new("/sys/class/net")
                        .join(&spec.iface)
                        .join("master"),
                )
                .ok()
                .and_then(|m| m.file_name().and_then(|m| m.to_str()).map(String::from)),
            };
            sockets.push(Socket { fd, iface: k });
            ifaces.push(Interface {
                name: spec.name.clone(),
                ifname: spec.iface.clone(),
                netns: spec.netns.clone(),
                role,
                addrs,
                master,
                broadcast: bcast,
            });
        }
        // A bridge with no address of its own is a port too: what its ports' endpoints send
        // to this machine comes in on both.
        for i in &ifaces {
            if let Some(m) = &i.master
                && ifaces
                    .iter()
                    .any(|o| o.netns.is_none() && &o.ifname == m && o.role == Role::Port)
            {
                notes.push(format!(
                    "{} is a port of {m}, which is watched too and has no address: what the \
                     endpoint behind {} sends to this machine counts on both (watch one of them)",
                    i.ifname, i.ifname
                ));
            }
        }
        let counter = Counter::new(ifaces, &config.count);
        Ok(Capture {
            sockets,
            counter,
            config,
            bufs: vec![[0u8; SNAP]; BATCH],
            notes,
        })
    }

    /// Reads what is queued on socket `s` (at most [`MAX_BATCHES`] batches).
    fn drain(&mut self, s: usize) -> anyhow::Result<()> {
        let fd = self.sockets[s].fd.as_raw_fd();
        let iface = self.sockets[s].iface;
        // SAFETY: plain data, zero-initialised.
        let mut addrs: [libc::sockaddr_ll; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for _ in 0..MAX_BATCHES {
            for k in 0..BATCH {
                iovs[k].iov_base = self.bufs[k].as_mut_ptr().cast();
                iovs[k].iov_len = SNAP;
                hdrs[k].msg_hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_ll).cast();
                hdrs[k].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                hdrs[k].msg_hdr.msg_iov = &mut iovs[k];
                hdrs[k].msg_hdr.msg_iovlen = 1;
                hdrs[k].msg_hdr.msg_control = std::ptr::null_mut();
                hdrs[k].msg_hdr.msg_controllen = 0;
                hdrs[k].msg_hdr.msg_flags = 0;
                hdrs[k].msg_len = 0;
            }
            // MSG_TRUNC: each msg_len is the frame's whole length, though only SNAP bytes
            // are copied.
            // SAFETY: every header points at live buffers of the sizes declared above.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => return Ok(()),
                    // The interface went down: its socket works again when it comes up.
                    Some(libc::ENETDOWN) => {
                        let name = self.counter.interfaces()[iface].label();
                        let note = format!("{name} went down during the capture");
                        if !self.notes.contains(&note) {
                            self.notes.push(note);
                        }
                        return Ok(());
                    }
                    _ => {
                        let name = self.counter.interfaces()[iface].label();
                        return Err(e).with_context(|| format!("cannot read packets on {name}"));
                    }
                }
            }
            let got = r as usize;
            for k in 0..got {
                let len = hdrs[k].msg_len as usize;
                let frame = parse_frame(
                    &self.bufs[k][..len.min(SNAP)],
                    len,
                    Link::from_hatype(addrs[k].sll_hatype),
                );
                let outgoing = addrs[k].sll_pkttype == libc::PACKET_OUTGOING;
                self.counter.observe(iface, outgoing, frame);
            }
            if got < BATCH {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads every socket, then the ports once more and decides the waiting packets.
    fn round(&mut self, ready: &[bool]) -> anyhow::Result<()> {
        for (s, &r) in ready.iter().enumerate() {
            if r {
                self.drain(s)?;
            }
        }
        if self.counter.has_pending() {
            let waiting = std::mem::take(&mut self.counter.pending);
            for s in 0..self.sockets.len() {
                if self.counter.ifaces[self.sockets[s].iface].role == Role::Port {
                    self.drain(s)?;
                }
            }
            // Packets queued by this second reading wait for the next round.
            let newer = std::mem::replace(&mut self.counter.pending, waiting);
            self.counter.resolve();
            self.counter.pending = newer;
        }
        Ok(())
    }

    /// Counts until the duration passes or `stop` is set (to a signal number), handing each
    /// interval's counts to `on_interval`.
    pub fn run(
        &mut self,
        stop: &AtomicUsize,
        on_interval: &mut dyn FnMut(IntervalCounts) -> anyhow::Result<()>,
    ) -> anyhow::Result<CaptureReport> {
        let start = Instant::now();
        let end = self.config.duration.map(|d| start + d);
        let mut tick = self.config.interval.map(|i| (start + i, i));
        let mut last_tick = start;
        let mut pollfds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let all = vec![true; self.sockets.len()];
        let mut signal = None;
        loop {
            let sig = stop.load(Ordering::Relaxed);
            if sig != 0 {
                signal = Some(sig);
                break;
            }
            let now = Instant::now();
            if end.is_some_and(|e| now >= e) {
                break;
            }
            if let Some((t, step)) = tick
                && now >= t
            {
                self.emit(start, &mut last_tick, now, on_interval)?;
                let mut next = t + step;
                while next <= now {
                    next += step;
                }
                tick = Some((next, step));
            }
            let mut wait = Duration::from_millis(100);
            for limit in [end, tick.map(|t| t.0)].into_iter().flatten() {
                wait = wait.min(limit.saturating_duration_since(now));
            }
            let ms = wait.as_millis().max(1) as libc::c_int;
            // SAFETY: `pollfds` is a live array of the length given.
            let r = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e).context("poll on the packet sockets failed");
            }
            if r == 0 {
                continue;
            }
            let ready: Vec<bool> = pollfds.iter().map(|p| p.revents != 0).collect();
            self.round(&ready)?;
        }
        // What was queued before the end still counts; then decide every waiting packet.
        self.round(&all)?;
        self.round(&all)?;
        self.counter.resolve();
        let seconds = start.elapsed().as_secs_f64();
        if tick.is_some() {
            self.emit(start, &mut last_tick, Instant::now(), on_interval)?;
        }
        for s in &self.sockets {
            self.counter.stats[s.iface].kernel_drops += socket_drops(&s.fd);
        }
        let mut notes = std::mem::take(&mut self.notes);
        notes.extend(self.counter.notes());
        let overflow = self.counter.total.overflow;
        if overflow.packets > 0 {
            notes.push(format!(
                "more than {} address pairs: {} packets ({} bytes) of the pairs beyond are not in \
                 the matrix (raise --max-pairs)",
                self.config.count.max_pairs, overflow.packets, overflow.bytes
            ));
        }
        Ok(CaptureReport {
            matrix: self.counter.matrix(&self.counter.total, seconds),
            seconds,
            signal,
            overflow,
            notes,
        })
    }

    fn emit(
        &mut self,
        start: Instant,
        last: &mut Instant,
        now: Instant,
        on_interval: &mut dyn FnMut(IntervalCounts) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let counts = self.counter.take_interval();
        let seconds = now.duration_since(*last).as_secs_f64();
        *last = now;
        on_interval(IntervalCounts {
            elapsed: now.duration_since(start).as_secs_f64(),
            matrix: self.counter.matrix(&counts, seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn pkt(src: &str, dst: &str, len: u32) -> Frame {
        Frame::Ip(IpPacket {
            src: v4(src),
            dst: v4(dst),
            len,
        })
    }

    fn iface(name: &str, label: &str, role: Role, addrs: &[&str]) -> Interface {
        let (ifname, netns) = match label.split_once('@') {
            Some((i, ns)) => (i.to_string(), Some(ns.to_string())),
            None => (label.to_string(), None),
        };
        Interface {
            name: name.into(),
            ifname,
            netns,
            role,
            addrs: addrs.iter().map(|a| v4(a)).collect(),
            master: None,
            broadcast: Vec::new(),
        }
    }

    #[test]
    fn spec_and_hint_parse() {
        let s: IfaceSpec = "vm1=tap0".parse().expect("spec");
        assert_eq!(
            (s.name.as_str(), s.iface.as_str(), s.netns),
            ("vm1", "tap0", None)
        );
        let s: IfaceSpec = "a=eth0@ns1".parse().expect("spec");
        assert_eq!(s.netns.as_deref(), Some("ns1"));
        assert!("tap0".parse::<IfaceSpec>().is_err());
        assert!("a=".parse::<IfaceSpec>().is_err());
        assert!("a=averyveryverylongname".parse::<IfaceSpec>().is_err());
        assert_eq!(parse_hint("10.0.0.1=db").expect("hint").1, "db");
        assert!(parse_hint("10.0.0=db").is_err());
    }

    /// The path of one packet from ns1 (10.0.0.1) to ns3 (10.0.0.3) through a bridge, with
    /// ns1's own interface e1, and the bridge ports h1 and h3 watched: seen four times,
    /// counted once, whatever order the sockets are read in.
    #[test]
    fn a_packet_through_a_bridge_counts_once() {
        let ifaces = vec![
            iface("n1", "e1@ns1", Role::Own, &["10.0.0.1"]),
            iface("n1", "h1", Role::Port, &[]),
            iface("n3", "h3", Role::Port, &[]),
        ];
        let sightings = [(0, true), (1, false)];
        let p = pkt("10.0.0.1", "10.0.0.3", 1000);
        let mut c = Counter::new(ifaces.clone(), &CountOptions::default());
        for &(i, out) in sightings.iter().chain(&[(2, true)]) {
            c.observe(i, out, p);
        }
        c.resolve();
        let m = c.matrix(&c.total, 1.0);
        assert_eq!(m.get("n1", "10.0.0.3").map(|c| c.bytes), Some(1000));
        // The reply: in at h3 (learned: 10.0.0.3 is n3), out at h1, in at e1 — read in the
        // worst order, e1 first.
        let r = pkt("10.0.0.3", "10.0.0.1", 500);
        let mut c = Counter::new(ifaces, &CountOptions::default());
        c.observe(0, false, r);
        c.observe(1, true, r);
        assert!(c.has_pending());
        // The port sockets are read again before the waiting packets are decided.
        c.observe(2, false, r);
        c.resolve();
        let m = c.matrix(&c.total, 1.0);
        assert_eq!(m.endpoints, vec!["n1", "n3"]);
        assert_eq!(m.get("n3", "n1").map(|c| c.bytes), Some(500));
        assert_eq!(
            c.stats[0].counted_elsewhere + c.stats[1].counted_elsewhere,
            2
        );
    }

    #[test]
    fn unwatched_senders_count_where_they_arrive() {
        let ifaces = vec![
            iface("vm1", "tap1", Role::Port, &[]),
            iface("host", "eth0", Role::Own, &["192.168.1.5"]),
        ];
        let mut c = Counter::new(ifaces, &CountOptions::default());
        // From the internet to vm1 (through an unwatched uplink), and to the host.
        c.observe(0, true, pkt("8.8.8.8", "10.0.0.7", 100));
        c.observe(1, false, pkt("8.8.4.4", "192.168.1.5", 60));
        c.resolve();
        c.observe(0, true, pkt("8.8.8.8", "10.0.0.7", 100));
        assert!(
            !c.has_pending(),
            "a known outside sender is counted at once"
        );
        // The host → vm1, routed out of tap1 with eth0's address: sent here, counted here.
        c.observe(0, true, pkt("192.168.1.5", "10.0.0.7", 40));
        let m = c.matrix(&c.total, 2.0);
        assert_eq!(m.get("8.8.8.8", "10.0.0.7").map(|c| c.bytes), Some(200));
        assert_eq!(m.get("8.8.4.4", "host").map(|c| c.packets), Some(1));
        assert_eq!(m.get("host", "10.0.0.7").map(|c| c.bytes), Some(40));
        // Multicast is counted in the statistics but kept out of the matrix.
        c.observe(0, false, pkt("10.0.0.7", "224.0.0.251", 80));
        assert_eq!(c.stats[0].group, 1);
        // 10.0.0.7 sent into tap1, so it is vm1 from then on.
        let m = c.matrix(&c.total, 2.0);
        assert!(m.endpoints.contains(&"vm1".to_string()));
        assert_eq!(m.get("8.8.8.8", "vm1").map(|c| c.bytes), Some(200));
        assert_eq!(
            m.to_csv().lines().next(),
            Some("src\\dst,vm1,host,8.8.4.4,8.8.8.8")
        );
    }

    /// A bridge with an address, watched with its port: the host's packets count at the
    /// bridge, the VM's at the port, never both.
    #[test]
    fn a_bridge_and_its_port_count_once() {
        let mut port = iface("vm1", "tap1", Role::Port, &[]);
        port.master = Some("br0".into());
        let ifaces = vec![iface("host", "br0", Role::Own, &["10.0.0.254"]), port];
        let mut c = Counter::new(ifaces, &CountOptions::default());
        let down = pkt("10.0.0.254", "10.0.0.7", 300);
        c.observe(0, true, down);
        c.observe(1, true, down);
        let up = pkt("10.0.0.7", "10.0.0.254", 200);
        c.observe(1, false, up);
        c.observe(0, false, up);
        c.resolve();
        let m = c.matrix(&c.total, 1.0);
        assert_eq!(m.endpoints, vec!["host", "vm1"]);
        assert_eq!(m.get("host", "vm1").map(|c| c.packets), Some(1));
        assert_eq!(m.get("vm1", "host").map(|c| c.packets), Some(1));
    }

    #[test]
    fn loopback_counts_each_packet_once() {
        let ifaces = vec![iface("host", "lo", Role::Loopback, &["127.0.0.1"])];
        let mut c = Counter::new(ifaces, &CountOptions::default());
        let p = pkt("127.0.0.1", "127.0.0.1", 84);
        c.observe(0, true, p);
        c.observe(0, false, p);
        let m = c.matrix(&c.total, 1.0);
        assert_eq!(
            m.cells,
            vec![Cell {
                bytes: 84,
                packets: 1
            }]
        );
        assert_eq!(m.tidy_rows(""), "host,host,84,1,84\n");
    }

    #[test]
    fn pairs_beyond_the_bound_overflow() {
        let ifaces = vec![iface("p", "tap1", Role::Port, &[])];
        let opts = CountOptions {
            max_pairs: 2,
            learn: false,
            ..CountOptions::default()
        };
        let mut c = Counter::new(ifaces, &opts);
        for k in 0..5 {
            c.observe(0, false, pkt(&format!("10.0.0.{k}"), "10.0.1.1", 10));
        }
        assert_eq!(c.total.iter().count(), 2);
        assert_eq!(
            c.total.overflow,
            Cell {
                bytes: 30,
                packets: 3
            }
        );
    }
}
