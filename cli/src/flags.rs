//! Consul's flag style on top of clap: `-flag value`, `-flag=value`, `--flag` all work.
//!
//! Go's `flag` package treats one and two leading dashes alike. clap wants `--` for long
//! flags, so single-dash long flags are rewritten before parsing. Single-character flags
//! (`-h`) and negative numbers are left alone.

/// Rewrites `-name[=v]` to `--name[=v]` for every multi-character flag.
pub(crate) fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest_positional = false;
    for arg in args {
        if rest_positional {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        let is_single_dash_long = arg.starts_with('-')
            && !arg.starts_with("--")
            && arg.len() > 2
            && !arg[1..2].chars().all(|c| c.is_ascii_digit());
        if is_single_dash_long {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn rewrites_single_dash_long_flags() {
        assert_eq!(n(&["-dev"]), ["--dev"]);
        assert_eq!(
            n(&["-http-port=1", "--x", "-h", "-5"]),
            ["--http-port=1", "--x", "-h", "-5"]
        );
        assert_eq!(n(&["-node", "a", "--", "-z"]), ["--node", "a", "--", "-z"]);
    }
}
