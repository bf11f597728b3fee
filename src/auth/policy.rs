//! The one table saying which roles may call which RPC. Every RPC the server
//! declares must appear here; the authorisation-matrix test enumerates the
//! descriptors and fails on any RPC without a rule. An RPC missing from the
//! table is refused for everyone, so forgetting a rule fails closed.

use super::Role;
use Role::{Compliance as C, Platform as P, Sre as S, Tenant as T};

/// `(full method path, roles allowed)`.
pub const RULES: &[(&str, &[Role])] = &[
    // Controller instructions: tenants write their own; platform asks for
    // decisions; compliance reads all, extends the taxonomy, terminates.
    ("/proctor.v1.InstructionService/PutInstructions", &[T]),
    ("/proctor.v1.InstructionService/GetInstructions", &[T, C, P]),
    (
        "/proctor.v1.InstructionService/ListInstructionVersions",
        &[T, C, P],
    ),
    ("/proctor.v1.InstructionService/CheckProcessing", &[P]),
    ("/proctor.v1.InstructionService/BatchCheckProcessing", &[P]),
    ("/proctor.v1.InstructionService/GetRetentionCutoffs", &[P, T]),
    ("/proctor.v1.InstructionService/TerminateTenant", &[C]),
    ("/proctor.v1.InstructionService/AddTaxonomyKey", &[C]),
    ("/proctor.v1.InstructionService/ListTaxonomy", &[P, T, C]),
    // Sub-processor registry: compliance registers and proposes; tenants
    // set their mode, answer and read their own list; platform reads.
    ("/proctor.v1.SubProcessorService/RegisterSubProcessor", &[C]),
    ("/proctor.v1.SubProcessorService/GetSubProcessor", &[C, T, P]),
    ("/proctor.v1.SubProcessorService/ProposeChange", &[C]),
    ("/proctor.v1.SubProcessorService/SetAuthorizationMode", &[T, C]),
    ("/proctor.v1.SubProcessorService/ApproveChange", &[T]),
    ("/proctor.v1.SubProcessorService/ObjectToChange", &[T]),
    ("/proctor.v1.SubProcessorService/ListChangeNotices", &[T, C, P]),
    ("/proctor.v1.SubProcessorService/ListSubProcessors", &[T, C, P]),
    ("/proctor.v1.SubProcessorService/ExportSubProcessors", &[T, C, P]),
    // Screening.
    ("/proctor.v1.ScreeningService/ImportList", &[C]),
    ("/proctor.v1.ScreeningService/Screen", &[P, C]),
    ("/proctor.v1.ScreeningService/BatchScreen", &[P, C]),
    // Tenants see the cases of their own parties (filtered by tenant).
    ("/proctor.v1.ScreeningService/ListCases", &[C, T]),
    ("/proctor.v1.ScreeningService/GetCase", &[C, T]),
    ("/proctor.v1.ScreeningService/ResolveCase", &[C]),
    ("/proctor.v1.ScreeningService/ScoreNames", &[C]),
    // Subject requests.
    ("/proctor.v1.SubjectRequestService/ForwardToController", &[P]),
    ("/proctor.v1.SubjectRequestService/SubmitSubjectRequest", &[T]),
    ("/proctor.v1.SubjectRequestService/GetSubjectRequest", &[T, C]),
    ("/proctor.v1.SubjectRequestService/ListSubjectRequests", &[T, C]),
    ("/proctor.v1.SubjectRequestService/WatchSubjectRequest", &[T, C]),
    ("/proctor.v1.SubjectRequestService/CancelSubjectRequest", &[T]),
    ("/proctor.v1.SubjectRequestService/RejectSubjectRequest", &[T]),
    ("/proctor.v1.SubjectRequestService/ExtendDeadline", &[T]),
    ("/proctor.v1.SubjectRequestService/GetExport", &[T]),
    ("/proctor.v1.SubjectRequestService/ComputeSubjectRef", &[P, T]),
    ("/proctor.v1.SubjectRequestService/RegisterSystem", &[C]),
    ("/proctor.v1.SubjectRequestService/PullTasks", &[P]),
    ("/proctor.v1.SubjectRequestService/CompleteTask", &[P]),
    ("/proctor.v1.SubjectRequestService/FailTask", &[P]),
    ("/proctor.v1.SubjectRequestService/CountSubjectRequests", &[S, C]),
    (
        "/proctor.v1.SubjectRequestService/SetSubjectRequestSettings",
        &[T, C],
    ),
    (
        "/proctor.v1.SubjectRequestService/GetSubjectRequestSettings",
        &[T, C],
    ),
    ("/proctor.v1.SubjectRequestService/GetReceiptKey", &[T, C, P, S]),
    // Inboxes belong to tenants and platform systems.
    ("/proctor.v1.InboxService/Subscribe", &[T, P]),
    ("/proctor.v1.InboxService/Pull", &[T, P]),
    ("/proctor.v1.InboxService/Ack", &[T, P]),
    ("/proctor.v1.InboxService/Reply", &[T, P]),
    // Breach register.
    ("/proctor.v1.BreachService/ReportBreach", &[C]),
    ("/proctor.v1.BreachService/UpdateBreach", &[C]),
    ("/proctor.v1.BreachService/GetBreach", &[C, T]),
    ("/proctor.v1.BreachService/ListBreaches", &[C, T, S]),
    ("/proctor.v1.BreachService/NotifyAuthority", &[C]),
    ("/proctor.v1.BreachService/RenderNotification", &[C]),
    // Audit.
    ("/proctor.v1.AuditService/ListAuditEvents", &[C, T]),
    ("/proctor.v1.AuditService/VerifyAuditLog", &[C, S]),
    ("/proctor.v1.AuditService/ExportAuditLog", &[C, T]),
];

/// Paths anyone may call without a token: health probes and reflection.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The roles allowed to call `path`, or `None` when the path has no rule.
pub fn allowed(path: &str) -> Option<&'static [Role]> {
    RULES.iter().find(|(p, _)| *p == path).map(|(_, r)| *r)
}

/// The role under which `held` may call an RPC allowing `allowed`: the
/// broadest one (compliance, then platform, sre, tenant), so a token that is
/// both tenant and compliance is not narrowed to one tenant.
pub fn acting_role(allowed: &[Role], held: &[Role]) -> Option<Role> {
    [Role::Compliance, Role::Platform, Role::Sre, Role::Tenant]
        .into_iter()
        .find(|r| allowed.contains(r) && held.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_unique() {
        let mut paths: Vec<_> = RULES.iter().map(|(p, _)| *p).collect();
        paths.sort();
        let n = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), n);
    }

    #[test]
    fn broadest_role_wins() {
        assert_eq!(acting_role(&[T, C], &[T, C]), Some(C));
        assert_eq!(acting_role(&[T], &[T, C]), Some(T));
        assert_eq!(acting_role(&[P], &[T, S]), None);
    }

    #[test]
    fn health_is_public_and_unknown_paths_have_no_rule() {
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(!is_public("/proctor.v1.InboxService/Pull"));
        assert!(allowed("/proctor.v1.Nope/Nope").is_none());
    }
}
