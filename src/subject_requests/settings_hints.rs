//! The tenants' deadline settings as this replica last read them, so that
//! recording a request need not read them first.
//!
//! A hint, never the source: the request's insert carries the settings its
//! deadlines were computed from and inserts only while the stored ones are
//! still those ([`super::repo::insert_request`]); when they changed (here or
//! on another replica) nothing is inserted, the settings are read again and
//! the deadlines recomputed in the same transaction. A stale hint costs a
//! read, never a wrong deadline.

use std::collections::HashMap;
use std::sync::Mutex;

use super::repo::TenantSettings;

/// Tenants remembered at most; past that the hints start over (a tenant
/// not remembered is read, as without hints). Bounds memory on a replica
/// serving many tenants.
const MAX_TENANTS: usize = 10_000;

/// Per tenant, the settings last read or stored on this replica.
#[derive(Debug, Default)]
pub struct SettingsHints {
    known: Mutex<HashMap<String, TenantSettings>>,
}

impl SettingsHints {
    /// What this replica last saw of `tenant`'s settings, if anything.
    pub fn get(&self, tenant: &str) -> Option<TenantSettings> {
        self.lock().get(tenant).cloned()
    }

    /// Remembers `settings` as `tenant`'s, just read or just committed.
    pub fn put(&self, tenant: &str, settings: TenantSettings) {
        let mut known = self.lock();
        if known.len() >= MAX_TENANTS && !known.contains_key(tenant) {
            known.clear();
        }
        known.insert(tenant.to_owned(), settings);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantSettings>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(z: &str) -> TenantSettings {
        TenantSettings {
            time_zone: z.into(),
            ..TenantSettings::default()
        }
    }

    #[test]
    fn a_tenant_is_remembered_with_what_was_put_last() {
        let hints = SettingsHints::default();
        assert_eq!(hints.get("t1"), None);
        hints.put("t1", zone("Europe/Berlin"));
        hints.put("t1", zone("Europe/Paris"));
        assert_eq!(hints.get("t1"), Some(zone("Europe/Paris")));
        assert_eq!(hints.get("t2"), None);
    }

    #[test]
    fn a_full_table_starts_over_rather_than_grow() {
        let hints = SettingsHints::default();
        for i in 0..MAX_TENANTS {
            hints.put(&format!("t{i}"), TenantSettings::default());
        }
        hints.put("t0", zone("UTC"));
        assert_eq!(hints.lock().len(), MAX_TENANTS, "a known tenant does not clear");
        hints.put("new", zone("Asia/Tokyo"));
        assert_eq!(hints.lock().len(), 1);
        assert_eq!(hints.get("new"), Some(zone("Asia/Tokyo")));
    }
}
