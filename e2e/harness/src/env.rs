//! The driver's settings, from the environment (defaults are the compose stack's).

use std::time::Duration;

/// Environment variable `name`, `default` when unset or empty.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Environment variable `name` as a number, `default` when unset or empty.
pub fn number(name: &str, default: usize) -> Result<usize, String> {
    let text = var(name, &default.to_string());
    text.parse().map_err(|_| format!("{name}={text:?} is not a number"))
}

/// `name=ip:port,name=ip:port…`
fn pairs(name: &str, default: &str) -> Result<Vec<(String, String)>, String> {
    var(name, default)
        .split(',')
        .map(|p| {
            let (n, a) =
                p.trim().split_once('=').ok_or_else(|| format!("{name}: {p:?} is not name=ip:port"))?;
            Ok((n.to_string(), a.to_string()))
        })
        .collect()
}

pub struct Env {
    pub envoy: String,
    pub admin: String,
    /// (name, ip:port) of the backends in the filter's `hosts`.
    pub backends: Vec<(String, String)>,
    pub outsider: (String, String),
    /// An address on the test network where nothing listens (a forged target).
    pub nowhere: String,
    /// `memory` or `redis`: where the backends must report they keep session state.
    pub state: String,
    pub sessions: usize,
    pub requests: usize,
    pub requests_after: usize,
    pub threads: usize,
    pub victim: String,
    pub state_file: String,
    pub ready_timeout: Duration,
}

impl Env {
    pub fn load() -> Result<Env, String> {
        let env = Env {
            envoy: var("ENVOY", "envoy:10000"),
            admin: var("ENVOY_ADMIN", "envoy:9901"),
            backends: pairs(
                "BACKENDS",
                "backend-1=10.213.87.11:8080,backend-2=10.213.87.12:8080,backend-3=10.213.87.13:8080",
            )?,
            outsider: pairs("OUTSIDER", "outsider=10.213.87.19:8080")?
                .into_iter()
                .next()
                .ok_or("OUTSIDER is empty")?,
            nowhere: var("NOWHERE", "10.213.87.99:8080"),
            state: var("STATE", "memory"),
            sessions: number("SESSIONS", 1000)?.max(4),
            requests: number("REQUESTS", 20)?.max(2),
            requests_after: number("REQUESTS_AFTER", 10)?.max(1),
            threads: number("THREADS", 32)?.clamp(1, 512),
            victim: var("VICTIM", "backend-2"),
            state_file: var("STATE_FILE", "/out/e2e-state.json"),
            ready_timeout: Duration::from_secs(number("READY_TIMEOUT", 90)? as u64),
        };
        if env.state != "memory" && env.state != "redis" {
            return Err(format!("STATE={:?}: expected memory or redis", env.state));
        }
        if !env.backends.iter().any(|(n, _)| *n == env.victim) {
            return Err(format!("VICTIM={} is not one of BACKENDS", env.victim));
        }
        Ok(env)
    }

    pub fn backend_addr(&self, name: &str) -> Option<&str> {
        self.backends.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str())
    }
}
