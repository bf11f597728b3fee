//! Who is calling and what they may do: JWT verification ([`jwt`]), the one
//! table of RPC -> roles ([`policy`]), development keys ([`keys`]), and the
//! tower layer that applies them to every call before any handler runs
//! ([`layer`]). Tenant scope, which depends on request fields, is checked by
//! handlers through [`Caller::scope_tenant`].

pub mod jwt;
pub mod keys;
pub mod layer;
pub mod policy;

use std::fmt;

/// A role a token can carry, as DESIGN.md defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Internal platform services (`sub` = system name), any tenant.
    Platform,
    /// A customer tenant, its own data only.
    Tenant,
    /// The compliance team: registry, screening cases, breaches.
    Compliance,
    /// Operators: health and read-only views without personal data.
    Sre,
}

impl Role {
    /// Every role, for matrices and help texts.
    pub const ALL: [Role; 4] = [Role::Platform, Role::Tenant, Role::Compliance, Role::Sre];

    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Platform => "platform",
            Role::Tenant => "tenant",
            Role::Compliance => "compliance",
            Role::Sre => "sre",
        }
    }

    /// Parses a claim value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of one RPC, put in the request extensions by the
/// auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token subject: a system name, a user id.
    pub sub: String,
    /// The role under which this RPC was allowed (the broadest the token
    /// holds among those the RPC accepts).
    pub role: Role,
    /// The token's tenant, required for [`Role::Tenant`].
    pub tenant_id: Option<String>,
}

/// Why a tenant-scoped request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant-scoped token may not act on another tenant")]
pub struct OtherTenant;

impl Caller {
    /// Resolves the tenant a request acts on. A tenant token acts on its own
    /// tenant only (an empty request field means its own); other roles may
    /// name any tenant and `None` means they named none.
    pub fn scope_tenant(&self, requested: &str) -> Result<Option<String>, OtherTenant> {
        match (self.role, &self.tenant_id) {
            (Role::Tenant, Some(own)) if requested.is_empty() || requested == own => Ok(Some(own.clone())),
            (Role::Tenant, _) => Err(OtherTenant),
            _ if requested.is_empty() => Ok(None),
            _ => Ok(Some(requested.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, tenant: Option<&str>) -> Caller {
        Caller {
            sub: "s".into(),
            role,
            tenant_id: tenant.map(Into::into),
        }
    }

    #[test]
    fn tenant_acts_on_itself_only() {
        let c = caller(Role::Tenant, Some("t1"));
        assert_eq!(c.scope_tenant("t1"), Ok(Some("t1".into())));
        assert_eq!(c.scope_tenant(""), Ok(Some("t1".into())));
        assert_eq!(c.scope_tenant("t2"), Err(OtherTenant));
        assert_eq!(caller(Role::Tenant, None).scope_tenant(""), Err(OtherTenant));
    }

    #[test]
    fn other_roles_name_any_tenant() {
        let c = caller(Role::Compliance, None);
        assert_eq!(c.scope_tenant("t2"), Ok(Some("t2".into())));
        assert_eq!(c.scope_tenant(""), Ok(None));
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
