//! The image's process plan, `/lifecycle/processes.json`: what Cloud Controller would
//! tell Diego to run for each process type of the droplet (its command, its
//! MEMORY_LIMIT, and its sidecars with theirs). stage-local writes it from the staging
//! result; the entrypoint reads it. This module is the only owner of the format.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Where an image holds the droplet, as a Diego cell unpacks it.
pub const DROPLET_ROOT: &str = "/home/vcap";
/// Where an image holds the entrypoint binary.
pub const ENTRYPOINT_PATH: &str = "/lifecycle/cf-entrypoint";
/// Where an image holds the plan.
pub const PLAN_PATH: &str = "/lifecycle/processes.json";

/// Every process type of the droplet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub processes: BTreeMap<String, Process>,
}

/// One process type: its start command and the sidecars that run beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub command: String,
    /// Its MEMORY_LIMIT in MB: the process's memory less its sidecars'.
    pub memory_mb: u64,
    pub sidecars: Vec<Sidecar>,
}

/// A sidecar of a process type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub name: String,
    pub command: String,
    /// Its MEMORY_LIMIT in MB: its own memory, else its process's.
    pub memory_mb: u64,
}

impl Plan {
    /// The plan as written into the image: pretty JSON, keys in a fixed order.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a plan; the error names the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<Plan, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a process plan: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_what_was_written_and_refuses_anything_else() {
        let plan = Plan {
            processes: BTreeMap::from([(
                "web".to_string(),
                Process {
                    command: "run".into(),
                    memory_mb: 224,
                    sidecars: vec![Sidecar {
                        name: "cs".into(),
                        command: "cs".into(),
                        memory_mb: 32,
                    }],
                },
            )]),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.json");
        std::fs::write(&file, plan.to_json()).expect("write");
        assert_eq!(Plan::read(&file), Ok(plan));
        std::fs::write(&file, r#"{"processes":{},"extra":1}"#).expect("write");
        let err = Plan::read(&file).expect_err("unknown key");
        assert!(
            err.contains("is not a process plan: unknown field `extra`"),
            "{err}"
        );
    }
}
