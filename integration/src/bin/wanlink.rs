//! `wanlink`: the router of the emulated WAN (see `wharf_integration::wan`). It joins the TUN
//! devices it creates in two existing namespaces, prints `ready`, answers `stats` on standard
//! input with what each direction carried, and exits when standard input closes.

use std::io::BufRead as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use wharf_integration::wan::router::{self, Counters, Shape};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server_ns: String,
    #[arg(long)]
    client_ns: String,
    /// One-way delay in microseconds, each direction.
    #[arg(long, default_value_t = 0)]
    delay_us: u64,
    /// Bottleneck rate in bits per second, each direction; none for no bottleneck.
    #[arg(long)]
    rate_bps: Option<u64>,
    /// Fraction of packets lost at random, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1 << 20)]
    queue_bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = router::open_device(&args.server_ns)?;
    let client = router::open_device(&args.client_ns)?;
    let shape = |seed| Shape {
        one_way_delay: Duration::from_micros(args.delay_us),
        rate_bps: args.rate_bps,
        loss: args.loss,
        queue_bytes: args.queue_bytes,
        seed,
    };
    let (up, down) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let directions = [
        (Arc::clone(&client), Arc::clone(&server), shape(args.seed), Arc::clone(&up)),
        (server, client, shape(args.seed.wrapping_mul(31).wrapping_add(7)), Arc::clone(&down)),
    ];
    for (from, to, shape, counters) in directions {
        std::thread::spawn(move || {
            if let Err(err) = router::forward(from, to, shape, counters) {
                eprintln!("wanlink: {err:#}");
                std::process::exit(1);
            }
        });
    }
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "stats" {
            println!("stats {} {}", up.report(), down.report());
        }
    }
    Ok(())
}
