//! Profiling aid: `Manager::connect` + drop in a loop against a local
//! server (`perf`/`strace` target). `connect_probe [n] [mode]`, mode
//! `local` (default), `tcp` or `client` (the handshake alone); `dict-local`
//! and `dict-tcp`: `n` dict sets through one connection.

use std::time::Instant;

use shmproc_manager::{Client, Manager};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let mode = args.get(2).map_or("local", String::as_str);
    let key = b"probe-key";
    let m = Manager::builder()
        .tcp("127.0.0.1:0".parse()?)
        .authkey(key)
        .start()?;
    let addr = match mode {
        "tcp" | "dict-tcp" => m.tcp_address().ok_or("no tcp")?.clone(),
        _ => m.address().clone(),
    };
    if let Some(how) = mode.strip_prefix("dict-") {
        let c = Manager::connect(&addr, key)?;
        let d = c.dict::<u64, u64>()?;
        let t = Instant::now();
        for i in 0..n as u64 {
            d.set(&(i % 64), &i)?;
        }
        println!(
            "dict set {how}: {:.2} µs",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        drop((d, c));
        m.shutdown()?;
        return Ok(());
    }
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if mode == "client" {
            drop(Client::connect(&addr, key)?);
        } else {
            drop(Manager::connect(&addr, key)?);
        }
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    println!(
        "{mode}: {n} connects, p10 {:.1} p50 {:.1} p90 {:.1} µs",
        us[n / 10],
        us[n / 2],
        us[n * 9 / 10]
    );
    m.shutdown()?;
    Ok(())
}
