//! scripts/stage-local passes its arguments on, but must tell an option's value from
//! APP_DIR: its list of the options that take a value follows `stage-local --help`.

use crate::support::BIN;
use std::collections::BTreeSet;

#[test]
fn the_wrapper_knows_every_option_that_takes_a_value() {
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("stage-local --help");
    let from_help: BTreeSet<String> = String::from_utf8_lossy(&help.stdout)
        .lines()
        .filter_map(|l| {
            let (option, rest) = l.trim().split_once(' ')?;
            (option.starts_with("--") && rest.starts_with('<')).then(|| option.to_string())
        })
        .collect();
    assert!(
        from_help.contains("--port") && from_help.contains("--env"),
        "{from_help:?}"
    );
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/stage-local"
    ))
    .expect("scripts/stage-local");
    let listed: BTreeSet<String> = script
        .lines()
        .find_map(|l| l.strip_prefix("with_value=\""))
        .expect("a with_value=\"...\" line")
        .trim_end_matches('"')
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, from_help);
}
