//! What a request's outcome says about its host: Envoy's response-flag bits and the policies
//! (`health.passive`, `health.active` thresholds) that turn outcomes into health events.
//! Pure data: [`crate::config`] builds these, [`crate::health`] applies them.

/// Envoy response flags (`response.flags`, `StreamInfo::CoreResponseFlag` as bits) that mean the
/// upstream host failed, as opposed to the application answering with an error status.
pub mod flags {
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2; // UT
    pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 1 << 7; // UO
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 1 << 15; // URX
    /// Flags under which the response was made by Envoy, not answered by the upstream.
    pub const ANY_LOCAL_REPLY: u64 = HOST_FAILURE | UPSTREAM_OVERFLOW | NO_HEALTHY_UPSTREAM;
    pub const NO_HEALTHY_UPSTREAM: u64 = 1 << 1; // UH
    pub const HOST_FAILURE: u64 = UPSTREAM_REQUEST_TIMEOUT
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_RETRY_LIMIT_EXCEEDED;
}

/// Which request outcomes count as a failure of the host (`health.passive.eject_on`).
///
/// By default only connection-level failures do: the host refused or dropped the connection,
/// or its connection pool overflowed. Upstream timeouts and 5xx answers are opt-in: a few slow
/// or failing requests pinned to one host would otherwise eject it and move every session on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectOn {
    /// Response-flag bits (see [`flags`]) that are host failures.
    pub flags: u64,
    /// A 5xx answered by the upstream (not by Envoy) is a host failure.
    pub status_5xx: bool,
    /// A request served by a later host of the `target.fallbacks` list counts as a failure of
    /// the hosts before it (Envoy retried past them).
    pub fallback: bool,
}

impl Default for EjectOn {
    fn default() -> EjectOn {
        EjectOn::parse(EjectOn::DEFAULT).unwrap_or(EjectOn { flags: 0, status_5xx: false, fallback: false })
    }
}

impl EjectOn {
    pub const DEFAULT: &'static [&'static str] = &["connect_failure", "reset", "overflow", "fallback"];
    pub const KINDS: &'static [&'static str] =
        &["connect_failure", "reset", "overflow", "timeout", "5xx", "fallback"];

    /// Builds the policy from kind names; `Err(name)` names the first unknown one.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<EjectOn, String> {
        let mut policy = EjectOn { flags: 0, status_5xx: false, fallback: false };
        for name in names {
            match name.as_ref() {
                "connect_failure" => policy.flags |= flags::UPSTREAM_CONNECTION_FAILURE,
                "reset" => {
                    policy.flags |= flags::UPSTREAM_REMOTE_RESET | flags::UPSTREAM_CONNECTION_TERMINATION
                }
                "overflow" => policy.flags |= flags::UPSTREAM_OVERFLOW,
                "timeout" => policy.flags |= flags::UPSTREAM_REQUEST_TIMEOUT,
                "5xx" => policy.status_5xx = true,
                "fallback" => policy.fallback = true,
                other => return Err(other.to_owned()),
            }
        }
        Ok(policy)
    }

    /// Whether a request that ended with these response flags, and (when `status_5xx` is on)
    /// this upstream status, failed at its host.
    pub fn is_failure(&self, response_flags: u64, upstream_status: Option<u32>) -> bool {
        response_flags & self.flags != 0
            || (self.status_5xx
                && response_flags & flags::ANY_LOCAL_REPLY == 0
                && upstream_status.is_some_and(|s| (500..600).contains(&s)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passive {
    pub consecutive_failures: u32,
    pub ejection_ms: u64,
    pub max_ejection_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeThresholds {
    pub unhealthy: u32,
    pub healthy: u32,
}
