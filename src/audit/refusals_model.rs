//! Refused calls, counted instead of audited one by one. A flood of bad
//! tokens used to append one chained audit row per call, so the attacker
//! set the pace of every tenant's writes. Now each refusal only bumps a
//! counter of its caller class (anonymous, or the role and tenant of a valid
//! token), and once per interval each class that saw refusals becomes one
//! `auth.refused` audit event whose detail holds the counts. Pure: the
//! server's flusher decides when to take a window and writes it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::audit::model::AuditEntry;

/// The audit action of a counted window.
pub const REFUSED_ACTION: &str = "auth.refused";
/// The class (actor) of callers without a valid token.
pub const ANONYMOUS: &str = "anonymous";
/// Distinct classes counted at once; more (many tenants' valid tokens all
/// refused in one interval) fold into their role's class without tenant.
const MAX_CLASSES: usize = 1_000;
/// Distinct token subjects named per class; the rest are counted together.
const MAX_ACTORS: usize = 32;
/// The name the subjects beyond [`MAX_ACTORS`] are counted under.
const OTHER_ACTORS: &str = "(others)";

/// Who was refused, as far as the refusal tells: a role and tenant only
/// when the token itself was valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Class {
    /// The role(s) the caller held; empty for an anonymous caller.
    role: String,
    /// The tenant of a valid tenant-scoped token.
    tenant_id: Option<String>,
}

/// What one class was refused in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counts {
    total: u64,
    /// Refusal class (`malformed_token`, `role_not_allowed`, ...) -> calls.
    outcomes: BTreeMap<String, u64>,
    /// RPC -> calls.
    rpcs: BTreeMap<String, u64>,
    /// Subject of a valid token -> calls (empty for anonymous callers).
    actors: BTreeMap<String, u64>,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.total += other.total;
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_default() += n;
        }
        for (k, n) in other.rpcs {
            *self.rpcs.entry(k).or_default() += n;
        }
        for (k, n) in other.actors {
            self.add_actor(k, n);
        }
    }

    fn add_actor(&mut self, actor: String, n: u64) {
        let key = if self.actors.contains_key(&actor) || self.actors.len() < MAX_ACTORS {
            actor
        } else {
            OTHER_ACTORS.to_owned()
        };
        *self.actors.entry(key).or_default() += n;
    }
}

/// The refusals counted since the window opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalWindow {
    since: Option<DateTime<Utc>>,
    classes: BTreeMap<Class, Counts>,
}

impl RefusalWindow {
    /// Counts one refusal, described as the audit entry it used to be
    /// (actor, role, tenant, RPC as target, class of refusal as outcome).
    pub fn record(&mut self, at: DateTime<Utc>, refused: &AuditEntry) {
        self.since.get_or_insert(at);
        let mut class = Class {
            role: refused.role.clone(),
            tenant_id: refused.tenant_id.clone(),
        };
        if !self.classes.contains_key(&class) && self.classes.len() >= MAX_CLASSES {
            class.tenant_id = None;
        }
        let counts = self.classes.entry(class).or_default();
        counts.total += 1;
        *counts.outcomes.entry(refused.outcome.clone()).or_default() += 1;
        *counts.rpcs.entry(refused.target.clone()).or_default() += 1;
        if !refused.role.is_empty() {
            counts.add_actor(refused.actor.clone(), 1);
        }
    }

    /// Whether nothing has been counted.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Whether the window has been open for `interval` by `now`.
    pub fn is_due(&self, now: DateTime<Utc>, interval: chrono::Duration) -> bool {
        self.since.is_some_and(|s| now >= s + interval)
    }

    /// Puts back a window that could not be written, so its counts go out
    /// with the next one instead of being lost.
    pub fn restore(&mut self, older: RefusalWindow) {
        if let Some(s) = older.since {
            self.since = Some(self.since.map_or(s, |own| own.min(s)));
        }
        for (class, counts) in older.classes {
            self.classes.entry(class).or_default().add(counts);
        }
    }

    /// The audit events of this window, one per class, closing at `until`.
    pub fn entries(&self, until: DateTime<Utc>) -> Vec<AuditEntry> {
        let from = self.since.unwrap_or(until);
        self.classes
            .iter()
            .map(|(class, c)| AuditEntry {
                actor: if class.role.is_empty() {
                    ANONYMOUS.to_owned()
                } else {
                    class.role.clone()
                },
                role: class.role.clone(),
                tenant_id: class.tenant_id.clone(),
                action: REFUSED_ACTION.to_owned(),
                target: String::new(),
                outcome: "refused".to_owned(),
                trace_id: String::new(),
                detail: serde_json::json!({
                    "from": from.to_rfc3339(),
                    "until": until.to_rfc3339(),
                    "count": c.total,
                    "outcomes": c.outcomes,
                    "rpcs": c.rpcs,
                    "actors": c.actors,
                })
                .to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn refused(actor: &str, role: &str, tenant: Option<&str>, outcome: &str) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            role: role.into(),
            tenant_id: tenant.map(Into::into),
            action: "auth.denied".into(),
            target: "/proctor.v1.InboxService/Pull".into(),
            outcome: outcome.into(),
            trace_id: String::new(),
            detail: String::new(),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn detail(e: &AuditEntry) -> serde_json::Value {
        serde_json::from_str(&e.detail).unwrap()
    }

    #[test]
    fn many_refusals_make_one_event_per_class() {
        let mut w = RefusalWindow::default();
        for _ in 0..1000 {
            w.record(t(0), &refused("anonymous", "", None, "malformed_token"));
        }
        w.record(t(1), &refused("anonymous", "", None, "missing_token"));
        w.record(t(2), &refused("oncall", "sre", None, "role_not_allowed"));
        w.record(t(3), &refused("user-of-t1", "tenant", Some("t1"), "other_tenant"));
        let events = w.entries(t(60));
        assert_eq!(events.len(), 3);
        let anon = events.iter().find(|e| e.actor == ANONYMOUS).unwrap();
        let d = detail(anon);
        assert_eq!(d["count"], 1001);
        assert_eq!(d["outcomes"]["malformed_token"], 1000);
        assert_eq!(d["outcomes"]["missing_token"], 1);
        assert_eq!(d["rpcs"]["/proctor.v1.InboxService/Pull"], 1001);
        assert_eq!(
            d["actors"],
            serde_json::json!({}),
            "no subject for anonymous callers"
        );
        let tenant = events.iter().find(|e| e.role == "tenant").unwrap();
        assert_eq!(tenant.tenant_id.as_deref(), Some("t1"));
        assert_eq!(detail(tenant)["actors"]["user-of-t1"], 1);
        assert!(events.iter().all(|e| e.action == REFUSED_ACTION));
    }

    #[test]
    fn a_window_is_due_after_its_interval() {
        let mut w = RefusalWindow::default();
        let minute = chrono::Duration::seconds(60);
        assert!(!w.is_due(t(1000), minute), "an empty window is never due");
        w.record(t(10), &refused("a", "", None, "malformed_token"));
        assert!(!w.is_due(t(69), minute));
        assert!(w.is_due(t(70), minute));
    }

    #[test]
    fn a_restored_window_adds_up() {
        let mut old = RefusalWindow::default();
        old.record(t(0), &refused("a", "", None, "malformed_token"));
        let mut w = RefusalWindow::default();
        w.record(t(5), &refused("a", "", None, "malformed_token"));
        w.restore(old);
        let events = w.entries(t(60));
        assert_eq!(events.len(), 1);
        let d = detail(&events[0]);
        assert_eq!(d["count"], 2);
        assert_eq!(d["from"], t(0).to_rfc3339(), "the older start is kept");
    }

    #[test]
    fn classes_and_actors_are_bounded() {
        let mut w = RefusalWindow::default();
        for i in 0..(MAX_CLASSES + 50) {
            let tenant = format!("t{i}");
            w.record(
                t(0),
                &refused(&format!("u{i}"), "tenant", Some(&tenant), "other_tenant"),
            );
        }
        let events = w.entries(t(60));
        assert_eq!(events.len(), MAX_CLASSES + 1, "the overflow shares one class");
        let overflow = events.iter().find(|e| e.tenant_id.is_none()).unwrap();
        let d = detail(overflow);
        assert_eq!(d["count"], 50);
        assert_eq!(d["actors"].as_object().unwrap().len(), MAX_ACTORS + 1);
        assert_eq!(d["actors"][OTHER_ACTORS], 50 - MAX_ACTORS as u64);
    }
}
