//! The state a scenario hands from one `e2e` invocation to the next (the runner acts in between:
//! `docker stop`, `up --scale`), as JSON in $STATE_FILE.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(state: &T) -> Result<String, String> {
    serde_json::to_string(state).map_err(|e| format!("state: {e}"))
}

pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("not a state file: {e}"))
}

pub fn save<T: Serialize>(path: &str, state: &T) -> Result<(), String> {
    std::fs::write(path, encode(state)?).map_err(|e| format!("{path}: {e}"))
}

/// The state `first` (the invocation that writes it) left in `path`.
pub fn load<T: DeserializeOwned>(path: &str, first: &str) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e} (run `{first}` first)"))?;
    decode(&text).map_err(|e| format!("{path}: {e}"))
}
