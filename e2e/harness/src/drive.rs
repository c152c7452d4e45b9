//! Sessions driven in parallel: each thread its own keep-alive connection to Envoy.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ctx::{Ctx, TIMEOUT};
use crate::http::Client;

/// A session with a number that orders the sessions.
pub trait Numbered {
    fn id(&self) -> usize;
}

/// Runs `work` over `sessions` dealt round-robin to `threads` threads (at most one a session),
/// each on its own keep-alive connection to Envoy; returns every session, in id order.
pub fn in_parallel<S: Numbered + Send>(
    ctx: &Ctx,
    sessions: Vec<S>,
    threads: usize,
    work: &(dyn Fn(&mut Client, &mut [S]) + Sync),
) -> Vec<S> {
    let threads = threads.min(sessions.len()).max(1);
    let mut shards: Vec<Vec<S>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in sessions.into_iter().enumerate() {
        shards[i % threads].push(s);
    }
    let mut out: Vec<S> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|mut shard| {
                scope.spawn(move || {
                    let mut client = Client::new(&ctx.env.envoy, TIMEOUT);
                    work(&mut client, &mut shard);
                    shard
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    ctx.fail("a driver thread panicked");
                    Vec::new()
                })
            })
            .collect()
    });
    out.sort_by_key(|s| s.id());
    out
}

/// `rounds` times over every session, interleaved: `step(client, session, round)`.
pub fn rounds<S: Numbered + Send>(
    ctx: &Ctx,
    sessions: Vec<S>,
    rounds: usize,
    step: &(dyn Fn(&mut Client, &mut S, usize) + Sync),
) -> Vec<S> {
    in_parallel(ctx, sessions, ctx.env.threads, &|client, shard| {
        for round in 0..rounds {
            for s in shard.iter_mut() {
                step(client, s, round);
            }
        }
    })
}

/// Once over every session from `threads` connections, `pace` between two sessions of one.
pub fn paced<S: Numbered + Send>(
    ctx: &Ctx,
    sessions: Vec<S>,
    threads: usize,
    pace: Duration,
    f: &(dyn Fn(&mut Client, &mut S) + Sync),
) -> Vec<S> {
    in_parallel(ctx, sessions, threads, &|client, shard| {
        for (i, s) in shard.iter_mut().enumerate() {
            if i > 0 && !pace.is_zero() {
                std::thread::sleep(pace);
            }
            f(client, s);
        }
    })
}

/// How many of `items` are each value.
pub fn count<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for item in items {
        *by.entry(item.to_string()).or_default() += 1;
    }
    by
}

/// `a 3, b 5`
pub fn show(by: &BTreeMap<String, usize>) -> String {
    by.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_key_order() {
        assert_eq!(show(&count(["b", "a", "b"])), "a 1, b 2");
        assert_eq!(show(&count([])), "");
    }
}
