//! The SSRF guard (claim HOOK-4): which addresses a delivery may connect to. Private,
//! loopback, link-local (cloud metadata at 169.254.169.254 among them), shared, multicast,
//! unspecified, reserved and documentation ranges are refused, and so is every IPv6 form
//! that embeds an IPv4 address (mapped, compatible, NAT64, 6to4), unless the operator's
//! `webhooks.allowed_networks` names the address. The check runs on the address the
//! connection is actually made to, at every attempt — a DNS answer that changed since the
//! endpoint was registered is caught there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::http::client_ip::Cidr;

/// What deliveries may reach.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allowed: Vec<Cidr>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<Cidr>) -> Self {
        Self { allowed }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|cidr| cidr.contains(ip)) || is_public(ip)
    }
}

/// Whether `ip` is an ordinary address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const REFUSED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (carrier NAT; some clouds' metadata)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local: cloud metadata services
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and the broadcast address
    ];
    !REFUSED
        .iter()
        .any(|&(network, prefix)| in_v4(ip, network, prefix))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    // Forms that carry an IPv4 address are refused whatever it is: a filter that checked
    // only the embedded address would be one parser's disagreement away from a bypass.
    let embeds_v4 = segments[..5] == [0; 5] && (segments[5] == 0 || segments[5] == 0xffff) // compatible, mapped
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] // NAT64
        || (segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1) // local NAT64
        || first == 0x2002; // 6to4
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || embeds_v4
        || first & 0xffc0 == 0xfe80 // link-local
        || first & 0xffc0 == 0xfec0 // site-local (deprecated)
        || first & 0xfe00 == 0xfc00 // unique local (fd00:ec2::254, a metadata service)
        || first & 0xff00 == 0xff00 // multicast
        || (first == 0x2001 && segments[1] == 0x0db8) // documentation
        || (first == 0x2001 && segments[1] < 0x0200) // IETF protocol assignments (Teredo, …)
        || first == 0x0100 && segments[1..4] == [0, 0, 0]; // discard-only
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    // claim: HOOK-4
    #[test]
    fn private_loopback_metadata_and_embedded_v4_addresses_are_refused() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!policy.permits(ip), "{refused} must be refused");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "172.32.0.1",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(policy.permits(ip), "{public} is public");
        }
    }

    // claim: HOOK-4
    #[test]
    fn the_operator_allows_named_networks_only() {
        let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(!policy.permits("127.0.0.2".parse().unwrap()));
        assert!(!policy.permits("10.0.0.1".parse().unwrap()));
        assert!(!policy.permits("169.254.169.254".parse().unwrap()));
    }
}
