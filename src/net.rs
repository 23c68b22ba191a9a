//! Which addresses the operator connects to on a tenant's behalf.
//!
//! A gateway URL or an object-store endpoint is written by a tenant, and the answer to a request
//! lands in a status or an output file the tenant reads: connecting wherever a URL points would
//! let a tenant read the cloud's instance metadata service or services inside the cluster through
//! the operator. Every connection the gateway client and the object-store clients make goes
//! through an [`AddressPolicy`]: an IP literal is checked before anything is sent, a name is
//! resolved and only the addresses the policy allows are connected to (so a name that resolves
//! to a refused address is refused at connect time, whatever it resolved to before).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Link-local and cloud metadata addresses: never connected to, whatever the flags say.
const ALWAYS_DENIED: &[&str] = &["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

/// Addresses inside the machine or a private network, refused by the controller unless allowed
/// (`--allow-cidr`): loopback, "this network", RFC 1918, shared address space, unique local.
const PRIVATE: &[&str] = &[
    "127.0.0.0/8",
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "::/128",
    "fc00::/7",
];

/// Which IP addresses may be connected to: never the link-local / metadata ranges; not the
/// `deny` ranges either, unless an `allow` range holds the address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

/// A connection the policy does not allow; names the host and the address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{host} is {address}, an address this operator does not connect to ({why})")]
pub struct AddressRefused {
    pub host: String,
    pub address: IpAddr,
    pub why: &'static str,
}

impl AddressPolicy {
    /// `run -f` and the helper commands run on the user's own machine: only link-local and
    /// metadata addresses are refused (the quickstart's simulator is on 127.0.0.1).
    pub fn local() -> Self {
        Self::default()
    }

    /// The controller serves many tenants: loopback and private networks are refused too,
    /// unless allowed (an in-cluster gateway needs its Service range allowed).
    pub fn cluster() -> Self {
        Self {
            deny: PRIVATE.iter().map(|c| c.parse().expect("valid CIDR")).collect(),
            allow: Vec::new(),
        }
    }

    /// This policy, also refusing `ranges`.
    pub fn denying(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.deny.extend(ranges);
        self
    }

    /// This policy, allowing `ranges` even where a deny range holds them (never the link-local
    /// and metadata ranges).
    pub fn allowing(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        self.allow.extend(ranges);
        self
    }

    /// The flags that give a helper command (a Job's `sink` or `direct`) this same policy.
    pub fn to_args(&self) -> Vec<String> {
        let deny = self.deny.iter().map(|n| format!("--deny-cidr={n}"));
        let allow = self.allow.iter().map(|n| format!("--allow-cidr={n}"));
        deny.chain(allow).collect()
    }

    /// Whether `address` (reached as `host`) may be connected to.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), AddressRefused> {
        let address = canonical(address);
        let refused = |why| {
            Err(AddressRefused {
                host: host.to_owned(),
                address,
                why,
            })
        };
        if ALWAYS_DENIED
            .iter()
            .any(|c| c.parse::<IpNet>().is_ok_and(|n| n.contains(&address)))
        {
            return refused("link-local or cloud metadata");
        }
        if self.deny.iter().any(|n| n.contains(&address)) && !self.allow.iter().any(|n| n.contains(&address)) {
            return refused("a denied range; allow it with --allow-cidr if this gateway is meant to be there");
        }
        Ok(())
    }

    /// Checks a URL whose host is an IP literal (a name is checked when it is resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), AddressRefused> {
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), address)
    }

    /// Resolves `host` and keeps the addresses this policy allows; none left is an error
    /// naming the first refused one.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved: Vec<IpAddr> = tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect();
        let mut first_refusal = None;
        let allowed: Vec<IpAddr> = resolved
            .into_iter()
            .filter(|ip| match self.check(host, *ip) {
                Ok(()) => true,
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), first_refusal) {
            (true, Some(refused)) => Err(Box::new(refused)),
            _ => Ok(allowed),
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) is checked as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The refusal in an error's source chain, if that is why it failed.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        next = e.source();
    }
    None
}

/// The policy as reqwest's resolver (the gateway client).
#[derive(Clone)]
pub struct GuardedResolver(pub Arc<AddressPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = policy.resolve(&host).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The policy as object_store's resolver (S3, GCS and Azure clients).
#[derive(Clone)]
pub struct StoreResolver(pub Arc<AddressPolicy>);

impl fmt::Debug for StoreResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreResolver")
    }
}

impl object_store::client::DnsResolver for StoreResolver {
    fn resolve(&self, host: &str) -> object_store::client::DnsFuture {
        let policy = self.0.clone();
        let host = host.to_owned();
        Box::pin(async move { policy.resolve(&host).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_are_always_refused() {
        let open = AddressPolicy::local().allowing(["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        for address in ["169.254.169.254", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            let err = open.check("meta", ip(address)).unwrap_err();
            assert!(err.to_string().contains("metadata"), "{err}");
        }
        assert!(open.check("pub", ip("93.184.216.34")).is_ok());
    }

    #[test]
    fn the_cluster_policy_refuses_private_ranges_unless_allowed() {
        let cluster = AddressPolicy::cluster();
        for address in [
            "127.0.0.1",
            "10.96.0.1",
            "172.20.1.1",
            "192.168.1.1",
            "::1",
            "fd12::1",
            "100.64.0.1",
        ] {
            assert!(cluster.check("h", ip(address)).is_err(), "{address}");
        }
        assert!(cluster.check("h", ip("8.8.8.8")).is_ok());
        let allowed = cluster.allowing(["10.96.0.0/12".parse().unwrap()]);
        assert!(allowed.check("svc", ip("10.96.0.1")).is_ok());
        assert!(allowed.check("svc", ip("10.0.0.1")).is_err());
        assert!(AddressPolicy::local().check("h", ip("127.0.0.1")).is_ok());
    }

    #[test]
    fn extra_denied_ranges_apply_and_round_trip_as_flags() {
        let policy = AddressPolicy::local()
            .denying(["203.0.113.0/24".parse().unwrap()])
            .allowing(["203.0.113.7/32".parse().unwrap()]);
        assert!(policy.check("h", ip("203.0.113.1")).is_err());
        assert!(policy.check("h", ip("203.0.113.7")).is_ok());
        assert_eq!(
            policy.to_args(),
            ["--deny-cidr=203.0.113.0/24", "--allow-cidr=203.0.113.7/32"]
        );
    }

    #[test]
    fn ip_literal_urls_are_checked_and_names_are_left_to_resolution() {
        let policy = AddressPolicy::local();
        let url = "http://169.254.169.254/v1".parse().unwrap();
        assert!(policy.check_url(&url).is_err());
        let url = "http://[fe80::1]:80/v1".parse().unwrap();
        assert!(policy.check_url(&url).is_err());
        assert!(policy.check_url(&"http://example.com/v1".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_only_to_refused_addresses_are_refused() {
        let cluster = AddressPolicy::cluster();
        let err = cluster.resolve("localhost").await.unwrap_err();
        assert!(refusal_in(err.as_ref()).is_some(), "{err}");
        assert!(!AddressPolicy::local().resolve("localhost").await.unwrap().is_empty());
    }
}
