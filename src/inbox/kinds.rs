//! Every kind of envelope proctor sends, named in one place: tenants and
//! platform systems switch on these strings (inbox `kind`, webhook `type`),
//! so they are part of the contract and never spelled out elsewhere.

/// The kind of an envelope: what it announces and who acts on it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
pub enum EnvelopeKind {
    /// A breach that concerns the tenant was recorded (to the tenant).
    #[strum(serialize = "breach.notice")]
    BreachNotice,
    /// A sub-processor change the tenant may object to (to the tenant).
    #[strum(serialize = "sub_processor.change_notice")]
    SubProcessorChangeNotice,
    /// A possible sanctions match asks its party's side for clarification
    /// (to the tenant, or the compliance queue); answered with `Reply`.
    #[strum(serialize = "screening.clarification")]
    ScreeningClarification,
    /// A clarification request was answered (to the compliance queue).
    #[strum(serialize = "screening.clarification.answered")]
    ScreeningClarificationAnswered,
    /// A data-subject request forwarded by a platform system (to its
    /// controller).
    #[strum(serialize = "subject_request.forwarded")]
    SubjectRequestForwarded,
    /// A fulfilment task for a platform system (to that system).
    #[strum(serialize = "subject_request.task")]
    SubjectRequestTask,
    /// A subject request completed (to its controller).
    #[strum(serialize = "subject_request.completed")]
    SubjectRequestCompleted,
    /// A fulfilment task failed every attempt it was allowed and is no
    /// longer offered (to the compliance queue).
    #[strum(serialize = "subject_request.task_stuck")]
    SubjectRequestTaskStuck,
    /// A platform system asks a subject request's controller a question
    /// (to the tenant); answered with `Reply`.
    #[strum(serialize = "subject_request.question")]
    SubjectRequestQuestion,
    /// The controller answered a system's question (to the system that
    /// asked).
    #[strum(serialize = "subject_request.answer")]
    SubjectRequestAnswer,
    /// A public authority asked for the tenant's data, or the response to
    /// it was recorded (to the tenant; held back while notice is
    /// prohibited).
    #[strum(serialize = "authority_request.notice")]
    AuthorityRequestNotice,
}

impl EnvelopeKind {
    /// Every kind, for exhaustive tests and documentation.
    pub const ALL: &'static [EnvelopeKind] = <EnvelopeKind as strum::VariantArray>::VARIANTS;

    /// The wire form (`Envelope.kind`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// True for the kinds that ask a question `InboxService.Reply` answers.
    pub fn takes_reply(self) -> bool {
        matches!(self, Self::ScreeningClarification | Self::SubjectRequestQuestion)
    }
}

impl std::fmt::Display for EnvelopeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_is_distinct() {
        let mut seen = std::collections::HashSet::new();
        for k in EnvelopeKind::ALL {
            assert_eq!(EnvelopeKind::parse(k.as_str()), Some(*k));
            assert!(seen.insert(k.as_str()), "{k} named twice");
        }
        assert_eq!(EnvelopeKind::parse("nope"), None);
    }

    #[test]
    fn only_questions_take_a_reply() {
        let replied: Vec<_> = EnvelopeKind::ALL.iter().filter(|k| k.takes_reply()).collect();
        assert_eq!(
            replied,
            [
                &EnvelopeKind::ScreeningClarification,
                &EnvelopeKind::SubjectRequestQuestion
            ]
        );
    }
}
