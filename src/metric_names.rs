//! Per-host counter names (pure): what `filter::metrics` defines in Envoy for each host id.

fn sanitize(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' });
    }
    out
}

/// The counter name of each host id, in order. Ids that sanitize to one name (`a.b`, `a_b`)
/// would share a counter: each one that had characters replaced gets a suffix from a hash of
/// the id as written (`session_router.host.a_b_1f2e3d4c.routed`), so every host counts alone.
pub fn host_metric_names(ids: &[&str]) -> Vec<String> {
    let mut count = crate::Names::new();
    for id in ids {
        let n = count.entry(sanitize(id)).or_default();
        *n = n.saturating_add(1);
    }
    let mut names = Vec::with_capacity(ids.len());
    for id in ids {
        let plain = sanitize(id);
        names.push(if count.get(&plain).copied().unwrap_or(0) > 1 && plain != *id {
            let hash = crate::murmur3::murmur3_x64_128(id.as_bytes(), 0).0 as u32;
            format!("session_router.host.{plain}_{hash:08x}.routed")
        } else {
            format!("session_router.host.{plain}.routed")
        });
    }
    names
}

/// Per-host counters one VM defines at most: Envoy keeps every metric ever defined, so under
/// endless churn (new pod names every deploy) they would grow without bound.
pub const MAX_HOST_COUNTERS: usize = 1024;
