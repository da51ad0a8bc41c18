//! `concord validate [-config-format=json|hcl] [-quiet] FILE_OR_DIR...`: reads config files
//! as `concord agent -config-file/-config-dir` would, and reports whether they are valid
//! (Consul's `validate`, same output).

use std::path::PathBuf;

use crate::agent::config::{config_sources, Format, Sources};
use crate::flags::{flag, parse_flags_with, report_usage, Flag, Kind};

const USAGE: &str = "Usage: concord validate [options] FILE_OR_DIRECTORY...

  Performs a basic sanity test on Concord (Consul) configuration files. For each file
  or directory given, the configuration is loaded and validated as the agent would,
  in the order given.

  -config-format=<json|hcl>  Read every file in this format, whatever its extension.
  -quiet                     Print nothing on success.";

const FLAGS: &[Flag] = &[flag("config-format", Kind::Str), flag("quiet", Kind::Bool)];

/// Runs `concord validate ARGS`.
#[allow(clippy::print_stdout)]
pub(crate) fn run(args: &[String]) -> i32 {
    let p = match report_usage(parse_flags_with(args, FLAGS, &[]), USAGE) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() {
        eprintln!("Must specify at least one config file or directory\n\n{USAGE}");
        return 1;
    }
    let result = (|| {
        let format = p.value("config-format").map(Format::parse).transpose()?;
        let paths: Vec<PathBuf> = p.args.iter().map(PathBuf::from).collect();
        let sources = Sources {
            files: config_sources(&paths, format)?,
            hcl: Vec::new(),
        };
        let settings = sources.read()?;
        settings.check()?;
        Ok::<_, anyhow::Error>(settings.warnings())
    })();
    match result {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("{w}");
            }
            if !p.bool("quiet") {
                println!("Configuration is valid!");
            }
            0
        }
        Err(e) => {
            eprintln!("Config validation failed: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn valid_and_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.hcl");
        std::fs::write(&good, "datacenter = \"east\"\nports { http = 8501 }\n").unwrap();
        assert_eq!(run(&args(&[good.to_str().unwrap()])), 0);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"ports":{"http":"x"}}"#).unwrap();
        assert_eq!(run(&args(&[bad.to_str().unwrap()])), 1);
        assert_eq!(run(&args(&[])), 1, "nothing to validate");
        assert_eq!(
            run(&args(&[
                "-quiet",
                dir.path().join("good.hcl").to_str().unwrap()
            ])),
            0
        );
    }
}
