//! `health`: passive ejection (what counts as a failure, for how long) and active probes.

use super::compile::check_header_name;
use super::raw::RawHealth;
use super::*;
use crate::outcome::{EjectOn, Passive, ProbeThresholds};

const MAX_EJECTION_SECONDS_DEFAULT: u64 = 300;

fn compile_eject_on(raw: Option<&[String]>) -> Result<EjectOn, ConfigError> {
    let Some(names) = raw else { return Ok(EjectOn::default()) };
    const FIELD: &str = "health.passive.eject_on";
    if names.is_empty() {
        return Err(err(
            FIELD,
            format!("is empty; list at least one of {:?} (default {:?})", EjectOn::KINDS, EjectOn::DEFAULT),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(err(format!("{FIELD}[{i}]"), format!("{name:?} is listed twice")));
        }
    }
    EjectOn::parse(names).map_err(|bad| {
        let i = names.iter().position(|n| *n == bad).unwrap_or(0);
        err(format!("{FIELD}[{i}]"), format!("{bad:?} is not one of {:?}", EjectOn::KINDS))
    })
}

pub(super) fn compile_health(raw: RawHealth) -> Result<HealthConfig, ConfigError> {
    let eject_on = compile_eject_on(raw.passive.as_ref().and_then(|p| p.eject_on.as_deref()))?;
    let passive = raw
        .passive
        .map(|p| {
            if p.consecutive_failures == 0 || p.consecutive_failures > 1000 {
                return Err(err(
                    "health.passive.consecutive_failures",
                    format!("{} is out of range 1..=1000", p.consecutive_failures),
                ));
            }
            if p.ejection_seconds == 0 || p.ejection_seconds > 86_400 {
                return Err(err(
                    "health.passive.ejection_seconds",
                    format!("{} is out of range 1..=86400", p.ejection_seconds),
                ));
            }
            let max = p.max_ejection_seconds.unwrap_or(MAX_EJECTION_SECONDS_DEFAULT.max(p.ejection_seconds));
            if max < p.ejection_seconds || max > 86_400 {
                return Err(err(
                    "health.passive.max_ejection_seconds",
                    format!("{max} is out of range ejection_seconds ({})..=86400", p.ejection_seconds),
                ));
            }
            Ok(Passive {
                consecutive_failures: p.consecutive_failures,
                ejection_ms: p.ejection_seconds * 1000,
                max_ejection_ms: max * 1000,
            })
        })
        .transpose()?;
    let active = raw
        .active
        .map(|a| {
            if a.cluster.is_empty() || a.cluster.len() > 256 {
                return Err(err("health.active.cluster", format!("{:?} must be 1 to 256 bytes", a.cluster)));
            }
            let path = a.path.unwrap_or_else(|| "/healthz".to_owned());
            if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
                return Err(err(
                    "health.active.path",
                    format!("{path:?} must start with / and contain no spaces"),
                ));
            }
            let interval_ms = a.interval_ms.unwrap_or(1000);
            if !(100..=3_600_000).contains(&interval_ms) {
                return Err(err(
                    "health.active.interval_ms",
                    format!("{interval_ms} is out of range 100..=3600000"),
                ));
            }
            let timeout_ms = a.timeout_ms.unwrap_or(500);
            if timeout_ms == 0 || timeout_ms > interval_ms {
                return Err(err(
                    "health.active.timeout_ms",
                    format!("{timeout_ms} is out of range 1..=interval_ms ({interval_ms})"),
                ));
            }
            let threshold = |field: &str, v: Option<u32>| match v.unwrap_or(2) {
                n @ 1..=100 => Ok(n),
                n => Err(err(format!("health.active.{field}"), format!("{n} is out of range 1..=100"))),
            };
            // Empty: derived from `target` once it is compiled.
            let header = match &a.header {
                Some(h) => check_header_name("health.active.header", h)?,
                None => String::new(),
            };
            Ok(ActiveHealth {
                header,
                cluster: a.cluster,
                path,
                authority: a.authority,
                interval_ms,
                timeout_ms,
                thresholds: ProbeThresholds {
                    unhealthy: threshold("unhealthy_threshold", a.unhealthy_threshold)?,
                    healthy: threshold("healthy_threshold", a.healthy_threshold)?,
                },
            })
        })
        .transpose()?;
    Ok(HealthConfig { passive, active, eject_on })
}
