//! Alias checks, as Consul's `CheckAlias` for a service on this agent: the check's status is
//! the health of another service instance, so a sidecar proxy is unhealthy whenever the
//! service it fronts is.
//!
//! Unlike the other kinds there is no task: the aliased checks live in the agent's own local
//! state, so the agent recomputes every alias whenever a check or service changes
//! ([`alias_status`] is the pure rule) instead of polling.

use concord_api::catalog::{CheckStatus, HealthCheck};

/// An alias check: mirrors the health of `service_id` on `node` (empty: this agent's node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasCheck {
    /// The aliased service instance (`AliasService`).
    pub service_id: String,
    /// The aliased node (`AliasNode`); empty means this agent's node.
    pub node: String,
}

/// The status and output of an alias of `service_id` given `checks`, the checks of the
/// aliased node (node checks included, as Consul counts them): the worst status, with
/// Consul's texts. `service_exists` says whether the instance is registered at all.
pub fn alias_status(
    service_id: &str,
    checks: &[HealthCheck],
    service_exists: bool,
) -> (CheckStatus, String) {
    let mut status = CheckStatus::Passing;
    let mut output = "No checks found.".to_string();
    let mut service_found = false;
    for check in checks {
        let matches = check.service_id == service_id;
        if !check.service_id.is_empty() && !matches {
            continue;
        }
        service_found |= matches;
        match check.status {
            CheckStatus::Critical | CheckStatus::Warning => {
                status = check.status;
                output = format!("Aliased check {:?} failing: {}", check.name, check.output);
                // Critical decides; a warning may still be overtaken by a critical.
                if check.status == CheckStatus::Critical {
                    break;
                }
            }
            CheckStatus::Passing => {
                if status == CheckStatus::Passing {
                    output = "All checks passing.".to_string();
                }
            }
        }
    }
    if !service_found && !service_exists {
        return (
            CheckStatus::Critical,
            format!("Service {service_id} could not be found on node"),
        );
    }
    (status, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, service: &str, status: CheckStatus) -> HealthCheck {
        HealthCheck {
            check_id: id.into(),
            name: id.into(),
            service_id: service.into(),
            status,
            output: format!("{id} out"),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn follows_the_worst_check_of_the_service_and_its_node() {
        let cases: [(&[HealthCheck], bool, CheckStatus, &str); 6] = [
            (&[], true, CheckStatus::Passing, "No checks found."),
            (
                &[],
                false,
                CheckStatus::Critical,
                "Service web could not be found on node",
            ),
            (
                &[check("a", "web", CheckStatus::Passing)],
                true,
                CheckStatus::Passing,
                "All checks passing.",
            ),
            (
                &[
                    check("a", "web", CheckStatus::Warning),
                    check("b", "web", CheckStatus::Passing),
                ],
                true,
                CheckStatus::Warning,
                "Aliased check \"a\" failing: a out",
            ),
            (
                &[
                    check("a", "web", CheckStatus::Warning),
                    check("serfHealth", "", CheckStatus::Critical),
                ],
                true,
                CheckStatus::Critical,
                "Aliased check \"serfHealth\" failing: serfHealth out",
            ),
            (
                &[check("other", "db", CheckStatus::Critical)],
                true,
                CheckStatus::Passing,
                "No checks found.",
            ),
        ];
        for (checks, exists, want, out) in cases {
            assert_eq!(
                alias_status("web", checks, exists),
                (want, out.to_string()),
                "{checks:?}"
            );
        }
    }
}
