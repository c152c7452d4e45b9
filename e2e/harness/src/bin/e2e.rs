//! `e2e`: the end-to-end driver (the library's scenarios, chosen by the first argument).
//!
//!   e2e before   checks + SESSIONS sessions × REQUESTS requests; writes them to $STATE_FILE
//!   e2e after    (after the runner has `docker stop`ped $VICTIM) every session goes on:
//!                only the victim's sessions move; prints the figures of both phases
//!   e2e check    `before` without the state file (what `docker compose up` runs)
//!   e2e scale-before [N], e2e scale-to N
//!                the scaling scenario of docker-compose.scale.yml (`--scale backend=N`): see
//!                src/scale.rs
//!   e2e bounded  the bounded-load scenario (Envoy with envoy-bounded.yaml): one backend made
//!                slow, new sessions steer around it, no pinned session moves: see src/bounded.rs
//!
//! Exit status 0 when every check passed, 1 otherwise, 2 on bad usage.
//!
//! Environment (defaults are the compose stack's): ENVOY (envoy:10000), ENVOY_ADMIN (envoy:9901),
//! BACKENDS (backend-1=10.213.87.11:8080,backend-2=…12:8080,backend-3=…13:8080), OUTSIDER
//! (outsider=10.213.87.19:8080), NOWHERE (10.213.87.99:8080, forged only, never contacted), STATE
//! (memory|redis: what the backends must report), SESSIONS (1000), REQUESTS (20), REQUESTS_AFTER
//! (10), THREADS (32), VICTIM (backend-2), STATE_FILE (/out/e2e-state.json), READY_TIMEOUT (90 s).

use std::sync::atomic::Ordering::Relaxed;

use session_router_harness::ctx::Ctx;
use session_router_harness::env::Env;
use session_router_harness::{bounded, failover, scale};

fn usage(why: &str) -> ! {
    eprintln!("{why}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().cloned().unwrap_or_default();
    let hosts = match args.get(1).map(|n| n.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => usage(&format!("e2e {command}: {:?} is not a number of hosts", args[1])),
    };
    let known = match command.as_str() {
        "before" | "after" | "check" | "bounded" => args.len() == 1,
        "scale-before" => args.len() <= 2,
        "scale-to" => args.len() == 2,
        _ => false,
    };
    if !known {
        usage(
            "usage: e2e before|after|check|bounded|scale-before [N]|scale-to N   (see the top of e2e/harness/src/bin/e2e.rs)",
        );
    }
    let mut ctx = Ctx::new(Env::load().unwrap_or_else(|e| usage(&format!("e2e: {e}"))));
    let result = match command.as_str() {
        "before" => failover::before(&ctx, true),
        "check" => failover::before(&ctx, false),
        "bounded" => bounded::run(&ctx),
        "scale-before" => scale::before(&mut ctx, hosts),
        "scale-to" => scale::to(&mut ctx, hosts.unwrap_or(1)),
        _ => failover::after(&mut ctx),
    };
    if let Err(e) = result {
        ctx.fail(format!("e2e {command}: {e}"));
    }
    let failures = ctx.failures.load(Relaxed);
    if failures == 0 {
        println!("e2e {command}: PASSED");
    } else {
        println!("e2e {command}: FAILED ({failures} failures)");
        std::process::exit(1);
    }
}
