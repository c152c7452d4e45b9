//! Where the sessions went in one step of the scaling scenario, against what the change allows
//! and against the optimum.

use super::session::Session;
use super::{Step, label};
use crate::ctx::Ctx;

/// The sessions of one kind (with the sticky cookie, or hashed) after a step.
pub(super) struct Moves {
    total: usize,
    on_removed: usize,
    moved: usize,
    moved_to_added: usize,
    lost_moved: usize,
    lost_stayed: usize,
    reissued_stayed: usize,
    reissued_moved_once: usize,
}

impl Moves {
    pub fn of(sessions: &[Session], cookie: bool, step: &Step) -> Moves {
        let mut k = Moves {
            total: 0,
            on_removed: 0,
            moved: 0,
            moved_to_added: 0,
            lost_moved: 0,
            lost_stayed: 0,
            reissued_stayed: 0,
            reissued_moved_once: 0,
        };
        for x in sessions.iter().filter(|x| x.cookie == cookie) {
            k.total += 1;
            k.on_removed += usize::from(step.removed.contains(&x.owner));
            let moved = x.now_on.as_deref().is_some_and(|h| h != x.owner);
            if moved {
                k.moved += 1;
                k.moved_to_added += usize::from(x.now_on.as_ref().is_some_and(|h| step.added.contains(h)));
                k.lost_moved += usize::from(x.lost > 0);
                k.reissued_moved_once += usize::from(x.reissued == 1);
            } else {
                k.lost_stayed += usize::from(x.lost > 0);
                k.reissued_stayed += usize::from(x.reissued > 0);
            }
        }
        k
    }

    /// `name: moved of total = share (optimum …); lost state: …`
    fn line(&self, name: &str, optimum: &str, memory: bool) -> String {
        let note = match (memory, self.lost_moved) {
            (false, _) => " (Redis)",
            (true, 0) => "",
            (true, _) => " (in-memory state: expected)",
        };
        format!(
            "{} {} of {} = {:.3} (optimum {optimum}); lost state: {} moved{note}, {} others",
            label(name),
            self.moved,
            self.total,
            fraction(self.moved, self.total),
            self.lost_moved,
            self.lost_stayed
        )
    }
}

fn fraction(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The share of hashed sessions the ring must move: |A|/|M| on a scale-up, those on removed hosts
/// on a scale-down.
fn optimum_hashed(step: &Step, hk: &Moves) -> f64 {
    if step.up {
        fraction(step.added.len(), step.followed.members.len())
    } else {
        fraction(hk.on_removed, hk.total)
    }
}

fn state_note(memory: bool) -> &'static str {
    if memory { "in-memory state: expected" } else { "Redis-backed state" }
}

/// The checks of one step: cookie sessions (`ck`) and hashed ones (`hk`).
pub(super) fn check(ctx: &Ctx, step: &Step, ck: &Moves, hk: &Moves, memory: bool) {
    let name = &step.name;
    ctx.check(
        ck.moved == ck.on_removed && ck.lost_stayed == 0 && ck.reissued_stayed == 0,
        &format!("{name}: sessions with the sticky cookie whose host remains stay, state intact"),
        format!(
            "{} of {} stayed, lost state {}, cookie re-issued {}",
            ck.total - ck.moved,
            ck.total,
            ck.lost_stayed,
            ck.reissued_stayed
        ),
    );
    if ck.on_removed > 0 {
        ctx.check(
            ck.reissued_moved_once == ck.moved && (memory || ck.lost_moved == 0),
            &format!("{name}: sessions with the sticky cookie on removed hosts move to one successor each, re-pinned once"),
            format!(
                "{} moved, {} re-pinned once; lost state {} ({})",
                ck.moved,
                ck.reissued_moved_once,
                ck.lost_moved,
                state_note(memory)
            ),
        );
    }
    let optimum = optimum_hashed(step, hk);
    let moved_hashed = fraction(hk.moved, hk.total);
    let tolerance = 0.10 + 3.0 * (optimum * (1.0 - optimum) / hk.total.max(1) as f64).sqrt();
    let hashed_ok = if step.up {
        hk.moved == hk.moved_to_added && (moved_hashed - optimum).abs() <= tolerance
    } else {
        hk.moved == hk.on_removed
    };
    ctx.check(
        hashed_ok && hk.lost_stayed == 0 && (memory || hk.lost_moved == 0),
        &format!("{name}: hashed sessions move only as the ring requires"),
        format!(
            "{} of {} moved ({moved_hashed:.3}; optimum {optimum:.3}{}), {}; lost state: {} moved ({}), {} others",
            hk.moved,
            hk.total,
            if step.up {
                format!(" = {}/{}, tolerance ±{tolerance:.2}", step.added.len(), step.followed.members.len())
            } else {
                String::new()
            },
            if step.up {
                format!("{} of them to the added hosts", hk.moved_to_added)
            } else {
                format!("{} were on removed hosts", hk.on_removed)
            },
            hk.lost_moved,
            state_note(memory),
            hk.lost_stayed
        ),
    );
}

/// The figures' lines of the sessions moved, with and without the cookie.
pub(super) fn figures(step: &Step, ck: &Moves, hk: &Moves, memory: bool) -> Vec<String> {
    let optimum = optimum_hashed(step, hk);
    let (cookie_optimum, hashed_optimum) = if step.up {
        let (added, now) = (step.added.len(), step.followed.members.len());
        (
            "0".to_string(),
            format!("{added}/{now} = {optimum:.3}; all {} to the added hosts", hk.moved_to_added),
        )
    } else {
        (
            format!(
                "{:.3}: the {} on removed hosts, each to one successor",
                fraction(ck.on_removed, ck.total),
                ck.on_removed
            ),
            format!("{optimum:.3}: the {} on removed hosts", hk.on_removed),
        )
    };
    vec![
        ck.line("  cookie sessions moved", &cookie_optimum, memory),
        hk.line("  hashed sessions moved", &hashed_optimum, memory),
    ]
}
