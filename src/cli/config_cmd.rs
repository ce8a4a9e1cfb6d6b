//! `facegate validate-config` (what a systemd `ExecStartPre` runs: every problem, one per
//! line, the same ones every run) and `facegate config show`.

use std::path::Path;

use clap::Subcommand;
use serde_json::json;

use crate::config::{Config, Overrides};
use crate::error::Error;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, environment and flags) as TOML, or JSON
    /// with --json; secrets such as mqtt.password are masked.
    Show,
    /// Check the configuration and the files it names (same as validate-config).
    Validate,
}

pub fn config(cmd: &ConfigCommand, file: Option<&Path>, overrides: &Overrides, json: bool) -> Result<(), Error> {
    match cmd {
        ConfigCommand::Show => show(file, overrides, json),
        ConfigCommand::Validate => validate(file, overrides, json),
    }
}

/// Exit 0 and "configuration is valid", or exit 3 with every problem on stderr, one per
/// line (with `--json`, `{"valid":false,"problems":[…]}` on stdout as well).
pub fn validate(file: Option<&Path>, overrides: &Overrides, json: bool) -> Result<(), Error> {
    let problems = match Config::check(file, overrides, true) {
        Ok(checked) => checked.lines(),
        Err(Error::Config(lines)) => lines,
        Err(e) => return Err(e),
    };
    let valid = problems.is_empty();
    // An invalid configuration's JSON (`valid`, `problems`, `error`) is printed with the
    // error, as every command's errors are.
    if valid {
        super::print(json, &json!({"valid": valid, "problems": problems}), || {
            "configuration is valid".to_string()
        });
    }
    if valid { Ok(()) } else { Err(Error::Config(problems)) }
}

fn show(file: Option<&Path>, overrides: &Overrides, json: bool) -> Result<(), Error> {
    let checked = Config::check(file, overrides, false)?;
    if !checked.problems.is_empty() {
        return Err(Error::Config(checked.lines()));
    }
    if json {
        println!("{}", checked.config.to_masked_json());
        return Ok(());
    }
    let body = checked
        .config
        .to_masked_toml()
        .map_err(|e| Error::Config(vec![format!("cannot write the configuration as TOML: {e}")]))?;
    let from = match &checked.tree.file {
        Some(f) => f.display().to_string(),
        None => "the defaults (no configuration file)".into(),
    };
    println!("# Effective configuration: {from}");
    if !checked.tree.overridden.is_empty() {
        let set: Vec<String> = checked
            .tree
            .overridden
            .iter()
            .map(|(key, origin)| format!("{key} ({origin})"))
            .collect();
        println!("# Set by the environment or flags: {}", set.join(", "));
    }
    println!("# Keys left out are unset; secrets are masked.\n");
    print!("{body}");
    Ok(())
}
