//! External programs some tests drive (`dig`, `python3`, `npm` and `node`). A developer's
//! machine may lack one: the test then says so and skips. Under CI (`CI` set, as CI runs
//! `.ci/run` with `CI=true`) a missing program fails the test instead, so a suite can never
//! pass in CI by not running; `.ci/run` installs them.

use std::process::{Command, Stdio};

/// Whether this is a CI run: `CI` is set to anything but empty, `0` or `false`.
pub fn is_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

fn ci_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Whether `program` starts (run with `args`, e.g. `dig -v`). When it does not, panics under
/// CI, and otherwise prints that `what` is skipped and returns `false`. The program's own exit
/// status does not matter: only whether it is there.
pub fn require(program: &str, args: &[&str], what: &str) -> bool {
    let started = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if started {
        return true;
    }
    assert!(
        !is_ci(),
        "{program} is not installed (not on PATH), and CI is set: {what} must run in CI; \
         .ci/run installs {program}"
    );
    eprintln!("{program} not installed; skipping {what} (with CI set, this fails instead)");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_any_value_but_empty_zero_or_false() {
        for yes in ["true", "1", "yes", "TRUE"] {
            assert!(ci_value(Some(yes)), "{yes}");
        }
        for no in [None, Some(""), Some("0"), Some("false"), Some("False")] {
            assert!(!ci_value(no), "{no:?}");
        }
    }

    #[test]
    fn a_present_program_is_required_without_fuss() {
        assert!(require("cargo", &["--version"], "nothing"));
    }
}
