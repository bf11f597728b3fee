//! The one table saying which roles may call which RPC. Every RPC the server
//! declares must appear here; the authorisation-matrix test enumerates the
//! descriptors and fails on any RPC without a rule. An RPC missing from the
//! table is refused for everyone, so forgetting a rule fails closed.

use super::Role;
use Role::{Compliance as C, Platform as P, Sre as S, Tenant as T};
use TenantFrom::{Named, NamedOrAll, NotNamed};

/// Where an RPC's tenant comes from: what the one scoping idiom
/// ([`crate::rpc::AppState::scope`]) does with the request's `tenant_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantFrom {
    /// The request names the one tenant it acts on: a tenant token its own
    /// (empty = its own, another = PERMISSION_DENIED, counted); any other
    /// role must name one (empty = INVALID_ARGUMENT on `tenant_id`).
    Named,
    /// As `Named`, but roles other than `tenant` may name none, meaning
    /// every tenant (lists, counts, the platform forwarding for any tenant).
    NamedOrAll,
    /// Not scoped to the token's tenant: no tenant token may call it (a
    /// platform check, a compliance command), or it names a resource by id
    /// and the handler scopes what it loads (another tenant's is NOT_FOUND).
    NotNamed,
}

/// One RPC's rule: who may call it and where its tenant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Full method path, `/proctor.v1.Service/Method`.
    pub path: &'static str,
    /// Roles allowed.
    pub roles: &'static [Role],
    /// Where the tenant it acts on comes from.
    pub tenant: TenantFrom,
}

const fn rule(path: &'static str, roles: &'static [Role], tenant: TenantFrom) -> Rule {
    Rule { path, roles, tenant }
}

/// Every RPC's rule.
pub const RULES: &[Rule] = &[
    // Controller instructions: tenants write their own; platform asks for
    // decisions; compliance reads all, extends the taxonomy, terminates.
    rule("/proctor.v1.InstructionService/PutInstructions", &[T], Named),
    rule(
        "/proctor.v1.InstructionService/GetInstructions",
        &[T, C, P],
        Named,
    ),
    rule(
        "/proctor.v1.InstructionService/ListInstructionVersions",
        &[T, C, P],
        Named,
    ),
    rule("/proctor.v1.InstructionService/CheckProcessing", &[P], NotNamed),
    rule(
        "/proctor.v1.InstructionService/BatchCheckProcessing",
        &[P],
        NotNamed,
    ),
    rule(
        "/proctor.v1.InstructionService/GetRetentionCutoffs",
        &[P, T],
        Named,
    ),
    rule("/proctor.v1.InstructionService/TerminateTenant", &[C], NotNamed),
    rule("/proctor.v1.InstructionService/AddTaxonomyKey", &[C], NotNamed),
    rule(
        "/proctor.v1.InstructionService/ListTaxonomy",
        &[P, T, C],
        NotNamed,
    ),
    // Legal holds: the tenant for its own, compliance for any; a release
    // names the hold by id and the handler scopes it.
    rule("/proctor.v1.InstructionService/PlaceLegalHold", &[T, C], Named),
    rule(
        "/proctor.v1.InstructionService/ReleaseLegalHold",
        &[T, C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.InstructionService/ListLegalHolds",
        &[T, C],
        NamedOrAll,
    ),
    // The decision log: the tenant its own decisions, compliance any.
    rule(
        "/proctor.v1.InstructionService/ListDecisions",
        &[T, C],
        NamedOrAll,
    ),
    // Sub-processor registry: compliance registers and proposes; tenants
    // set their mode, answer and read their own list; platform reads.
    rule(
        "/proctor.v1.SubProcessorService/RegisterSubProcessor",
        &[C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.SubProcessorService/GetSubProcessor",
        &[C, T, P],
        NotNamed,
    ),
    rule("/proctor.v1.SubProcessorService/ProposeChange", &[C], NotNamed),
    rule(
        "/proctor.v1.SubProcessorService/SetAuthorizationMode",
        &[T, C],
        Named,
    ),
    rule("/proctor.v1.SubProcessorService/ApproveChange", &[T], Named),
    rule("/proctor.v1.SubProcessorService/ObjectToChange", &[T], Named),
    rule(
        "/proctor.v1.SubProcessorService/ListChangeNotices",
        &[T, C, P],
        NamedOrAll,
    ),
    rule(
        "/proctor.v1.SubProcessorService/ListSubProcessors",
        &[T, C, P],
        Named,
    ),
    rule(
        "/proctor.v1.SubProcessorService/ExportSubProcessors",
        &[T, C, P],
        Named,
    ),
    // Screening.
    rule("/proctor.v1.ScreeningService/ImportList", &[C], NotNamed),
    rule("/proctor.v1.ScreeningService/Screen", &[P, C], NotNamed),
    rule("/proctor.v1.ScreeningService/BatchScreen", &[P, C], NotNamed),
    // Tenants see the cases of their own parties (filtered by tenant).
    rule("/proctor.v1.ScreeningService/ListCases", &[C, T], NotNamed),
    rule("/proctor.v1.ScreeningService/GetCase", &[C, T], NotNamed),
    rule("/proctor.v1.ScreeningService/ResolveCase", &[C], NotNamed),
    rule("/proctor.v1.ScreeningService/ScoreNames", &[C], NotNamed),
    rule("/proctor.v1.ScreeningService/GetListEntry", &[P, C], NotNamed),
    // Subject requests.
    rule(
        "/proctor.v1.SubjectRequestService/ForwardToController",
        &[P],
        Named,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/SubmitSubjectRequest",
        &[T],
        Named,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/GetSubjectRequest",
        &[T, C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/ListSubjectRequests",
        &[T, C],
        NamedOrAll,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/WatchSubjectRequest",
        &[T, C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/CancelSubjectRequest",
        &[T],
        NotNamed,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/RejectSubjectRequest",
        &[T],
        NotNamed,
    ),
    rule("/proctor.v1.SubjectRequestService/ExtendDeadline", &[T], NotNamed),
    rule("/proctor.v1.SubjectRequestService/GetExport", &[T], NotNamed),
    rule(
        "/proctor.v1.SubjectRequestService/ComputeSubjectRef",
        &[P, T],
        Named,
    ),
    rule("/proctor.v1.SubjectRequestService/RegisterSystem", &[C], NotNamed),
    rule("/proctor.v1.SubjectRequestService/PullTasks", &[P], NotNamed),
    rule("/proctor.v1.SubjectRequestService/CompleteTask", &[P], NotNamed),
    rule("/proctor.v1.SubjectRequestService/FailTask", &[P], NotNamed),
    rule("/proctor.v1.SubjectRequestService/AskController", &[P], NotNamed),
    rule("/proctor.v1.SubjectRequestService/UploadArtifact", &[P], NotNamed),
    rule(
        "/proctor.v1.SubjectRequestService/ConfirmSubProcessorDeletion",
        &[C],
        Named,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/GetDeletionCertificate",
        &[T, C],
        Named,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/GetControllerQuestion",
        &[P, T],
        NotNamed,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/CountSubjectRequests",
        &[S, C],
        NamedOrAll,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/SetSubjectRequestSettings",
        &[T, C],
        Named,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/GetSubjectRequestSettings",
        &[T, C],
        Named,
    ),
    rule(
        "/proctor.v1.SubjectRequestService/GetReceiptKey",
        &[T, C, P, S],
        NotNamed,
    ),
    // Inboxes belong to tenants and platform systems.
    rule("/proctor.v1.InboxService/Subscribe", &[T, P], NotNamed),
    rule("/proctor.v1.InboxService/Pull", &[T, P], NotNamed),
    rule("/proctor.v1.InboxService/Ack", &[T, P], NotNamed),
    rule("/proctor.v1.InboxService/Reply", &[T, P], NotNamed),
    // Breach register.
    rule("/proctor.v1.BreachService/ReportBreach", &[C], NotNamed),
    rule("/proctor.v1.BreachService/UpdateBreach", &[C], NotNamed),
    rule("/proctor.v1.BreachService/GetBreach", &[C, T], NotNamed),
    rule("/proctor.v1.BreachService/ListBreaches", &[C, T, S], NotNamed),
    rule("/proctor.v1.BreachService/NotifyAuthority", &[C], NotNamed),
    rule("/proctor.v1.BreachService/RenderNotification", &[C], NotNamed),
    // Requests from public authorities: compliance records, answers, lifts
    // prohibitions and exports; tenants read their own (never a gagged
    // one) and their transparency report; compliance reads any or all.
    rule(
        "/proctor.v1.DisclosureService/RecordAuthorityRequest",
        &[C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.DisclosureService/RecordAuthorityResponse",
        &[C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.DisclosureService/LiftNoticeProhibition",
        &[C],
        NotNamed,
    ),
    rule(
        "/proctor.v1.DisclosureService/GetAuthorityRequest",
        &[C, T],
        NotNamed,
    ),
    rule(
        "/proctor.v1.DisclosureService/ListAuthorityRequests",
        &[C, T],
        NamedOrAll,
    ),
    rule(
        "/proctor.v1.DisclosureService/GetTransparencyReport",
        &[C, T],
        NamedOrAll,
    ),
    rule(
        "/proctor.v1.DisclosureService/ExportAuthorityRequests",
        &[C],
        NotNamed,
    ),
    // Push delivery: a tenant manages its own webhook and deliveries;
    // compliance any tenant's. A redelivery names the delivery by id and
    // the handler scopes it (another tenant's is NOT_FOUND).
    rule("/proctor.v1.WebhookService/SetWebhook", &[T, C], Named),
    rule("/proctor.v1.WebhookService/GetWebhook", &[T, C], Named),
    rule("/proctor.v1.WebhookService/DeleteWebhook", &[T, C], Named),
    rule("/proctor.v1.WebhookService/RotateWebhookSecret", &[T, C], Named),
    rule("/proctor.v1.WebhookService/ListWebhookDeliveries", &[T, C], Named),
    rule("/proctor.v1.WebhookService/RedeliverWebhook", &[T, C], NotNamed),
    // Audit.
    rule("/proctor.v1.AuditService/ListAuditEvents", &[C, T], NamedOrAll),
    rule("/proctor.v1.AuditService/VerifyAuditLog", &[C, S], NotNamed),
    rule("/proctor.v1.AuditService/ExportAuditLog", &[C, T], NamedOrAll),
    rule("/proctor.v1.AuditService/GetCheckpoint", &[P, T, C, S], NotNamed),
    rule("/proctor.v1.AuditService/GetAuditLogKey", &[P, T, C, S], NotNamed),
    rule("/proctor.v1.AuditService/GetInclusionProof", &[C, T], NotNamed),
    rule(
        "/proctor.v1.AuditService/GetConsistencyProof",
        &[P, T, C, S],
        NotNamed,
    ),
];

/// Paths anyone may call without a token: health probes and reflection.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The rule of `path`, or `None` when the path has none.
pub fn rule_of(path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.path == path)
}

/// The roles allowed to call `path`, or `None` when the path has no rule.
pub fn allowed(path: &str) -> Option<&'static [Role]> {
    rule_of(path).map(|r| r.roles)
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
        let mut paths: Vec<_> = RULES.iter().map(|r| r.path).collect();
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
