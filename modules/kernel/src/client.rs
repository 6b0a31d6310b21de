//! The client's address, as seen through the proxies this process trusts.
//!
//! Behind an Ingress controller or a gateway every request comes from the proxy's address, so
//! limits keyed on the TCP peer would lump every client together. The proxies' `Forwarded`
//! (RFC 7239) or `X-Forwarded-For` header names the client, but anyone can send one: it is read
//! only when the peer is a trusted proxy, from the right (the hop nearest to us) leftwards,
//! skipping the trusted hops; the first address that is not trusted is the client.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use ipnet::IpNet;

/// The networks whose forwarding headers are believed (`server.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer.to_canonical();
        }
        // `Forwarded` supersedes `X-Forwarded-For` when a proxy sends it.
        let hops = forwarded_for(headers).or_else(|| x_forwarded_for(headers)).unwrap_or_default();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            // An unparseable hop (`unknown`, an obfuscated name) ends what can be believed.
            let Some(hop) = hop else { break };
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        client.to_canonical()
    }
}

/// The client's address: the peer, or what the trusted proxies say (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromRequest for ClientAddr {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // No peer only happens in unit tests of handlers; they share one anonymous address.
        let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let address = match req.app_data::<web::Data<TrustedProxies>>() {
            Some(trusted) => trusted.client_of(peer, req.headers()),
            None => peer.to_canonical(),
        };
        ready(Ok(Self(address)))
    }
}

/// The `for=` hops of every `Forwarded` header, in order; `None` for a hop that is no address.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
            });
            if let Some(node) = node {
                hops.push(parse_node(node));
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let value = value.to_str().ok()?;
        hops.extend(value.split(',').map(|hop| parse_node(hop.trim())));
    }
    (!hops.is_empty()).then_some(hops)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(address) = node.parse() {
        return Some(address);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(address, _)| address.parse().ok());
    }
    node.rsplit_once(':').and_then(|(address, port)| port.parse::<u16>().ok().and(address.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("a CIDR")).collect())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        map
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("an address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let forged = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(proxies.client_of(ip("203.0.113.9"), &forged), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client_of(ip("10.0.0.1"), &forged), ip("10.0.0.1"));
    }

    #[test]
    fn through_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client forged the first entry; the proxies appended the real hops.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 192.168.1.1")]);
        assert_eq!(proxies.client_of(ip("10.1.2.3"), &chain), ip("203.0.113.7"));
        let split = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8")]);
        assert_eq!(proxies.client_of(ip("10.1.2.3"), &split), ip("203.0.113.8"));
    }

    #[test]
    fn forwarded_is_read_with_ports_quotes_and_ipv6() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let forwarded = headers(&[
            ("forwarded", r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.5:80"#),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(proxies.client_of(ip("10.0.0.1"), &forwarded), ip("2001:db8::7"));
    }

    #[test]
    fn an_unknown_hop_stops_the_walk_at_the_last_address_believed() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let chain = headers(&[("forwarded", "for=unknown, for=10.0.0.9")]);
        assert_eq!(proxies.client_of(ip("10.0.0.1"), &chain), ip("10.0.0.9"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let proxies = trusted(&["127.0.0.0/8"]);
        let chain = headers(&[("x-forwarded-for", "198.51.100.4")]);
        assert_eq!(proxies.client_of(ip("::ffff:127.0.0.1"), &chain), ip("198.51.100.4"));
    }
}
