//! Prints the rules of an nf_tables chain as decoded by this crate:
//! `dump_rules ip|ip6|inet TABLE [CHAIN]`. Useful to compare what another tool wrote.

use autoblock_netlink::{Conn, Family};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let family = match args.get(1).map(String::as_str) {
        Some("ip6") => Family::Ipv6,
        Some("inet") => Family::Inet,
        _ => Family::Ipv4,
    };
    let table = args.get(2).map(String::as_str).unwrap_or("filter");
    let chain = args.get(3).map(String::as_str);
    let mut conn = Conn::open()?;
    let rules = conn.list_rules(family, table, chain)?;
    println!("genid {}", rules.genid);
    for r in rules.items {
        println!(
            "{} handle {}: {:?} udata={:?}",
            r.chain, r.handle, r.exprs, r.userdata
        );
    }
    Ok(())
}
