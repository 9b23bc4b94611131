//! The SSRF guard of plugin webhooks: a webhook URL is a plugin's to
//! choose, so Paved must not let it reach what only Paved can reach. Every
//! address is checked at connect time (DNS names through a resolver that
//! drops forbidden answers, so a name pointing at 127.0.0.1 fails like the
//! literal does), redirects are never followed, proxies from the
//! environment are ignored, and only `https` is allowed outside dev mode.
//! An admin may allow networks explicitly (`PAVED_PLUGIN_WEBHOOK_ALLOW`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Is `ip` somewhere a webhook must not reach: loopback, private,
/// link-local (cloud metadata at 169.254.169.254 included), shared
/// (100.64/10), unspecified, broadcast, multicast, documentation and
/// benchmarking ranges, IPv6 unique-local, and IPv4 inside IPv6 forms of
/// any of these.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 (embeds IPv4)
                || (s[0] == 0x2002) // 6to4 (embeds IPv4)
                || (s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// The addresses webhooks may reach.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// Networks allowed although [`forbidden`] (an admin's choice).
    pub allow: Vec<IpNet>,
}

impl Guard {
    pub fn permits(&self, ip: IpAddr) -> bool {
        !forbidden(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Checks what can be checked before connecting: the scheme, and a
    /// host that is an address (names are checked as they resolve).
    pub fn check_url(&self, url: &reqwest::Url, allow_http: bool) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            other => {
                return Err(format!(
                    "webhook URLs must be https (was {other}; http only in dev mode)"
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("webhook URLs must not carry credentials".into());
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("webhook URL has no host".into()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is a forbidden address for webhooks"))
        }
    }
}

/// Resolves names and keeps only the addresses the guard permits; a name
/// with none left fails to resolve (no connection is attempted).
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    pub guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| guard.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to forbidden addresses for webhooks ({})",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden_and_public_ones_are_not() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(forbidden(ip), "{bad}");
        }
        for good in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "8.8.8.8"] {
            let ip: IpAddr = good.parse().unwrap();
            assert!(!forbidden(ip), "{good}");
        }
    }

    #[test]
    fn literal_hosts_in_any_spelling_are_checked_and_the_allow_list_lets_through() {
        let guard = Guard::default();
        for url in [
            "https://127.0.0.1/hook",
            "https://2130706433/hook",
            "https://0x7f.0.0.1/hook",
            "https://0177.0.0.1/hook",
            "https://127.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:7f00:1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://0/hook",
        ] {
            let u = reqwest::Url::parse(url).unwrap();
            assert!(guard.check_url(&u, true).is_err(), "{url}");
        }
        let u = reqwest::Url::parse("http://example.com/hook").unwrap();
        assert!(guard.check_url(&u, false).is_err(), "http outside dev mode");
        assert!(guard.check_url(&u, true).is_ok());
        let u = reqwest::Url::parse("https://user:pw@example.com/hook").unwrap();
        assert!(guard.check_url(&u, true).is_err());
        let allowing = Guard {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        let u = reqwest::Url::parse("http://127.0.0.1:8080/hook").unwrap();
        assert!(allowing.check_url(&u, true).is_ok());
    }
}
