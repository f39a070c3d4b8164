//! A minimal scanner over standard input, for trying filters by hand:
//! `cargo run -p autoblock-detect --example scan -- sshd aggressive < log`.
//! Deliberately minimal: the real command is `autoblock scan`.

use std::io::BufRead;

use autoblock_detect::{Event, Filter, Mode, Scanner, Timestamp, YearContext};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("sshd", String::as_str);
    let mode = args
        .get(2)
        .and_then(|m| Mode::from_name(m))
        .unwrap_or_default();
    let Some(filter) = Filter::builtin(name, mode) else {
        eprintln!("unknown filter {name}");
        std::process::exit(2);
    };
    let mut s = Scanner::new(filter, YearContext::utc(Timestamp::now()));
    let stdin = std::io::stdin();
    let mut line = Vec::new();
    let mut n = 0u64;
    let mut lock = stdin.lock();
    while lock.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        n += 1;
        if let Some(d) = s.feed(n, &line) {
            match d.event {
                Event::Failure(f) => println!("{n} {} {} {:?}", f.host, f.kind, f.user_lossy()),
                Event::Forgive { host, count } => println!("{n} forgive {host} {count}"),
            }
        }
        line.clear();
    }
    eprintln!("{:?}", s.stats());
}
