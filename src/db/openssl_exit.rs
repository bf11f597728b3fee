//! libpq speaks TLS through the system OpenSSL, and OpenSSL frees its global
//! state in an exit handler. r2d2 opens connections on threads of its own
//! that nobody joins, so a process that shuts down cleanly while one of them
//! is in a TLS handshake had that handshake use freed locks and died of
//! SIGSEGV on its way out (seen as exit signal 11 after SIGTERM on
//! PostgreSQL). Asking OpenSSL, before its first use, to leave its state
//! alone at exit removes the race; the kernel reclaims the memory anyway.

use std::ffi::{c_int, c_void};
use std::sync::Once;

/// `OPENSSL_INIT_NO_ATEXIT` from OpenSSL's `crypto.h` (1.1.1b and later).
const OPENSSL_INIT_NO_ATEXIT: u64 = 0x0008_0000;

#[link(name = "crypto")]
unsafe extern "C" {
    fn OPENSSL_init_crypto(opts: u64, settings: *const c_void) -> c_int;
}

/// Called before the first PostgreSQL connection: OpenSSL registers its exit
/// handler at its first initialisation, so this must come first to count.
pub fn keep_openssl_state_at_exit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: OPENSSL_init_crypto is thread-safe, takes no pointer it
        // keeps (settings may be NULL), and only sets initialisation flags.
        let ok = unsafe { OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, std::ptr::null()) };
        if ok != 1 {
            tracing::warn!("OpenSSL refused OPENSSL_INIT_NO_ATEXIT; exit may race r2d2's connection threads");
        }
    });
}
